"""Plot and tabulate fine-tuning runs from their track.json files (docs/training.md).

    python benchmarks/plot_training.py --out docs/figures/training_atoms.png \
        --stage "no augmentation=runs/scratch_noaug" \
        --run "O3 augmentation=runs/scratch_aug" --run "O3 + penalty=runs/scratch_aug_pen"

``--stage`` runs come first on the epoch axis; each ``--run`` continues from the
last stage (its epoch 0 is the stage's last epoch). Prints a Markdown table of A,
invariant fractions and accuracy per tracked epoch and copies each track.json
(small) next to the figure.

``--quick`` is a smoke test on the shipped tracks of the atoms reference runs
(``docs/figures/training_atoms_reference_*.json``), drawn into a temporary folder (or
``--out``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _split(spec: str) -> tuple[str, Path]:
    """``LABEL=FOLDER`` split at the last ``=`` (a label may hold one, e.g. "l <= 2")."""
    label, _, folder = spec.rpartition("=")
    return label, Path(folder)


def _load(spec: str) -> tuple[str, dict]:
    label, folder = _split(spec)
    return label, json.loads((folder / "track.json").read_text())


def _fraction(layer: dict, key: str) -> float:
    """A layer's invariant fraction ``key``; NaN where undefined (a constant layer's
    centred one is null)."""
    value = layer.get(key)
    return float("nan") if value is None else value


def table(label: str, track: dict, offset: int, key: str = "invariant_fraction",
          layers: list[str] | None = None) -> list[str]:
    rows = []
    for e in track["epochs"]:
        a = ", ".join(f"{k} {v['equivariance_rmse']:.3g}" for k, v in e["outputs"].items())
        inv = " / ".join(f"{_fraction(e['layers'][name], key):.3f}"
                         for name in layers or e["layers"])
        acc = ", ".join(f"{k} {v:.4g}" for k, v in e["metrics"].items()
                        if isinstance(v, (int, float)) and "rmse" not in k)
        rows.append(f"| {label} | {e['epoch'] + offset} | {a} | {inv} | {acc} |")
    return rows


FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
QUICK = (("stage", "no augmentation", "atoms_noaug"), ("run", "O3 augmentation", "atoms_aug"),
         ("run", "O3 + penalty", "atoms_aug_pen"))


def quick(argv, out: Path | None) -> None:
    """Plot the shipped atoms reference tracks, each copied to ``TMP/RUN/track.json``."""
    with tempfile.TemporaryDirectory(prefix="plot_training_") as tmp:
        specs = []
        for option, label, run in QUICK:
            (Path(tmp) / run).mkdir()
            shutil.copy(FIGURES / f"training_atoms_reference_{run}.json",
                        Path(tmp) / run / "track.json")
            specs += [f"--{option}", f"{label}={Path(tmp) / run}"]
        main([*specs, "--out", str(out or Path(tmp) / "figure" / "training_atoms.png"),
              *argv])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", action="append", default=[], help="LABEL=FOLDER, in order")
    parser.add_argument("--run", action="append", default=[], help="LABEL=FOLDER after the stages")
    parser.add_argument("--metrics", help="comma-separated accuracy figures to plot "
                        "(default: all but RMSEs)")
    parser.add_argument("--centred", action="store_true", help="the layers' data-set-centred "
                        "invariant fraction (a model whose features' mean dominates their raw "
                        "fraction, e.g. PET) instead of the raw one")
    parser.add_argument("--layers", help="comma-separated layers to draw (default: all)")
    parser.add_argument("--log", action="store_true", help="A on a logarithmic axis")
    parser.add_argument("--out", type=Path, help="figure (PNG); required but with --quick")
    parser.add_argument("--quick", action="store_true", help="smoke test: plot the shipped "
                        "atoms reference tracks (docs/figures) into a temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        if args.stage or args.run:
            parser.error("--quick plots the shipped tracks: no --stage or --run")
        return quick(["--metrics", args.metrics] if args.metrics else [], args.out)
    if args.out is None:
        parser.error("the following arguments are required: --out")
    if not args.stage and not args.run:
        parser.error("give at least one --stage or --run")
    stages, runs = [_load(s) for s in args.stage], [_load(r) for r in args.run]
    first = (stages or runs)[0][1]
    outputs = list(first["epochs"][0]["outputs"])
    layers = args.layers.split(",") if args.layers else list(first["epochs"][0]["layers"])
    key = "invariant_fraction_centered" if args.centred else "invariant_fraction"
    metrics = (args.metrics.split(",") if args.metrics else
               [k for k, v in first["epochs"][0]["metrics"].items()
                if isinstance(v, (int, float)) and "rmse" not in k])
    panels = len(outputs) + 1 + bool(metrics)  # no validation panel without metrics
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    styles = ["o-", "s--", "^:", "v-.", "d-"]
    offset, lines = 0, []
    series = []
    for label, track in stages:
        series.append((label, track, offset))
        offset += track["epochs"][-1]["epoch"]
    series += [(label, track, offset) for label, track in runs]
    for label, track, off in series:
        epochs = [e["epoch"] + off for e in track["epochs"]]
        for ax, name in zip(axes, outputs):
            units = track["epochs"][0]["outputs"][name]["units"]
            ax.plot(epochs, [e["outputs"][name]["equivariance_rmse"] for e in track["epochs"]],
                    "o-", label=label)
            ax.set_title(f"A({name}) {units}".strip())
            ax.set_yscale("log" if args.log else "linear")
        color = f"C{[s[0] for s in series].index(label)}"
        ax = axes[len(outputs)]
        for k, name in enumerate(layers):
            ax.plot(epochs, [_fraction(e["layers"][name], key) for e in track["epochs"]],
                    styles[k % 5], color=color, ms=3)
        ax.set_title(("centred " if args.centred else "") + "invariant fraction per layer")
        for k, name in enumerate(metrics):
            axes[-1].plot(epochs, [e["metrics"][name] for e in track["epochs"]],
                          styles[k % 5], color=color, ms=3)
            axes[-1].set_title("accuracy")
        lines += table(label, track, off, key, layers)
    for k, name in enumerate(layers):  # style legends (colour = run, as in the A panels)
        axes[len(outputs)].plot([], [], styles[k % 5], color="k", ms=3, label=name)
    for k, name in enumerate(metrics):
        axes[-1].plot([], [], styles[k % 5], color="k", ms=3, label=name)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    if metrics:
        axes[-1].set_yscale("log")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    for label, _track, _ in series:
        folder = next(f for lab, f in map(_split, args.stage + args.run) if lab == label)
        shutil.copy(folder / "track.json", args.out.with_name(f"{args.out.stem}_{folder.name}.json"))
    print(f"| run | epoch | A ({', '.join(outputs)}) | "
          f"{'centred ' * args.centred}invariant fraction ({' / '.join(layers)}) | validation |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

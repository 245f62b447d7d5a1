"""Jet-tagging analysis with symmetry diagnostics, in the field's conventions.

    python examples/jet_tagging_analysis.py [--data JETS.root] [--model reference] [--out DIR]

Reads jets from a ROOT file (default: the test jets shipped with the reference
tagger), runs the tagger, and writes to ``--out``:
- a table (printed and ``table.md``): AUC and background rejection 1/eps_B at
  eps_S = 0.3 and 0.5, and for each symmetry the equivariance error A of the score,
  its invariant fraction and the classification flip rate;
- ``roc.png`` (mplhep style), ``boost.png`` (score shift and AUC against the boost
  rapidity along the beam and the jet axis);
- ``result_<symmetry>.json`` (symplug results) and ``predictions.root`` (weaver's
  ``Events`` tree with ``score_label_*``, ``label_*`` and observers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import symplug_jets as sj  # noqa: E402
from symplug.result import write_json  # noqa: E402
from symplug_jets.metrics import roc  # noqa: E402
from symplug_jets.taggers import REFERENCE  # noqa: E402

SYMMETRIES = (  # (label, frame, group): exact data symmetry first
    ("SO(2) about the beam", "lab", "SO2"),
    ("SO(2) about the jet axis", "jet", "SO2"),
    ("SO(3), lab frame", "lab", "SO3"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REFERENCE.with_name("tagger_test.root"))
    parser.add_argument("--model", default="reference")
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--max-jets", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("jet-analysis"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jets = sj.read_root(args.data)
    jets = jets.subset(np.arange(min(len(jets), args.max_jets)))
    tagger = sj.load_tagger(args.model)
    with torch.no_grad():
        score = tagger({"p4": torch.from_numpy(jets.p4), "mask": torch.from_numpy(jets.mask),
                        "copies": 1, "jets": len(jets)})["score"][0].numpy()
    is_top = jets.labels[:, jets.label_names.index("label_Top")] > 0.5
    rows = [f"| {'quantity':<32} | {'value':>12} |", f"|{'-' * 34}|{'-' * 14}|",
            f"| {'jets (top / QCD)':<32} | {f'{is_top.sum()} / {(~is_top).sum()}':>12} |",
            f"| {'AUC':<32} | {sj.auc(score, is_top):>12.4f} |"]
    for wp in (0.3, 0.5):
        rows.append(f"| {f'1/eps_B at eps_S = {wp}':<32} | {sj.background_rejection(score, is_top, wp):>12.1f} |")
    for label, frame, group in SYMMETRIES:
        result = sj.diagnose(tagger, jets, group=group, degree=args.degree, frame=frame,
                             progress=False, check_convergence=False)
        write_json(result, args.out / f"result_{frame}_{group}.json")
        out = result["outputs"]["score"]
        rows.append(f"| {f'A(score), {label}':<32} | {out['equivariance_rmse']:>12.3e} |")
        rows.append(f"| {f'invariant fraction, {label}':<32} | {out['invariant_fraction']:>12.6f} |")
        rows.append(f"| {f'flip rate, {label}':<32} | {result['summary']['flip_rate']:>12.4f} |")
    table = "\n".join(rows)
    print(table)
    (args.out / "table.md").write_text(table + "\n")

    plt.style.use(mplhep.style.ATLAS)
    eps_s, eps_b = roc(score, is_top)
    fig, ax = plt.subplots(figsize=(6, 5))
    keep = eps_b > 0
    ax.plot(eps_s[keep], 1 / eps_b[keep], label=f"{args.model} (AUC {sj.auc(score, is_top):.3f})")
    ax.set(yscale="log", xlabel=r"signal efficiency $\epsilon_S$",
           ylabel=r"background rejection $1/\epsilon_B$")
    ax.legend()
    fig.savefig(args.out / "roc.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    rapidities = np.linspace(0.0, 2.0, 9)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"wspace": 0.35})
    for axis in ("beam", "jet"):
        scan = sj.boost_scan(tagger, jets, rapidities, axis=axis)
        axes[0].plot(rapidities, [r["score_shift_rms"] for r in scan], marker="o", label=axis)
        axes[1].plot(rapidities, [r["auc"] for r in scan], marker="o", label=axis)
    axes[0].set(xlabel="boost rapidity", ylabel="RMS score shift")
    axes[1].set(xlabel="boost rapidity", ylabel="AUC")
    axes[0].legend(title="boost along")
    fig.savefig(args.out / "boost.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    sj.write_predictions(args.out / "predictions.root", jets, np.stack([score, 1 - score], 1),
                         ["label_Top", "label_QCD"])
    print(f"wrote {args.out}/: table.md, roc.png, boost.png, result_*.json, predictions.root")


if __name__ == "__main__":
    main()

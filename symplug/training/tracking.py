"""Symmetry tracking during fine-tuning: at chosen epochs, A of every output and B of
every named layer on a fixed validation subset and grid (:func:`symplug.diagnose` without
the convergence check), written as ``track.json`` (a time series), ``track.mts``
(metatensor TensorMap) and ``track.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import SymplugError
from ..groups import Group
from ..figures import pyplot, write_figure
from ..records import Domain
from ..result import write_json, write_tensormap
from ..spectra import parse_sector_key, sector_key
from ..symmetry_tensormaps import sector_tensormap


def track_entry(model: Any, samples: Sequence[Any], domain: Domain, *, group: Group | str,
                degree: int,
                layers: Sequence[str], outputs: Sequence[str] | None = None,
                epoch: int, loss: float | None = None,
                evaluate: Callable[[Any, dict | None], dict] | None = None,
                evaluate_samples: Sequence[Any] | None = None) -> tuple[dict, dict]:
    """One point of the time series: A of every output and B of every layer of ``model``
    on ``samples`` (degree ``degree`` grid, no convergence check), plus the task's
    accuracy figures on ``evaluate_samples`` (default ``samples``). Returns
    (entry, grid record)."""
    from ..diagnose import diagnose

    result = diagnose(model, list(samples), domain, group=group, degree=degree, layers=layers,
                      outputs=outputs, check_convergence=False, progress=False)
    entry = {"epoch": int(epoch),
             "metrics": ({} if evaluate is None else
                         dict(evaluate(samples if evaluate_samples is None else evaluate_samples,
                                       result))),
             "outputs": {name: {"equivariance_rmse": o["equivariance_rmse"],
                                "relative_error": o["relative_error"], "units": o["units"]}
                         for name, o in result["outputs"].items()},
             "layers": {name: {"spectrum": layer["spectrum"],
                               "invariant_fraction": layer["invariant_fraction"],
                               "spectrum_centered": layer["spectrum_centered"],
                               "invariant_fraction_centered": layer["invariant_fraction_centered"],
                               "truncation": layer["truncation"]}
                        for name, layer in result["layers"].items()},
             "loss": loss}
    grid = {**result["grid"], "lmax": result["lmax"], "n_samples": result["n_samples"],
            "convergence": "not checked during tracking"}
    return entry, grid


def track_document(domain: str, group: Group | str, grid: dict, epochs: list[dict]) -> dict:
    """The ``track.json`` document (``group`` by its name)."""
    from .. import __version__

    return {"kind": "track", "symplug_version": __version__, "domain": domain, "group": str(group),
            "grid": grid, "epochs": epochs}


def _float(value: float | None) -> float:
    return math.nan if value is None else value


def track_tensormap(track: dict):
    """The layer spectra of a track as a metatensor-torch TensorMap: keys (chi_lambda,
    chi_sigma), the sector of the orbit content as metatomic names it (sigma 0 without
    parity), samples (entry, epoch, layer) with ``entry`` the position in
    ``track["epochs"]`` (two tracked checkpoints may share an epoch) and ``layer`` the
    index into its layer names, properties ``centered`` (0: raw fraction, 1: data-set
    centred fraction; NaN where undefined, e.g. a layer that is 0 everywhere)."""
    entries = [(i, e) for i, e in enumerate(track["epochs"]) if e["layers"]]
    if not entries:
        raise SymplugError("the track holds no layer spectra")
    names = list(entries[0][1]["layers"])
    keys = sorted({parse_sector_key(k) for _, e in entries for layer in e["layers"].values()
                   for k in layer["spectrum"]})
    rows = [[index, e["epoch"], i] for index, e in entries for i in range(len(names))]
    values = []
    for key in map(sector_key, keys):  # NaN where a fraction is undefined (null in track.json)
        values.append([[_float(e["layers"][name]["spectrum"].get(key, 0.0)),
                        _float(e["layers"][name].get("spectrum_centered", {}).get(key, 0.0))]
                       for _, e in entries for name in names])
    return sector_tensormap(keys, ["entry", "epoch", "layer"], rows, values, "centered",
                            torch=True)


def write_track(track: dict, out: str | Path) -> dict[str, Path]:
    """Write ``track.json`` and, where metatensor-torch and matplotlib are installed,
    ``track.mts`` and ``track.png`` into the folder ``out`` (each atomically)."""
    out = Path(out)
    written = {"json": write_json(track, out / "track.json")}
    if any(e["layers"] for e in track["epochs"]):
        try:
            import metatensor.torch  # noqa: F401
        except ImportError:
            pass
        else:
            written["mts"] = write_tensormap(track_tensormap(track), out / "track.mts")
    try:
        written["png"] = plot_track(track, out / "track.png")
    except ImportError:
        pass
    return written


def plot_track(track: dict, path: str | Path) -> Path:
    """:func:`track_figure` written atomically to ``path`` (PNG, 90 dpi)."""
    return write_figure(track_figure(track), path, dpi=90, tight=False)


def track_figure(track: dict):
    """A against epoch (log scale) beside the accuracy figures; below, the spectrum of
    every layer against epoch (stacked fractions per (l, sigma) sector)."""
    plt = pyplot()
    entries = track["epochs"]
    epochs = [e["epoch"] for e in entries]
    layers = list(entries[0]["layers"]) if entries else []
    ncols = max(2, len(layers))
    fig, axes = plt.subplots(2 if layers else 1, ncols, figsize=(3.6 * ncols, 6.4 if layers else 3.2),
                             squeeze=False)
    ax = axes[0, 0]
    for name in entries[0]["outputs"] if entries else []:
        ax.plot(epochs, [e["outputs"][name]["equivariance_rmse"] for e in entries], "o-",
                label=f"{name} ({entries[0]['outputs'][name]['units'] or 'a.u.'})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"A ({track['group']}, degree {track['grid'].get('degree')})")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    metrics = [k for k in (entries[0]["metrics"] if entries else {})
               if all(isinstance(e["metrics"].get(k), (int, float)) for e in entries)]
    for name in metrics:
        ax.plot(epochs, [e["metrics"][name] for e in entries], "o-", label=name)
    values = [e["metrics"][k] for e in entries for k in metrics]
    if values and all(math.isfinite(v) and v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("accuracy (validation)")
    if metrics:
        ax.legend(fontsize=7)
    for k in range(2, ncols):
        axes[0, k].axis("off")
    for k, name in enumerate(layers):
        ax = axes[1, k]
        sectors = list(entries[0]["layers"][name]["spectrum"])
        stack = np.array([[_float(e["layers"][name]["spectrum"].get(s, 0.0)) for e in entries]
                          for s in sectors])
        undefined = np.isnan(stack).all(0)  # epochs where the layer was 0 everywhere
        ax.stackplot(epochs, np.nan_to_num(stack), labels=sectors)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: spectrum" + (" (undefined: all zero)" if undefined.all() else
                                            " (undefined where blank)" if undefined.any() else ""))
        ax.set_xlabel("epoch")
        if k == 0:
            ax.legend(fontsize=6, loc="lower left", ncol=2)
    for k in range(len(layers), ncols):
        if layers:
            axes[1, k].axis("off")
    fig.tight_layout()
    return fig

"""The jet-tagging analysis: performance and symmetry diagnostics in one table.

:func:`analyze` runs a tagger on jets, diagnoses its score under the symmetries of
:data:`SYMMETRIES` (the exact data symmetry first), each with the convergence check
(the same rule turned by a random rotation: one grid more), scans boosts, and writes
to a folder: ``table.md``, ``roc.png`` (mplhep style), ``boost.png``,
``result_<frame>_<group>.json`` (symplug results) and ``predictions.root``
(weaver's ``Events`` tree). It returns a result of kind ``"jet_analysis"`` that the
report presents. Counts are jets; 1/eps_B carries its resolution on the background
jets (:func:`symplug_jets.metrics.rejection`); with ``progress`` every step prints a
line on stderr and the long ones a progress bar.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from symplug import __version__
from symplug.report import figure_png, pyplot
from symplug.result import write_bytes, write_json

from .domain import (as_tagger, boost_scan, diagnose, grid_text, signal_column, signal_label,
                     signal_mask, tagger_scores)
from .metrics import auc, format_rejection, rejection, roc
from .rootio import JetSet, write_predictions

SYMMETRIES = (  # (label, frame, group): exact data symmetry first
    ("SO(2) about the beam", "lab", "SO2"),
    ("SO(2) about the jet axis", "jet", "SO2"),
    ("SO(3), lab frame", "lab", "SO3"),
)
RAPIDITIES = tuple(np.linspace(0.0, 2.0, 9))
WORKING_POINTS = (0.3, 0.5)


class _Steps:
    """One line per analysis step on stderr, with the seconds since the start."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.done += 1
        if self.enabled:
            seconds = time.perf_counter() - self.start
            print(f"jet analysis [{self.done}/{self.total}, {seconds:.0f} s] {message}",
                  file=sys.stderr, flush=True)


@contextmanager
def _atlas_style():
    """pyplot in mplhep's ATLAS style for the figures made inside, without changing the
    style of figures made later in the same process (the report's)."""
    import mplhep

    plt = pyplot()
    with plt.style.context(mplhep.style.ATLAS):
        yield plt


def roc_figure(curves: dict[str, dict]) -> bytes:
    """Background rejection 1/eps_B against eps_S, one curve per ``{label: {"eps_s",
    "eps_b", "auc"}}``, log scale (the field's ROC convention)."""
    with _atlas_style() as plt:
        fig, ax = plt.subplots(figsize=(6, 5))
        for label, c in curves.items():
            eps_s, eps_b = np.asarray(c["eps_s"]), np.asarray(c["eps_b"])
            keep = eps_b > 0
            ax.plot(eps_s[keep], 1 / eps_b[keep], label=f"{label} (AUC {c['auc']:.3f})")
        ax.set(yscale="log", xlabel=r"signal efficiency $\epsilon_S$",
               ylabel=r"background rejection $1/\epsilon_B$")
        ax.legend(fontsize=9)
        return figure_png(fig)


def score_shift_figure(histograms: dict[str, dict]) -> bytes:
    """Weighted distributions of the score shift s(g x) - s(x), one per symmetry."""
    with _atlas_style() as plt:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for label, h in histograms.items():
            edges, weights = np.asarray(h["edges"]), np.asarray(h["weights"])
            ax.stairs(np.maximum(weights, 1e-7), edges, label=label)
        ax.set(yscale="log", ylim=(1e-6, 2.0), xlabel=r"score shift $s(gx) - s(x)$",
               ylabel="fraction of copies")
        ax.legend(fontsize=8)
        return figure_png(fig)


def boost_figure(scans: dict[str, list[dict]]) -> bytes:
    """RMS score shift and AUC against the boost rapidity, per boost axis."""
    with _atlas_style() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"wspace": 0.35})
        for axis, scan in scans.items():
            y = [r["rapidity"] for r in scan]
            axes[0].plot(y, [r["score_shift_rms"] for r in scan], marker="o", label=axis)
            if "auc" in scan[0]:
                axes[1].plot(y, [np.nan if r["auc"] is None else r["auc"] for r in scan],
                             marker="o", label=axis)  # undefined: a gap
        axes[0].set(xlabel="boost rapidity", ylabel="RMS score shift")
        axes[1].set(xlabel="boost rapidity", ylabel="AUC")
        axes[0].legend(title="boost along")
        return figure_png(fig)


def _rejection_cell(record) -> str:
    return format_rejection(record) if isinstance(record, dict) else f"{record:.1f}"


def _grid_check(result: dict) -> dict:
    """The convergence check of a diagnosis in a few numbers: the relative change of A
    of the score on the check grid and whether the core found it converged (no
    ``aliasing`` finding on the convergence)."""
    conv = result.get("convergence") or {}
    if conv.get("method") is None:
        return {"checked": False}
    change = (conv.get("relative_changes") or {}).get("outputs.score.equivariance_rmse")
    aliasing = any(f["code"] == "aliasing" and f.get("where") == "convergence"
                   for f in result.get("findings") or [])
    return {"checked": True, "method": conv["method"], "check_size": conv.get("finer_size"),
            "score_A_relative_change": change, "max_relative_change": conv.get("max_rel_change"),
            "converged": not aliasing}


def _grid_check_cell(check: dict | None) -> str:
    if not check or not check.get("checked"):
        return "not run"
    change = check.get("score_A_relative_change")
    moved = "" if change is None else f", A moves {100 * change:.2g} %"
    return ("converged" if check["converged"] else "NOT converged") + moved


def table_markdown(analysis: dict) -> str:
    """The analysis table (Markdown): jets, performance, then per symmetry the rotations,
    A (in the score's units), invariant fraction, flip rate and grid check; a note on
    the resolution of 1/eps_B follows."""
    units = analysis.get("score_units") or "probability"
    rows = [("jets (signal / background)", f"{analysis['n_signal']} / {analysis['n_background']}"),
            ("score", units), ("AUC", f"{analysis['auc']:.4f}")]
    rows += [(f"1/eps_B at eps_S = {wp}", _rejection_cell(r))
             for wp, r in analysis["background_rejection"].items()]
    for s in analysis["symmetries"]:
        label = s["label"]
        if s.get("rotations"):
            rows.append((f"rotations, {label}", s["rotations"].split(": ", 1)[-1]))
        rows += [(f"A(score), {label}", f"{s['equivariance_rmse']:.3e}"),
                 (f"invariant fraction, {label}", f"{s['invariant_fraction']:.6f}"),
                 (f"flip rate, {label}", "undefined" if s["flip_rate"] is None
                  else f"{s['flip_rate']:.4f}")]
        if "grid_check" in s:
            rows.append((f"grid check, {label}", _grid_check_cell(s["grid_check"])))
    width = max(len(q) for q, _ in rows)
    vwidth = max(12, *(len(v) for _, v in rows))
    lines = [f"| {'quantity':<{width}} | {'value':>{vwidth}} |",
             f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|"]
    lines += [f"| {q:<{width}} | {v:>{vwidth}} |" for q, v in rows]
    lines += ["", f"A(score) is in the score's units ({units}). 1/eps_B: ± is the binomial "
              f"uncertainty of eps_B on the {analysis['n_background']} background jets; "
              f"\"> {analysis['n_background']}\" means no background jet passes, the largest "
              "rejection these jets resolve. Grid check: the same rotations turned by a "
              "random rotation (one grid more)."]
    return "\n".join(lines)


def analyze(tagger, jets: JetSet, out: str | Path, *, model: str = "tagger", degree: int = 4,
            symmetries=SYMMETRIES, rapidities=RAPIDITIES, signal: str | None = None,
            progress: bool = True) -> dict:
    """Run the analysis of ``tagger`` on labelled ``jets``; write its files to ``out``.

    Every diagnosis runs the convergence check (the same rule turned by a random
    rotation: one grid more) and covers the hidden layers of a tagger whose module
    names them (``module.layer_names()``: the shipped taggers). Returns ``{"kind": "jet_analysis", "domain": "jets",
    "n_jets", "n_signal", "n_background", "score_units", "auc", "background_rejection"
    ({eps_S: :func:`~symplug_jets.metrics.rejection` record}), "roc", "symmetries":
    [...], "boost_scan": {...}, "results": {stem: diagnosis}}``.
    """
    from symplug import SymplugError
    from symplug.quadrature import quadrature

    if jets.labels is None:
        raise SymplugError("the analysis needs labelled jets (label_* branches)")
    tagger = as_tagger(tagger)
    module = getattr(tagger, "module", None)
    layers = list(module.layer_names()) if hasattr(module, "layer_names") else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps(len(symmetries) + 3, progress)
    is_signal = signal_mask(jets.labels, jets.label_names, signal)
    step(f"scores of {len(jets)} jets ({int(is_signal.sum())} signal, "
         f"{int((~is_signal).sum())} background), tagger {model}")
    with torch.no_grad():
        raw = tagger_scores(tagger, torch.from_numpy(jets.p4), torch.from_numpy(jets.mask))
    score = signal_column(raw, jets.label_names, signal)
    eps_s, eps_b = roc(score, is_signal)
    analysis = {"kind": "jet_analysis", "domain": "jets", "symplug_version": __version__,
                "model": model, "n_jets": len(jets), "signal": signal_label(jets.label_names, signal),
                "n_signal": int(is_signal.sum()), "n_background": int((~is_signal).sum()),
                "score_units": tagger.units, "auc": auc(score, is_signal),
                "background_rejection": {f"{wp}": rejection(score, is_signal, wp)
                                         for wp in WORKING_POINTS},
                "roc": {"eps_s": eps_s.tolist(), "eps_b": eps_b.tolist()},
                "degree": degree, "symmetries": [], "results": {}}
    for label, frame, group in symmetries:
        rotations = grid_text(quadrature(group, degree).describe(), frame)
        step(f"{rotations}, and the same turned by a random rotation (grid check), "
             f"on {len(jets)} jets")
        start = time.perf_counter()
        result = diagnose(tagger, jets, group=group, degree=degree, frame=frame,
                          layers=layers, progress=progress)
        result["seconds"] = time.perf_counter() - start
        result["analysis"] = model  # its ROC and score shifts are in the analysis's figures
        stem = f"result_{frame}_{group}"
        write_json(result, out / f"{stem}.json")
        analysis["results"][stem] = result
        o = result["outputs"]["score"]
        analysis["symmetries"].append({
            "label": label, "frame": frame, "group": group, "result": f"{stem}.json",
            "rotations": result["summary"].get("rotations", rotations), "grid": result["grid"],
            "equivariance_rmse": o["equivariance_rmse"], "units": o["units"],
            "invariant_fraction": o["invariant_fraction"],
            "flip_rate": result["summary"]["flip_rate"], "grid_check": _grid_check(result),
            "score_shift": result["summary"]["score_shift"]})
    step(f"boost scans of {len(jets)} jets: {len(rapidities)} rapidities along the beam and "
         "along each jet's axis")
    start = time.perf_counter()
    analysis["boost_scan"] = {axis: boost_scan(tagger, jets, rapidities, axis=axis, signal=signal,
                                               progress=progress)
                              for axis in ("beam", "jet")}
    analysis["boost_seconds"] = time.perf_counter() - start
    step(f"writing table.md, roc.png, boost.png, predictions.root and analysis.json to {out}")
    table = table_markdown(analysis)
    write_bytes((table + "\n").encode(), out / "table.md")
    write_bytes(roc_figure({model: {**analysis["roc"], "auc": analysis["auc"]}}), out / "roc.png")
    write_bytes(boost_figure(analysis["boost_scan"]), out / "boost.png")
    classes = [analysis["signal"]] + [n for n in jets.label_names if n != analysis["signal"]]
    if raw.ndim == 2:  # columns in label order -> signal first
        scores = raw[:, [jets.label_names.index(c) for c in classes]]
    else:  # one signal score: signal and its complement
        scores = np.stack([score, 1 - score], 1)
    write_predictions(out / "predictions.root", jets, scores, classes[:scores.shape[1]])
    write_json({k: v for k, v in analysis.items() if k != "results"}, out / "analysis.json")
    return analysis

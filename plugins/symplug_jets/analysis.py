"""The jet-tagging analysis: performance and symmetry diagnostics in one table.

:func:`analyze` runs a tagger on jets, diagnoses its score under the symmetries of
:data:`SYMMETRIES` (the exact data symmetry first), scans boosts, and writes to a
folder: ``table.md``, ``roc.png`` (mplhep style), ``boost.png``,
``result_<frame>_<group>.json`` (symplug results) and ``predictions.root``
(weaver's ``Events`` tree). It returns a result of kind ``"jet_analysis"`` that the
report presents.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from symplug import __version__
from symplug.report import figure_png, pyplot
from symplug.result import write_bytes, write_json

from .domain import _is_signal, _scores, _signal_score, boost_scan, diagnose, signal_label
from .metrics import auc, background_rejection, roc
from .rootio import JetSet, write_predictions

SYMMETRIES = (  # (label, frame, group): exact data symmetry first
    ("SO(2) about the beam", "lab", "SO2"),
    ("SO(2) about the jet axis", "jet", "SO2"),
    ("SO(3), lab frame", "lab", "SO3"),
)
RAPIDITIES = tuple(np.linspace(0.0, 2.0, 9))


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
                axes[1].plot(y, [r["auc"] for r in scan], marker="o", label=axis)
        axes[0].set(xlabel="boost rapidity", ylabel="RMS score shift")
        axes[1].set(xlabel="boost rapidity", ylabel="AUC")
        axes[0].legend(title="boost along")
        return figure_png(fig)


def table_markdown(analysis: dict) -> str:
    """The analysis table (Markdown): performance, then A, invariant fraction and flip
    rate per symmetry."""
    rows = [("jets (signal / background)", f"{analysis['n_signal']} / {analysis['n_background']}"),
            ("AUC", f"{analysis['auc']:.4f}")]
    rows += [(f"1/eps_B at eps_S = {wp}", f"{r:.1f}")
             for wp, r in analysis["background_rejection"].items()]
    for s in analysis["symmetries"]:
        rows += [(f"A(score), {s['label']}", f"{s['equivariance_rmse']:.3e}"),
                 (f"invariant fraction, {s['label']}", f"{s['invariant_fraction']:.6f}"),
                 (f"flip rate, {s['label']}", f"{s['flip_rate']:.4f}")]
    width = max(len(q) for q, _ in rows)
    lines = [f"| {'quantity':<{width}} | {'value':>12} |", f"|{'-' * (width + 2)}|{'-' * 14}|"]
    lines += [f"| {q:<{width}} | {v:>12} |" for q, v in rows]
    return "\n".join(lines)


def analyze(tagger, jets: JetSet, out: str | Path, *, model: str = "tagger", degree: int = 4,
            symmetries=SYMMETRIES, rapidities=RAPIDITIES, signal: str | None = None,
            progress: bool = True) -> dict:
    """Run the analysis of ``tagger`` on labelled ``jets``; write its files to ``out``.

    Returns ``{"kind": "jet_analysis", "domain": "jets", "auc", "background_rejection",
    "roc", "symmetries": [...], "boost_scan": {...}, "results": {stem: diagnosis}}``.
    """
    from symplug import SymplugError

    if jets.labels is None:
        raise SymplugError("the analysis needs labelled jets (label_* branches)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        raw = _scores(tagger, torch.from_numpy(jets.p4), torch.from_numpy(jets.mask))
    score = _signal_score(raw, jets.label_names, signal)
    is_signal = _is_signal(jets.labels, jets.label_names, signal)
    eps_s, eps_b = roc(score, is_signal)
    analysis = {"kind": "jet_analysis", "domain": "jets", "symplug_version": __version__,
                "model": model, "n_jets": len(jets), "signal": signal_label(jets.label_names, signal),
                "n_signal": int(is_signal.sum()), "n_background": int((~is_signal).sum()),
                "auc": auc(score, is_signal),
                "background_rejection": {f"{wp}": background_rejection(score, is_signal, wp)
                                         for wp in (0.3, 0.5)},
                "roc": {"eps_s": eps_s.tolist(), "eps_b": eps_b.tolist()},
                "degree": degree, "symmetries": [], "results": {}}
    for label, frame, group in symmetries:
        start = time.perf_counter()
        result = diagnose(tagger, jets, group=group, degree=degree, frame=frame,
                          progress=progress, check_convergence=False)
        result["seconds"] = time.perf_counter() - start
        stem = f"result_{frame}_{group}"
        write_json(result, out / f"{stem}.json")
        analysis["results"][stem] = result
        o = result["outputs"]["score"]
        analysis["symmetries"].append({
            "label": label, "frame": frame, "group": group, "result": f"{stem}.json",
            "equivariance_rmse": o["equivariance_rmse"], "invariant_fraction": o["invariant_fraction"],
            "flip_rate": result["summary"]["flip_rate"],
            "score_shift": result["summary"]["score_shift"]})
    start = time.perf_counter()
    analysis["boost_scan"] = {axis: boost_scan(tagger, jets, rapidities, axis=axis, signal=signal)
                              for axis in ("beam", "jet")}
    analysis["boost_seconds"] = time.perf_counter() - start
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

"""The jets sections of the report: a jet analysis, or the tagging summary of a diagnosis."""

from __future__ import annotations

from symplug import ReportSection

from .analysis import boost_figure, roc_figure, score_shift_figure, table_markdown
from .domain import BLOCK, grid_text
from .metrics import rejection_text


def report_sections(result: dict, frame: str) -> list[ReportSection]:
    """A jet analysis, or the tagging summary of a diagnosis, rotations about the beam
    (``frame`` "lab") or each jet's axis ("jet")."""
    if result.get("kind") != "jet_analysis" and "summary" not in result:
        return []

    if result.get("kind") == "jet_analysis":
        shifts = {s["label"]: s["score_shift"] for s in result["symmetries"]}
        figures = {"roc.png": roc_figure({result["model"]: {**result["roc"], "auc": result["auc"]}}),
                   "score_shift.png": score_shift_figure(shifts),
                   "boost.png": boost_figure(result["boost_scan"])}
        return [ReportSection(f"Jet tagging analysis: {result['model']} on {result['n_jets']} jets",
                              table_markdown(result), figures)]
    s = result["summary"]
    rotations = s.get("rotations") or grid_text(result["grid"], frame)
    units = result["outputs"].get("score", {}).get("units") or "probability"
    counts = f"{s['n_jets']} jets"
    if "n_signal" in s:
        counts += f" ({s['n_signal']} signal, {s['n_background']} background)"
    flip = "undefined" if s.get("flip_rate") is None else f"{s['flip_rate']:.4f}"
    lines = [f"- {counts}; the engine's {result['n_samples']} samples above are blocks of up "
             f"to {BLOCK} jets; {len(s['skipped'])} jets skipped by the reader",
             f"- score: {units}; flip rate (copies on the other side of the working point): "
             f"{flip}"]
    if s.get("undefined"):
        lines.append(f"- {s['undefined']}")
    # a diagnosis of an analysis: its ROC and score shift are already in the analysis's figures
    alone = "analysis" not in result
    figures = ({"score_shift.png": score_shift_figure({rotations: s["score_shift"]})}
               if alone and s.get("score_shift") else {})
    if s.get("auc") is not None:
        rates = s["background_rejection"]
        lines.append(f"- AUC {s['auc']:.4f}; 1/eps_B at eps_S = 0.3: "
                     f"{rejection_text(rates['0.3'])}; at eps_S = 0.5: "
                     f"{rejection_text(rates['0.5'])}")
        if alone:
            figures["roc.png"] = roc_figure({"tagger": {**s["roc"], "auc": s["auc"]}})
    return [ReportSection(f"Jet tagging under {rotations}", "\n".join(lines), figures)]

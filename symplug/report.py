"""The report of one or more results: Markdown, self-contained HTML, JSON and TensorMaps.

``write_report({"atoms": diagnosis, "md": md_result}, out)`` writes to ``out``:

- ``<name>.json`` for every result (README "Result format" keys, atomically);
- ``<name>_spectra.mts`` for every diagnosis: the spectra as a metatensor
  TensorMap (see :func:`spectra_tensormap`);
- ``figures/*.png`` and ``report.md`` (figures linked), ``report.html`` (one file,
  figures embedded as data URIs, readable offline).

The report opens with a summary that answers first (:func:`summary_section`): per
diagnosis and output, A in the output's units and relative to the output's accuracy with
a verdict (thresholds: the module constants below, stated in the report as
:data:`VERDICT_RULE`), the grid and its convergence verdict, and the top findings; the
details follow. A figure is embedded once: a section repeating one shown above gets a
note instead.

Results are dispatched on their ``"kind"``: ``"diagnosis"`` (what
:func:`symplug.diagnose` returns: spectrum heat map over (l, sigma) per output and
layer, equivariance error per output with units, findings), ``"track"`` (training
curves) and anything else a plugin knows how to present through the
``symplug_report_sections`` hook (MD traces, ROC curves, ...).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import SymplugError
from .figures import figure_png, pyplot
from .findings import (CONVERGENCE_RELATIVE_TOL, SEVERITIES, convergence_verdict, items_text,
                       precision_text, sample_word, skipped_text)
from .groups import Group
from .precision import ROUND_OFF_CEILING, ROUND_OFF_FLOOR, ROUND_OFF_ULPS, equivariant_relative
from .records import ReportSection
from .result import write_bytes, write_json, write_tensormap
from .spectra import parse_sector_key

FLOOR = 1e-8  # smallest fraction the heat maps resolve (log colour scale)

# The summary's verdict on how well an output learned the symmetry, from its equivariance
# error A (RMS over samples, components and group elements, in the output's units).
# Where reference labels exist, A is compared with the output's error against them, E =
# the RMSE over random orientations (E^2 = A^2 + symmetrised RMSE^2, so (A / E)^2 is the
# share of the squared error that symmetry breaking makes); elsewhere with the output's
# RMS magnitude |y| (``relative_error``). A / |y| below the round-off of the precision the
# model computes in (symplug.precision.equivariant_relative of the result's "precision",
# the findings' threshold too) is "exact", whatever the labels.
LEARNED_VS_ERROR = 0.1  # A < 10 % of E: breaking < 1 % of the squared error
NOT_LEARNED_VS_ERROR = math.sqrt(0.5)  # A >= 71 % of E: >= half of it (A >= symmetrised RMSE)
LEARNED_VS_MAGNITUDE = 0.01  # without labels: A < 1 % of |y|
NOT_LEARNED_VS_MAGNITUDE = 0.1  # without labels: A >= 10 % of |y|
VERDICTS = ("exact", "learned", "partly", "not learned", "probe")
VERDICT_RULE = (
    "with reference labels, A against the output's error E against them (RMSE at random "
    f"orientations, in its units): **learned** below {LEARNED_VS_ERROR:.0%} of E (symmetry "
    f"breaking under {LEARNED_VS_ERROR ** 2:.0%} of E²), **not learned** from "
    f"{NOT_LEARNED_VS_ERROR:.0%} (half of E² or more), **partly** in between; without labels, "
    f"A against the output's RMS magnitude |y|: learned below {LEARNED_VS_MAGNITUDE:.0%}, not "
    f"learned from {NOT_LEARNED_VS_MAGNITUDE:.0%}; **exact** below the round-off of the "
    f"precision the model computes in, {ROUND_OFF_ULPS} machine epsilons of |y| (at least "
    f"{ROUND_OFF_FLOOR:.0e}, at most {ROUND_OFF_CEILING:.0%}: float32 "
    f"{equivariant_relative({'dtype': 'float32'}):.1e}, float64 "
    f"{equivariant_relative({'dtype': 'float64'}):.0e}; each result's line below states its "
    "own); **probe** where the group is not a symmetry of the data (e.g. "
    "SO(3) for jets, whose beam axis breaks it): A then measures how much the model depends "
    "on orientation, as it should, and there is nothing to learn.")
TOP_FINDINGS = 6  # findings in the summary: the first of each code per result, most severe first

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 1.2em auto; padding: 0 1em;
       color: #1a1a1a; line-height: 1.4; }
h1 { border-bottom: 2px solid #345; margin: 0 0 0.3em; font-size: 1.7em; }
h2 { border-bottom: 1px solid #ccd; margin-top: 2em; }
h2#summary { margin: 0.5em 0 0.3em; }
p { margin: 0.45em 0; }
table { border-collapse: collapse; margin: 0.5em 0 0.8em; font-size: 0.92em; }
th, td { border: 1px solid #ccd; padding: 0.2em 0.55em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
td code { white-space: nowrap; }
ul { margin: 0.3em 0; padding-left: 1.4em; }
.verdict-exact, .verdict-learned { color: #17692f; }
.verdict-partly { color: #9a5b00; }
.verdict-not-learned { color: #b3261e; }
.verdict-probe { color: #555555; }
.severity-error { color: #b3261e; font-weight: 600; }
.summary table { font-size: 0.9em; margin: 0.4em 0 0.5em; }
.summary td { white-space: nowrap; } .summary td:last-child { white-space: normal; }
.summary td:nth-child(4):nth-last-child(2) { white-space: normal; min-width: 24em; }
.summary li, .summary p.note { font-size: 0.88em; }
.summary p { margin: 0.35em 0; }
.summary ul { margin: 0.2em 0 0.4em; }
.severity-warning { color: #9a5b00; font-weight: 600; }
"""


def _sector_order(keys) -> list[str]:
    """Sector keys by l, then sigma = +1, -1 (0 for SO2/O2 harmonics)."""
    return sorted(keys, key=lambda k: (parse_sector_key(k)[0], -parse_sector_key(k)[1]))


def _sector_label(key: str) -> str:
    """A compact tick label of a sector: ``1+`` for (1, +1), ``1-`` for (1, -1), ``1`` for
    (1, 0)."""
    l, sigma = parse_sector_key(key)
    return f"{l}{'+' if sigma > 0 else '-' if sigma < 0 else ''}"


def _cell_text(value: float) -> str:
    """A heat-map cell's fraction in at most four characters."""
    if not math.isfinite(value):
        return ""
    if value >= 0.995:
        return "1"
    if value >= 0.01:
        return f"{value:.2f}".lstrip("0")
    if value < FLOOR:
        return "0"
    return f"{value:.0e}".replace("e-0", "e-")


def figure_spectra(result: dict) -> bytes:
    """Heat map of the fraction of power per (l, sigma) sector of every output and layer
    (one row each): raw, and beside it data-set centred (layers only); log colour scale
    from :data:`FLOOR` to 1, each cell labelled with its fraction where it has room; the
    last column of a panel is the truncation (power above l_max). Sized to its content: a
    fixed cell size and 10 pt labels, at most ~1100 px wide (the page's column at 1400 px),
    so that the labels are shown at their size (>= 11 px)."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    outputs = list(result["outputs"].items())
    layers = list(result.get("layers", {}).items())
    labels = [f"output {n}" for n, _ in outputs] + [n for n, _ in layers]
    raw = [(o["spectrum"], o["truncation"]) for _, o in outputs]
    raw += [(layer["spectrum"], layer["truncation"]) for _, layer in layers]
    sectors = _sector_order(raw[0][0])
    panels = [("raw", raw)]
    if layers:
        blank = ({k: math.nan for k in sectors}, math.nan)
        panels.append(("data-set centred (layers)",
                       [blank] * len(outputs)
                       + [(layer["spectrum_centered"], layer["truncation_centered"])
                          for _, layer in layers]))
    n_cols, n_rows = len(sectors) + 1, len(labels)
    label_width = 0.12 + 0.075 * max(len(t) for t in labels)  # inches of the row labels
    cell = min(0.62, (9.2 - label_width) / (n_cols * len(panels)))
    width = label_width + len(panels) * n_cols * cell + 0.35 * (len(panels) - 1) + 1.25
    height = 1.15 + 0.36 * max(n_rows, 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False,
                             sharey=True, gridspec_kw={"wspace": 0.06})
    cmap = plt.get_cmap("viridis").with_extremes(bad="#f0f0f0")
    norm = LogNorm(FLOOR, 1.0)
    image = None
    for ax, (title, rows) in zip(axes[0], panels):
        values = np.array([[s[k] for k in sectors] + [t] for s, t in rows], dtype=float)
        image = ax.imshow(np.clip(values, FLOOR, 1.0), norm=norm, cmap=cmap, aspect="auto")
        for (i, j), v in np.ndenumerate(values):
            if math.isfinite(v) and cell >= 0.42:  # room for the fraction (else colour only)
                dark = sum(cmap(float(norm(min(max(v, FLOOR), 1.0))))[:3]) < 1.6
                ax.text(j, i, _cell_text(v), ha="center", va="center", fontsize=8.5,
                        color="white" if dark else "black")
        parity = Group.parse(result["group"]).has_improper
        crowded = parity and cell < 0.32  # label each l once: (l, +1), then (l, -1) unlabelled
        ax.set_xticks(range(n_cols), [
            (str(parse_sector_key(k)[0]) if parse_sector_key(k)[1] > 0 else "") if crowded
            else _sector_label(k) for k in sectors] + [f">{result['lmax']}"], fontsize=10)
        ax.set_xlabel("sector l: sigma +1, then -1" if crowded else
                      "sector: l and parity sigma (+/-)" if parity else "sector l", fontsize=10)
        ax.set_title(f"{title}: {result['group']}, l <= {result['lmax']}" if title == "raw"
                     else title, fontsize=10)
        ax.tick_params(length=0)
        if outputs and layers:
            ax.axhline(len(outputs) - 0.5, color="white", linewidth=3)
    axes[0][0].set_yticks(range(n_rows), labels, fontsize=10)
    bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.9 / width, pad=0.02,
                       aspect=max(8.0, 12 * height / 4), ticks=[1e-8, 1e-6, 1e-4, 1e-2, 1.0])
    bar.set_label("fraction of power", fontsize=10)
    bar.ax.tick_params(labelsize=9)
    return figure_png(fig)


def is_data_symmetry(result: dict) -> bool:
    """Whether the result's group is a symmetry of its domain's data
    (:meth:`~symplug.Domain.is_symmetry`); True when the domain is not installed."""
    from .plugins import domains

    found = domains().get(result.get("domain"))
    return True if found is None else found[1].is_symmetry(result["group"])


def symmetry_verdict(output: dict, probe: bool = False, precision: dict | None = None) -> dict:
    """How well an output learned the symmetry, by the thresholds above (:data:`VERDICT_RULE`);
    ``probe``: the group is not a symmetry of the data, and the verdict is ``"probe"``;
    ``precision``: the result's ``"precision"`` record, which sets the "exact" threshold
    (:func:`symplug.precision.equivariant_relative`; None: float64).

    Returns ``{"verdict", "ratio", "basis", "reference"}``: ``ratio`` is A over the output's
    error against the labels (``basis`` ``"error"``, A and E from its ``bias_variance``,
    over the labelled samples) or over its RMS magnitude (``basis`` ``"magnitude"``);
    ``reference`` is that error or magnitude in the output's units (None if unknown);
    ``verdict`` is one of :data:`VERDICTS`, or ``"unknown"`` without the numbers."""
    a, relative = output.get("equivariance_rmse"), output.get("relative_error")
    if output.get("undefined"):  # e.g. a zero response: no verdict
        return {"verdict": "unknown", "ratio": None, "basis": None, "reference": None}
    split = output.get("bias_variance") or {}
    error = split.get("random_orientation_rmse")
    if error and split.get("equivariance_rmse") is not None:
        ratio, basis, reference = split["equivariance_rmse"] / error, "error", error
        learned, not_learned = LEARNED_VS_ERROR, NOT_LEARNED_VS_ERROR
    elif relative is not None:
        ratio, basis = relative, "magnitude"
        reference = a / relative if a is not None and relative > 0 else None
        learned, not_learned = LEARNED_VS_MAGNITUDE, NOT_LEARNED_VS_MAGNITUDE
    else:
        return {"verdict": "unknown", "ratio": None, "basis": None, "reference": None}
    if relative is not None and relative < equivariant_relative(precision):
        verdict = "exact"
    elif ratio < learned:
        verdict = "learned"
    elif ratio < not_learned:
        verdict = "partly"
    else:
        verdict = "not learned"
    if probe:
        verdict = "probe"
    return {"verdict": verdict, "ratio": ratio, "basis": basis, "reference": reference}


def _quantity(value, units: str) -> str:
    """A number with its units ("(no units)" for a dimensionless output)."""
    return f"{_fmt(value)} {units}" if units else f"{_fmt(value)} (no units)"


def _percent(ratio: float) -> str:
    return f"{100 * ratio:.2g}%" if ratio >= 1e-4 else f"{ratio:.1e} x"


def _relative_text(output: dict, v: dict, samples: str = "samples") -> str:
    units = output.get("units") or ""
    if v["basis"] is None:
        return "-"
    reference = "" if v["reference"] is None else f" = {_fmt(v['reference'])} {units}".rstrip()
    if v["basis"] == "error":
        split = output["bias_variance"]
        part = ("" if split.get("n_labelled", output["n_samples"]) >= output["n_samples"] else
                f" ({split['n_labelled']} of {output['n_samples']} {samples} labelled)")
        return f"{_percent(v['ratio'])} of E{reference}{part}"
    return f"{_percent(v['ratio'])} of |y|{reference} (no labels)"


def _grid_change(result: dict, name: str) -> str:
    conv = result.get("convergence") or {}
    change = result["outputs"][name].get("grid_change")  # set by diagnose from the check
    if change is None:
        return "not checked" if conv.get("finer_degree") is None and not conv.get("method") \
            else "-"
    over = f" (over {CONVERGENCE_RELATIVE_TOL:.0%})" if change > CONVERGENCE_RELATIVE_TOL else ""
    return f"changes {100 * change:.2g}%{over}"


def _grid_text(result: dict) -> str:
    grid = result["grid"]
    return (f"{result['group']}, {grid['kind']} grid of degree {grid['degree']} "
            f"({grid['size']} elements)")


def top_findings(results: Mapping[str, dict]) -> tuple[list[tuple[str, dict, int]], int]:
    """The summary's findings: the first (most severe) finding of each code of each result,
    as ``(result name, finding, number of findings of that code there)``, most severe
    first (then in result order), at most :data:`TOP_FINDINGS`; and how many findings
    there are in all."""
    picked: list[tuple[str, dict, int]] = []
    total = 0
    for name, result in results.items():
        found = sorted(result.get("findings") or [],
                       key=lambda f: SEVERITIES.index(f["severity"]))
        total += len(found)
        for code in dict.fromkeys(f["code"] for f in found):
            same = [f for f in found if f["code"] == code]
            picked.append((name, same[0], len(same)))
    picked.sort(key=lambda item: SEVERITIES.index(item[1]["severity"]))
    return picked[:TOP_FINDINGS], total


def figure_overview(rows: list[tuple[str, dict]]) -> bytes:
    """One row per (result, output): A relative to the output's error against the labels
    (or to its magnitude), log scale, on the verdict's bands (green learned, amber partly,
    red not learned), sized to the number of rows."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    ratios = [v["ratio"] for _, v in rows if v["ratio"] is not None and v["ratio"] > 0]
    low = max(min([1e-3] + [r / 3 for r in ratios]), 1e-9)
    high = max([1.5] + [r * 2.5 for r in ratios])
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.36 * len(rows)))
    colours = {"learned": "#d9efd9", "partly": "#fbeccd", "not learned": "#f7d4d0"}
    for i, (label, v) in enumerate(rows):
        if v["basis"] is None:
            continue
        probe = v["verdict"] == "probe"  # not a symmetry of the data: no bands, grey
        if not probe:
            edges = ((LEARNED_VS_ERROR, NOT_LEARNED_VS_ERROR) if v["basis"] == "error"
                     else (LEARNED_VS_MAGNITUDE, NOT_LEARNED_VS_MAGNITUDE))
            for (x0, x1), verdict in zip(((low, edges[0]), edges, (edges[1], high)), colours):
                ax.add_patch(Rectangle((x0, i - 0.42), x1 - x0, 0.84, color=colours[verdict],
                                       linewidth=0))
        x = min(max(v["ratio"], low), high)
        ax.plot([x], [i], marker="o", color="#777777" if probe else "#1f3a5f", markersize=7)
        ax.text(x * 1.25, i, f"{_percent(v['ratio'])}: "
                + ("probe (not a data symmetry)" if probe else v["verdict"]), va="center",
                fontsize=10, color="#555555" if probe else "black")
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=10)
    ax.tick_params(axis="x", labelsize=10)
    ax.set_xlabel("A relative to the error against labels (E), or to the RMS magnitude |y|",
                  fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return figure_png(fig)


def summary_section(results: Mapping[str, dict],
                    details: Mapping[str, str]) -> ReportSection | None:
    """The report's first section: per diagnosis and output, A in the output's units and
    relative to its accuracy with a verdict (:func:`symmetry_verdict`), the grid and its
    convergence verdict, the top findings, and a figure of the verdicts; ``details``: the
    title of each result's first section below, by result name (linked). None when no
    result is a diagnosis."""
    diagnoses = {n: r for n, r in results.items()
                 if r.get("kind", "diagnosis") == "diagnosis" and "outputs" in r}
    if not diagnoses:
        return None
    rows, overview, grids = [], [], []
    for name, result in diagnoses.items():
        probe = not is_data_symmetry(result)
        for i, (out, o) in enumerate(result["outputs"].items()):
            v = symmetry_verdict(o, probe, result.get("precision"))
            domain = result.get("domain", name)
            where = result["group"] if domain == name else f"{domain}, {result['group']}"
            rows.append([f"`{name}` ({where})" if i == 0 else "", out,
                         _quantity(o.get("equivariance_rmse"), o.get("units") or ""),
                         _relative_text(o, v, sample_word(result)), f"**{v['verdict']}**",
                         _grid_change(result, out)])
            overview.append((f"{name}: {out}" + (" (vs E)" if v["basis"] == "error" else
                                                  " (vs |y|)"), v))
        verdict = convergence_verdict(result)
        grids.append(f"- `{name}`: {_grid_text(result)}; computes in {precision_text(result)}; "
                     + (verdict if verdict else "grid convergence not checked") + ".")
    top, total = top_findings(diagnoses)
    text = (_table(["result", "output", "A (RMS equivariance error)",
                    "A relative to accuracy (E or |y|)", "verdict", "A on check grid"], rows)
            + "\n\nVerdict: " + VERDICT_RULE
            + "\n\n**Grid convergence and precision** (is A resolved by the grid? what is "
              "round-off?):\n\n" + "\n".join(grids))
    if top:
        text += (f"\n\n**Top findings and what to do** ({len(top)} of {total}; all of "
                 "them further down):\n\n" + _table(
                     ["severity", "result", "code", "evidence", "what to do"],  # CSS: 4th of 5 wraps
                     [[f["severity"], f"`{name}`",
                       f"`{f['code']}`" + (f"\u00a0\u00d7{n}" if n > 1 else ""), f["evidence"],
                       f.get("remedy") or ""]
                      for name, f, n in top]))
    else:
        text += "\n\n**Findings**: no failure mode found."
    if details:
        text += "\n\nDetails below, per result: " + ", ".join(
            f"[{name}](#{_slug(title)})" for name, title in details.items()) + "."
    return ReportSection("Summary", text, {"overview.png": figure_overview(overview)})


def _slug(title: str) -> str:
    """The anchor of a heading, as Python-Markdown's ``toc`` extension (and GitHub) makes it."""
    value = re.sub(r"[^\w\s-]", "", title).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def spectra_tensormap(result: dict):
    """The spectra of a diagnosis as a metatensor ``TensorMap``.

    Keys ``(chi_lambda, chi_sigma)``: the O(3) sector of the orbit content, named as
    metatomic names it (``o3_lambda, o3_sigma`` name the representation of a target
    there); sigma 0 for the sectors without parity (SO3, SO2 harmonics). Samples
    ``(system, layer)``: ``system`` is the sample index (-1 for the data-set
    aggregate), ``layer`` indexes ``result["tensormap_layers"]`` (outputs first, as
    ``output:NAME``, then the layers); properties ``feature``: 0 = fraction of the
    squared norm in the sector, 1 = its power (output units squared).
    """
    from .symmetry_tensormaps import sector_tensormap

    rows: list[tuple[int, int, dict, dict]] = []  # (system, layer, fractions, powers)
    names: list[str] = []
    entries = [(f"output:{n}", o) for n, o in result["outputs"].items()]
    entries += list(result.get("layers", {}).items())
    for index, (name, entry) in enumerate(entries):
        names.append(name)
        rows.append((-1, index, entry["spectrum"], entry.get("power", {})))
        for item in entry.get("per_sample_spectrum", []):
            rows.append((item["index"], index, item["spectrum"], item.get("power", {})))
    result["tensormap_layers"] = names
    keys = _sector_order(rows[0][2])
    return sector_tensormap([parse_sector_key(key) for key in keys], ["system", "layer"],
                            [[s, i] for s, i, _, _ in rows],
                            [[[f[key], p.get(key, math.nan)] for _, _, f, p in rows]
                             for key in keys], "feature")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def diagnosis_sections(name: str, result: dict) -> list[ReportSection]:
    """The core sections of a diagnosis: grid, errors, spectra, findings."""
    grid = result["grid"]
    head = [f"Domain `{result['domain']}`, group {result['group']}, {grid['kind']} grid of "
            f"degree {grid['degree']} ({grid['size']} elements, exact for products up to band "
            f"{grid['exact_degree']}), spectra up to l = {result['lmax']}, "
            f"{items_text(result)}."]
    head.append(f"The model computes in {precision_text(result)}.")
    verdict = convergence_verdict(result)
    if verdict:
        head.append(verdict[0].upper() + verdict[1:] + ".")
    if result.get("skipped"):
        failed = skipped_text(result)
        head.append("Left out (listed in the JSON under `skipped`): "
                    f"{failed or 'a part of the run that failed'}.")
    partial = [f"{name} {o['bias_variance']['n_labelled']} of {o['n_samples']}"
               for name, o in result["outputs"].items()
               if o.get("bias_variance", {}).get("n_labelled", o["n_samples"]) < o["n_samples"]]
    if partial:
        head.append(f"Only some {sample_word(result)} carry reference labels "
                    f"({', '.join(partial)}): the split against labels covers those.")
    rows = []
    for out_name, o in result["outputs"].items():
        rows.append([out_name, f"`{o['rep']}`", o["units"] or "-", _fmt(o["equivariance_rmse"]),
                     _fmt(o["relative_error"]), _fmt(o["invariant_fraction"], ".6f"),
                     _fmt(o["truncation"], ".1e")])
    text = "\n\n".join(head) + "\n\n" + _table(
        ["output", "rep", "units", "A (RMSE)", "A / RMS magnitude", "invariant fraction",
         "truncation"], rows)
    labelled = [(n, o) for n, o in result["outputs"].items() if o.get("bias_variance")]
    if labelled:
        text += ("\n\nAgainst the reference labels, as metatrain's evaluation reports it: the "
                 "oriented RMSE over random orientations is sqrt(equivariance^2 + O(3)-averaged"
                 "^2); the share is the part of its square due to symmetry breaking; the grid "
                 "column flags an A that moves by more than 1 % on the check grid.\n\n")
        text += _table(
            ["output", "units", "equivariance RMSE", "O(3)-averaged RMSE", "O(3)-averaged MAE",
             "oriented RMSE", "symmetry share", "grid"],
            [[n, o["units"] or "-", _fmt(bv["equivariance_rmse"]), _fmt(bv["symmetrized_rmse"]),
              _fmt(bv["symmetrized_mae"]), _fmt(bv["random_orientation_rmse"]),
              _fmt(bv["symmetry_share"], ".1%"),
              "-" if "grid_converged" not in o else
              ("converged" if o["grid_converged"] else "changes")
              + f" ({100 * o['grid_change']:.2g} %)"]
             for n, o in labelled for bv in [o["bias_variance"]]])
    text += ("\n\nThe heat map gives the fraction of each output's and layer's power per "
             "(l, sigma) sector of the group; the last column is the power above l_max.")
    figures = {"spectra.png": figure_spectra(result)}
    if result.get("layers"):
        text += "\n\n" + _table(
            ["layer", "invariant fraction", "centred", "truncation"],
            [[n, _fmt(layer["invariant_fraction"], ".4f"),
              _fmt(layer["invariant_fraction_centered"], ".4f"), _fmt(layer["truncation"], ".1e")]
             for n, layer in result["layers"].items()])
    sections = [ReportSection(f"{name}: symmetry diagnosis", text, figures)]
    findings = result.get("findings") or []
    if findings:
        sections.append(ReportSection(f"{name}: findings", _table(
            ["severity", "code", "where", "evidence", "remedy"],
            [[f["severity"], f"`{f['code']}`", f.get("where") or "-", f["evidence"], f["remedy"]]
             for f in findings])))
    else:
        sections.append(ReportSection(f"{name}: findings", "No failure mode found."))
    return sections


def track_sections(name: str, track: dict) -> list[ReportSection]:
    """Training curves and the last epoch's numbers of a ``track`` result."""
    from .training.tracking import track_figure

    last = track["epochs"][-1]
    rows = [[o, _fmt(v["equivariance_rmse"]), v.get("units", "")]
            for o, v in last.get("outputs", {}).items()]
    text = (f"{len(track['epochs'])} evaluations, domain `{track['domain']}`, group "
            f"{track['group']}.\n\n" + _table(["output", f"A at epoch {last['epoch']}", "units"],
                                              rows))
    return [ReportSection(f"{name}: training", text,
                          {"training.png": figure_png(track_figure(track))})]


def sections_for(name: str, result: dict) -> list[ReportSection]:
    """Core sections for ``result`` (by kind), then those of every plugin."""
    from .plugins import report_sections

    kind = result.get("kind", "diagnosis" if "outputs" in result else None)
    sections: list[ReportSection] = []
    if kind == "diagnosis":
        sections += diagnosis_sections(name, result)
    elif kind == "track":
        sections += track_sections(name, result)
    sections += report_sections(result)
    if not sections:
        raise SymplugError(f"no report section for result {name!r} (kind {kind!r}): "
                           "no installed plugin presents it")
    return sections


def markdown_to_html(markdown_text: str, figures: Mapping[str, bytes], title: str) -> str:
    """One HTML page; ``figures/NAME`` links become embedded PNG data URIs."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code", "toc"])
    body = re.sub(r"<strong>(exact|learned|partly|not learned|probe)</strong>",
                  lambda m: f'<strong class="verdict-{m.group(1).replace(" ", "-")}">'
                            f"{m.group(1)}</strong>", body)
    body = re.sub(r"<td>(error|warning)</td>", r'<td class="severity-\1">\1</td>', body)
    body = body.replace("<p>Verdict: ", '<p class="note">Verdict: ')
    start = body.find('<h2 id="summary">')
    if start >= 0:  # the summary, set compactly: it is the report's first screen
        end = body.find("<h2", start + 1)
        end = len(body) if end < 0 else end
        body = (body[:start] + '<section class="summary">\n' + body[start:end]
                + "</section>\n" + body[end:])

    def embed(match: re.Match) -> str:
        data = figures.get(match.group(1))
        if data is None:
            raise SymplugError(f"report links a missing figure {match.group(1)!r}")
        return 'src="data:image/png;base64,' + base64.b64encode(data).decode() + '"'

    body = re.sub(r'src="figures/([^"]+)"', embed, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def write_report(results: Mapping[str, dict], out: str | os.PathLike,
                 title: str = "symplug report", intro: str = "") -> dict[str, Path]:
    """Write JSON, TensorMaps, figures, ``report.md`` and ``report.html`` to ``out``.

    ``results`` maps a short name (a file stem) to a result dictionary. Returns
    the paths written, by kind.
    """
    from . import __version__

    if not results:
        raise SymplugError("no results to report")
    out = Path(out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SymplugError(f"cannot write the report to {str(out)!r}: {exc.strerror}") from exc
    written: dict[str, Path] = {}
    parts = [f"# {title}", f"symplug {__version__}." + (f" {intro}" if intro else "")]
    figures: dict[str, bytes] = {}
    seen: dict[bytes, str] = {}  # figure content -> name: identical figures are shown once
    sections: list[tuple[str, ReportSection]] = []
    for name, result in results.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SymplugError(f"result name {name!r} is not a file stem (letters, digits, _.-)")
        if result.get("kind", "diagnosis") == "diagnosis" and "outputs" in result:
            written[f"{name}_spectra"] = write_tensormap(spectra_tensormap(result),
                                                         out / f"{name}_spectra.mts")
        written[name] = write_json(result, out / f"{name}.json")
        sections += [(name, section) for section in sections_for(name, result)]
    firsts: dict[str, str] = {}
    for name, section in sections:
        firsts.setdefault(name, section.title)
    summary = summary_section(results, firsts)
    if summary is not None:  # the answer first, the details below
        sections.insert(0, ("", summary))
    for name, section in sections:
        parts.append(f"## {section.title}\n\n{section.markdown}")
        for fig_name, data in section.figures.items():
            fig_name = f"{name}_{fig_name}" if name else fig_name
            if fig_name in figures:
                raise SymplugError(f"two report sections write the figure {fig_name!r}")
            if data in seen:
                parts.append(f"(Same figure as `{seen[data]}` above.)")
                continue
            seen[data] = fig_name
            figures[fig_name] = data
            parts.append(f"![{fig_name}](figures/{fig_name})")
    for fig_name, data in figures.items():
        write_bytes(data, out / "figures" / fig_name)
    text = "\n\n".join(parts) + "\n"
    write_bytes(text.encode(), out / "report.md")
    write_bytes(markdown_to_html(text, figures, title).encode(), out / "report.html")
    written["report.md"] = out / "report.md"
    written["report.html"] = out / "report.html"
    return written

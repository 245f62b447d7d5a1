"""The report of one or more results: Markdown, self-contained HTML, JSON and TensorMaps.

``write_report({"atoms": diagnosis, "md": md_result}, out)`` writes to ``out``:

- ``<name>.json`` for every result (DESIGN §3 keys, atomically);
- ``<name>_spectra.mts`` for every diagnosis: the spectra as a metatensor
  TensorMap (see :func:`spectra_tensormap`);
- ``figures/*.png`` and ``report.md`` (figures linked), ``report.html`` (one file,
  figures embedded as data URIs, readable offline).

Results are dispatched on their ``"kind"``: ``"diagnosis"`` (what
:func:`symplug.diagnose` returns: spectrum heat map over (l, sigma) per output and
layer, equivariance error per output with units, findings), ``"track"`` (training
curves) and anything else a plugin knows how to present through the
``symplug_report_sections`` hook (MD traces, ROC curves, ...).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import SymplugError
from .findings import convergence_verdict
from .records import ReportSection
from .result import write_bytes, write_json, write_tensormap
from .spectra import parse_sector_key

FLOOR = 1e-8  # smallest fraction the heat maps resolve (log colour scale)

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #345; } h2 { border-bottom: 1px solid #ccd; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
img { max-width: 100%; display: block; margin: 1em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures rendered to files, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (100 dpi, tight), the figure closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def _sector_order(keys) -> list[str]:
    """Sector keys by l, then sigma = +1, -1 (0 for SO2/O2 harmonics)."""
    return sorted(keys, key=lambda k: (parse_sector_key(k)[0], -parse_sector_key(k)[1]))


def _spectrum_rows(result: dict, centered: bool) -> tuple[list[str], list[dict], list[float]]:
    """Row labels, spectra and truncations of the outputs and layers of a diagnosis."""
    labels, spectra, truncations = [], [], []
    if not centered:
        for name, o in result["outputs"].items():
            labels.append(f"output {name}")
            spectra.append(o["spectrum"])
            truncations.append(o["truncation"])
    key, trunc = (("spectrum_centered", "truncation_centered") if centered
                  else ("spectrum", "truncation"))
    for name, layer in result.get("layers", {}).items():
        labels.append(name)
        spectra.append(layer[key])
        truncations.append(layer[trunc])
    return labels, spectra, truncations


def figure_spectra(result: dict) -> bytes:
    """Heat map of the fraction of power per (l, sigma) sector for every output and
    layer (raw), beside the data-set centred spectra of the layers; log colour scale
    from :data:`FLOOR` to 1, the last column is the truncation (power above l_max)."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    panels = [(False, "raw")]
    if result.get("layers"):
        panels.append((True, "data-set centred (layers)"))
    first = _spectrum_rows(result, False)
    height = 1.2 + 0.32 * len(first[0])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False)
    image = None
    for ax, (centered, title) in zip(axes[0], panels):
        labels, spectra, truncations = _spectrum_rows(result, centered)
        sectors = _sector_order(spectra[0])
        values = np.array([[s[k] for k in sectors] + [t] for s, t in zip(spectra, truncations)])
        image = ax.imshow(np.clip(values, FLOOR, 1.0), norm=LogNorm(FLOOR, 1.0), cmap="viridis",
                          aspect="auto")
        ax.set_xticks(range(len(sectors) + 1), [k.replace(",", ",\n") for k in sectors]
                      + ["trunc."], fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("sector  l, sigma")
        ax.set_title(f"{title}: {result['group']}, l <= {result['lmax']}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="fraction of power", shrink=0.9)
    return figure_png(fig)


def figure_errors(result: dict) -> bytes:
    """Relative equivariance error A / |y| per output (log scale), annotated with A
    in the output's units."""
    plt = pyplot()
    names = list(result["outputs"])
    rel = [max(result["outputs"][n]["relative_error"] or 0.0, 1e-17) for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(names)))
    ax.barh(range(len(names)), rel, color="#4c72b0")
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    for i, name in enumerate(names):
        o = result["outputs"][name]
        ax.text(rel[i], i, f"  A = {o['equivariance_rmse']:.3g} {o['units']}".rstrip(),
                va="center", fontsize=8)
    ax.set_xlabel("relative equivariance error A / |y|")
    ax.set_title(f"{result['domain']}: equivariance error per output under {result['group']}",
                 fontsize=9)
    ax.set_xlim(min(rel) / 3, max(rel) * 300)
    return figure_png(fig)


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
    import metatensor

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
    blocks, keys = [], []
    for key in _sector_order(rows[0][2]):
        l, sigma = parse_sector_key(key)
        values = np.array([[f[key], p.get(key, math.nan)] for _, _, f, p in rows])
        samples = metatensor.Labels(["system", "layer"],
                                    np.array([[s, i] for s, i, _, _ in rows], dtype=np.int32))
        blocks.append(metatensor.TensorBlock(
            values=values, samples=samples, components=[],
            properties=metatensor.Labels(["feature"], np.array([[0], [1]], dtype=np.int32))))
        keys.append([l, sigma])
    return metatensor.TensorMap(metatensor.Labels(["chi_lambda", "chi_sigma"],
                                                  np.array(keys, dtype=np.int32)), blocks)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
            f"{result['n_samples']} samples."]
    verdict = convergence_verdict(result)
    if verdict:
        head.append(verdict[0].upper() + verdict[1:] + ".")
    if result.get("skipped"):
        head.append(f"{len(result['skipped'])} samples failed and were left out (listed in "
                    f"the JSON under `skipped`).")
    partial = [f"{name} {o['bias_variance']['n_labelled']} of {o['n_samples']}"
               for name, o in result["outputs"].items()
               if o.get("bias_variance", {}).get("n_labelled", o["n_samples"]) < o["n_samples"]]
    if partial:
        head.append(f"Only some samples carry reference labels ({', '.join(partial)}): the "
                    "split against labels covers those.")
    rows = []
    for out_name, o in result["outputs"].items():
        rows.append([out_name, f"`{o['rep']}`", o["units"] or "-", _fmt(o["equivariance_rmse"]),
                     _fmt(o["relative_error"]), _fmt(o["invariant_fraction"], ".6f"),
                     _fmt(o["truncation"], ".1e")])
    text = "\n\n".join(head) + "\n\n" + _table(
        ["output", "rep", "units", "A (RMSE)", "relative A", "invariant fraction", "truncation"],
        rows)
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
              "-" if "grid_converged" not in bv else
              ("converged" if bv["grid_converged"] else "changes")
              + f" ({100 * bv['grid_change']:.2g} %)"]
             for n, o in labelled for bv in [o["bias_variance"]]])
    figures = {"errors.png": figure_errors(result), "spectra.png": figure_spectra(result)}
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
    from .training import track_figure

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

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

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
    for name, result in results.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SymplugError(f"result name {name!r} is not a file stem (letters, digits, _.-)")
        if result.get("kind", "diagnosis") == "diagnosis" and "outputs" in result:
            written[f"{name}_spectra"] = write_tensormap(spectra_tensormap(result),
                                                         out / f"{name}_spectra.mts")
        written[name] = write_json(result, out / f"{name}.json")
        for section in sections_for(name, result):
            parts.append(f"## {section.title}\n\n{section.markdown}")
            for fig_name, data in section.figures.items():
                fig_name = f"{name}_{fig_name}"
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

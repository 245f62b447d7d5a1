"""The atoms sections of the report: the MD comparison and the per-structure table."""

from __future__ import annotations

import io

from symplug import ReportSection

MD_COLUMNS = (("energy_drift_meV_per_atom_per_ps", "drift (meV/atom/ps)"),
              ("completed_fraction", "steps completed"),
              ("time_to_failure_ps", "failure at (ps)"),
              ("angular_momentum_max", "max abs L (amu A^2/fs)"),
              ("torque_rms_eV", "RMS torque (eV)"), ("rdf_rms_difference", "RDF RMS diff."))


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def md_section(result: dict) -> list[ReportSection]:
    """The table and traces of an MD comparison (``kind`` "md")."""
    from .md import plot

    rows = [f"| variant | {' | '.join(label for _, label in MD_COLUMNS)} |",
            "|---|" + "---|" * len(MD_COLUMNS)]
    rows += [f"| {name} | " + " | ".join(_cell(row.get(k)) for k, _ in MD_COLUMNS) + " |"
             for name, row in result["table"].items()]
    text = (f"NVE, {result['structure']} ({result['n_atoms']} atoms, "
            f"{'periodic' if result['periodic'] else 'isolated'}), {result['steps']} steps "
            f"of {result['timestep_fs']} fs from {result['temperature_K']} K, seed "
            f"{result['seed']}.\n\n" + "\n".join(rows))
    outer = [n for n, row in result["table"].items() if row.get("energy_drift_steps") == "outer"]
    if outer:
        text += (f"\n\nDrift of {', '.join(outer)}: K + E_avg at the outer (correction) steps "
                 "only, the quantity impulse multiple time stepping conserves.")
    return [ReportSection("MD stability", text, {"md.png": plot(result, io.BytesIO()).getvalue()})]


def structures_section(result: dict) -> list[ReportSection]:
    """A diagnosis's A of every output per structure, when it kept per-sample figures."""
    structures = (result.get("summary") or {}).get("structures")
    if not structures or "outputs" not in result or not all(
            "per_sample" in o for o in result["outputs"].values()):
        return []
    names = list(result["outputs"])
    header = "| # | structure | atoms | " + " | ".join(
        f"A {n} ({result['outputs'][n]['units']})" for n in names) + " |"
    rows = [header, "|---|---|---|" + "---|" * len(names)]
    per_sample = {n: {p["index"]: p for p in result["outputs"][n]["per_sample"]} for n in names}
    for index, s in zip(sorted(per_sample[names[0]]), structures):
        cells = " | ".join(_cell(per_sample[n][index]["equivariance_rmse"])
                           if index in per_sample[n] else "-" for n in names)
        rows.append(f"| {index} | {s['formula']}{' (periodic)' if s['periodic'] else ''} | "
                    f"{s['n_atoms']} | {cells} |")
    return [ReportSection("Per structure", "\n".join(rows))]


def report_sections(result: dict) -> list[ReportSection]:
    """The atoms domain's sections: the MD comparison, or the per-structure table."""
    return md_section(result) if result.get("kind") == "md" else structures_section(result)

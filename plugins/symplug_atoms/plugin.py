"""The atoms adapter's hook implementations (registered through the ``symplug``
entry-point group, exactly as a third-party plugin is). ase is imported only when
a hook needs it, so listing plugins works without the ``atoms`` extra."""

from __future__ import annotations

from symplug import Domain, ReportSection, SymplugError, hookimpl

DOMAIN = "atoms"


def _require_ase():
    try:
        import ase  # noqa: F401
    except ImportError as exc:
        raise SymplugError("the atoms domain needs ase: pip install 'symplug[atoms]'") from exc


@hookimpl
def symplug_domains() -> list[Domain]:
    try:
        from .domain import atoms_domain
    except ImportError:
        return []  # without the atoms extra the domain is not offered
    return [atoms_domain()]


@hookimpl
def symplug_load_model(domain: str, spec: str, trusted: bool):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .models import load_model

    return load_model(spec, trusted=trusted)


@hookimpl
def symplug_load_data(domain: str, path: str):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .domain import read_frames

    return read_frames(path, check=False)  # checked where used: flagged by a diagnosis


@hookimpl
def symplug_load_partitions(domain: str, paths: list[str], size: int | None):
    """Files ase.io reads, as lazy partitions of ``size`` frames."""
    if domain != DOMAIN:
        return None
    _require_ase()
    from .domain import frame_partitions

    return frame_partitions(paths, size or 16)


@hookimpl
def symplug_augment_batch(domain: str, batch, matrices):
    """``batch``: a list of ase.Atoms carrying labels, or a fine-tuning
    :class:`~symplug_atoms.finetune.StructureBatch`; returns transformed copies with labels
    transformed by their representations (energy unchanged, forces g F, stress g S g^T)."""
    if domain != DOMAIN:
        return None
    from .finetune import StructureBatch, transform_batch

    if isinstance(batch, StructureBatch):  # training batches of the fine-tuning task
        return transform_batch(batch, matrices)
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    from .action import transform

    out = []
    for atoms, g in zip(batch, np.asarray(matrices)):
        new = transform(atoms, g)
        results = dict(getattr(atoms.calc, "results", {}) or {})
        if "forces" in results:
            results["forces"] = np.asarray(results["forces"]) @ g.T
        if "stress" in results:
            from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

            s = np.asarray(results["stress"])
            full = voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s
            results["stress"] = full_3x3_to_voigt_6_stress(g @ full @ g.T)
        if results:
            new.calc = SinglePointCalculator(new, **results)
        out.append(new)
    return out


MD_COLUMNS = (("energy_drift_meV_per_atom_per_ps", "drift (meV/atom/ps)"),
              ("completed_fraction", "steps completed"),
              ("time_to_failure_ps", "failure at (ps)"),
              ("angular_momentum_max", "max abs L (amu A^2/fs)"),
              ("torque_rms_eV", "RMS torque (eV)"), ("rdf_rms_difference", "RDF RMS diff."))


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


@hookimpl
def symplug_training_task(domain: str, model, samples: list):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .finetune import training_task

    return training_task(model, samples)


@hookimpl
def symplug_report_sections(result: dict):
    if result.get("domain") != DOMAIN:
        return []
    if result.get("kind") == "md":
        import io

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


@hookimpl
def symplug_md(domain: str, options: dict):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .md import run_md_command

    return run_md_command(options)


@hookimpl
def symplug_demo(out, quick: bool, seed: int, progress: bool):
    try:
        from .demo import run_demo
    except ImportError:
        return None  # without the atoms extra the atoms demo is left out
    return run_demo(out, quick, seed, progress)

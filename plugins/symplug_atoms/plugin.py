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
def symplug_load_model(domain: str, spec: str):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .models import load_model

    return load_model(spec)


@hookimpl
def symplug_load_data(domain: str, path: str):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .domain import read_frames

    return read_frames(path)


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
    lines = [f"{name}: A = {o['equivariance_rmse']:.3g} {o['units']}"
             for name, o in result.get("outputs", {}).items()]
    return [ReportSection("Atomistic outputs", "\n".join(f"- {line}" for line in lines))]


@hookimpl
def symplug_md(domain: str, options: dict):
    if domain != DOMAIN:
        return None
    _require_ase()
    from .md import run_md_command

    return run_md_command(options)

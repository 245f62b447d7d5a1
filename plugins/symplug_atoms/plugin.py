"""The atoms adapter's registration (through the ``symplug`` entry-point group, exactly
as a third-party plugin registers): the ``atoms`` domain with its loaders, training task
and report sections, the ``md`` command and the demo. ase is imported only when the
domain is used, so listing plugins works without the ``atoms`` extra."""

from __future__ import annotations

import dataclasses
import importlib.util

from symplug import Domain, ReportSection, SymplugError, hookimpl


def _require_ase():
    if importlib.util.find_spec("ase") is None:
        raise SymplugError("the atoms domain needs ase: pip install 'symplug[atoms]'")


def load_model(spec: str, trusted: bool):
    """A model named by ``spec`` (:func:`symplug_atoms.load_model`)."""
    _require_ase()
    from .models import load_model as load

    return load(spec, trusted=trusted)


def load_data(path: str) -> list:
    """The structures of a file ase reads; each is checked where it is used (a diagnosis
    flags a bad one)."""
    _require_ase()
    from .domain import read_frames

    return read_frames(path, check=False)


def load_partitions(paths: list, size: int | None):
    """Files ase.io reads, as lazy partitions of ``size`` frames (default 16)."""
    _require_ase()
    from .domain import frame_partitions

    return frame_partitions(paths, size or 16)


def training_task(model, samples: list):
    """Augmented fine-tuning of a torch atoms model on labelled structures."""
    _require_ase()
    from .finetune import training_task as task

    return task(model, samples)


def report_sections(result: dict) -> list[ReportSection]:
    """The MD comparison of ``symplug md atoms``, or the per-structure table of a diagnosis."""
    from .report import md_section, structures_section

    return md_section(result) if result.get("kind") == "md" else structures_section(result)


@hookimpl
def symplug_domains() -> list[Domain]:
    try:
        from .domain import atoms_domain
    except ImportError:
        return []  # without the atoms extra the domain is not offered
    return [dataclasses.replace(atoms_domain(), load_model=load_model, load_data=load_data,
                                load_partitions=load_partitions, training_task=training_task,
                                report_sections=report_sections)]


@hookimpl
def symplug_cli(subparsers):
    from .commands import add_md_command

    add_md_command(subparsers)


@hookimpl
def symplug_demo(out, quick: bool, seed: int, progress: bool):
    try:
        from .demo import run_demo
    except ImportError:
        return None  # without the atoms extra the atoms demo is left out
    return run_demo(out, quick, seed, progress)

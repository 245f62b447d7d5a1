"""The atoms adapter's registration (through the ``symplug`` entry-point group, exactly
as a third-party plugin registers): the ``atoms`` domain record, the ``md`` command and
the demo. Nothing heavy is imported here: listing plugins works without ase and torch."""

from __future__ import annotations

import importlib.util

from symplug import Domain, hookimpl


@hookimpl
def symplug_domains() -> list[Domain]:
    if importlib.util.find_spec("ase") is None:
        return []  # without the atoms extra the domain is not offered
    from .record import atoms_domain

    return [atoms_domain()]


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

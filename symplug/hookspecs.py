"""The hooks a symplug plugin may implement (all keyword-only, prefixed ``symplug_``).

A plugin is a module (or object) registered under the ``symplug`` entry-point
group; it implements any subset of these hooks with :data:`symplug.hookimpl`. The
hooks only register things: domains (a :class:`~symplug.Domain` carries its own
loaders, action, outputs, training task and report sections), commands, report
sections for every result, and demos. No hook is asked on behalf of a domain.

The mathematics and design: docs/design.md, section 2.3.
"""

from __future__ import annotations

from typing import Any

from .markers import hookspec
from .records import Domain, ReportSection


@hookspec
def symplug_domains() -> list[Domain]:
    """Declare the domains this plugin provides, each with what it can load and train.

    Example::

        @hookimpl
        def symplug_domains():
            return [Domain(name="planar", act=rotate_points, groups=("O2", "SO2"),
                           outputs={"energy": Output("0e", "a.u.")},
                           load_model=lambda spec, trusted: PlanarMLP(),
                           load_data=lambda path: list(torch.load(path, weights_only=True)))]
    """


@hookspec
def symplug_cli(subparsers: Any) -> None:
    """Add domain commands to the ``symplug`` command line (argparse subparsers).

    A command sets ``func`` (``args -> exit code``) with ``set_defaults``; user
    mistakes raise :class:`symplug.SymplugError`.

    Example::

        @hookimpl
        def symplug_cli(subparsers):
            p = subparsers.add_parser("planar", help="planar tools")
            p.set_defaults(func=lambda args: 0)
    """


@hookspec
def symplug_report_sections(result: dict) -> list[ReportSection]:
    """Contribute report sections for any result (the README "Result format" JSON
    dictionary); a domain's own sections come from ``Domain.report_sections``.

    Example::

        @hookimpl
        def symplug_report_sections(result):
            return [ReportSection("Provenance", f"group {result['group']}, "
                                  f"{result['n_samples']} samples")]
    """


@hookspec
def symplug_demo(out: Any, quick: bool, seed: int, progress: bool) -> dict | None:
    """Run this plugin's part of ``symplug demo`` on its shipped model and data.

    ``out`` is the demo's folder (a :class:`pathlib.Path`; write extra files, such
    as prediction files, under ``out / <plugin>``); ``quick`` asks for the
    one-minute version. Return ``{name: result}`` for the report (names are file
    stems), or None to take no part.

    Example::

        @hookimpl
        def symplug_demo(out, quick, seed, progress):
            model, samples = PlanarMLP(), shipped_points()[: 4 if quick else 32]
            return {"planar": symplug.diagnose(model, samples, planar_domain(), seed=seed)}
    """

"""The atoms commands of the ``symplug`` command line: ``symplug md atoms``."""

from __future__ import annotations

import argparse

from symplug.options import (add_trust_option, float_at_most, nonnegative_float,
                             nonnegative_int, positive_int)

from .limits import MAX_TIMESTEP_FS


# the figures MLIP benchmarks report (docs/atoms.md, "MD stability in community units")
COMMUNITY = (("MLIPAudit r", "mlipaudit_drift_ratio", "{:.3g}"),
             ("score", "mlipaudit_score", "{:.3f}"),
             ("arena done", "mlip_arena_completed_fraction", "{:.3f}"),
             ("COM drift A", "com_drift_final_A", "{:.2e}"),
             ("Fu fail ps", "fu_time_to_failure_ps", "{:.3f}"),
             ("Fu criterion", "fu_failure_criterion", "{}"),
             ("max bond dev A", "fu_max_bond_deviation_A", "{:.3f}"))


def add_md_command(subparsers) -> None:
    """``symplug md atoms``: MD stability of raw and symmetrised models, side by side."""
    p = subparsers.add_parser("md", help="MD stability of raw and symmetrised models, side by side")
    p.add_argument("domain", choices=("atoms",), help="the domain (atoms)")
    p.add_argument("--model", required=True, help="model spec understood by the domain's plugin")
    add_trust_option(p)
    p.add_argument("--structure", required=True, help="a shipped structure name or a file")
    p.add_argument("--steps", type=positive_int, default=500, help="NVE steps (default 500)")
    p.add_argument("--timestep", type=float_at_most(MAX_TIMESTEP_FS, "NVE of atoms is unstable "
                   "beyond a few fs"), default=2.0, help="time step in fs, in (0, "
                   f"{MAX_TIMESTEP_FS:g}] (default 2)")
    p.add_argument("--temperature", type=nonnegative_float, default=600.0,
                   help="initial temperature in K (default 600)")
    p.add_argument("--degree", type=positive_int, default=2,
                   help="band L whose mean the symmetrised variants average exactly (default "
                   "2: the tetrahedral rule, 24 copies with inversion)")
    p.add_argument("--variants", default="raw,symmetrized,random,mts",
                   help="comma-separated: raw, symmetrized, rotated, random, mts, projected")
    p.add_argument("--interval", type=positive_int, default=4, help="MTS interval in steps (default 4)")
    p.add_argument("--reference", help="reference model for the RDF comparison (e.g. emt)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="velocity and rotation seed")
    p.add_argument("--out", default="symplug-md", help="folder for JSON and figures")
    p.add_argument("--json", help="write the result JSON here (default OUT/md.json)")
    p.add_argument("--report", action="store_true",
                   help="also write report.html and report.md with the traces to --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_md)


def _cmd_md(args: argparse.Namespace) -> int:
    from symplug.result import check_folder, check_writable, write_json

    from .md import MDComparison, run_md

    out = check_folder(args.out, "--out")
    if args.json:
        check_writable(args.json, "--json")
    result = run_md(MDComparison(
        model=args.model, structure=args.structure, steps=args.steps,
        timestep_fs=args.timestep, temperature_K=args.temperature, degree=args.degree,
        variants=tuple(args.variants.split(",")), interval=args.interval,
        reference=args.reference, seed=args.seed, out=str(out), progress=not args.quiet,
        trusted=args.trust_model))
    write_json(result, args.json or out / "md.json")
    if args.report:
        from symplug.report import write_report

        paths = write_report({"md": result}, args.out, title=f"symplug md {args.domain}")
        print(f"report: {paths['report.html']}")
    print(table_text(result["table"]))
    return 0


def table_text(rows: dict) -> str:
    """The MD comparison as text: drift, completion, |L| and RDF per variant, then the
    figures in community units when they were computed."""
    keys = ["energy_drift_meV_per_atom_per_ps", "completed_fraction", "angular_momentum_max",
            "rdf_rms_difference"]
    lines = [f"{'variant':<14}" + "".join(f"{k:>34}" for k in keys)]
    for name, row in rows.items():
        lines.append(f"{name:<14}" + "".join(
            f"{row.get(k):>34.4g}" if isinstance(row.get(k), float) else f"{str(row.get(k)):>34}"
            for k in keys))
    outer = [name for name, row in rows.items() if row.get("energy_drift_steps") == "outer"]
    if outer:
        lines.append(f"drift of {', '.join(outer)}: K + E_avg at the outer (correction) steps only")
    if any("mlipaudit_score" in row for row in rows.values()):
        lines += ["", "in community units (MLIPAudit, mlip-arena, Fu et al.):",
                  f"{'variant':<14}" + "".join(f"{label:>16}" for label, _, _ in COMMUNITY)]
        for name, row in rows.items():
            lines.append(f"{name:<14}" + "".join(
                f"{'-' if row.get(k) is None else fmt.format(row[k]):>16}"
                for _, k, fmt in COMMUNITY))
        lines.append("Fu fail ps: first time a Fu et al. criterion fired ('-': none within the "
                     "recorded run)")
    return "\n".join(lines)

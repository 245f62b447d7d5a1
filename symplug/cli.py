"""The ``symplug`` command line.

Exit codes: 0 success, 2 a user mistake (one line on stderr, no traceback),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from .errors import SymplugError
from .options import (add_memory_option, add_trust_option, int_at_least, nonnegative_int,
                      positive_int)


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import domains, plugin_infos

    found = domains()
    infos = plugin_infos()
    if args.json:
        print(json.dumps({
            "plugins": [{"name": i.name, "distribution": i.distribution, "version": i.version,
                         "error": i.error,
                         "domains": [d for d, (p, _) in found.items() if p == i.name]}
                        for i in infos]}, indent=2))
        return 0
    if not infos:
        print("no plugins installed (entry-point group 'symplug')")
    for info in infos:
        owned = [d for d, (p, _) in found.items() if p == info.name]
        status = f"FAILED: {info.error}" if info.error else "domains: " + (", ".join(owned) or "-")
        print(f"{info.name} ({info.distribution} {info.version}) {status}")
    return 0


def _cmd_quadrature(args: argparse.Namespace) -> int:
    from .quadrature import quadrature

    grid = quadrature(args.group, args.degree, kind=args.kind, n=args.n, seed=args.seed,
                      axis=args.axis, purpose=args.purpose)
    record = grid.describe()
    if args.json:
        print(json.dumps(record, indent=2))
    elif grid.monte_carlo:
        print(f"{grid.group} Monte Carlo: {grid.size} Haar-random elements (seed {grid.seed})")
    else:
        print(f"{grid.group} {grid.kind} ({grid.purpose}): {grid.size} elements; integrates "
              f"band {grid.exact_degree} exactly (means of band <= {grid.exact_degree}, second "
              f"moments and B_l of band <= {grid.moment_degree})\n  rule: {grid.rule}")
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .dataparallel import closing_quietly, connect
    from .diagnose import diagnose
    from .plugins import get_domain, load_data, load_model, load_partitions
    from .result import check_folder, check_writable, read_result, write_json

    domain = get_domain(args.domain)
    if args.json:  # output paths before the (long) diagnosis
        check_writable(args.json, "--json")
    if args.report:
        check_folder(args.out, "--out")
    if args.declare:
        pairs = [item.partition("=") for item in args.declare]
        bad = [item for item, (name, eq, rep) in zip(args.declare, pairs) if not (name and eq and rep)]
        if bad:
            raise SymplugError(f"--declare {bad[0]!r}: expected NAME=REP, e.g. dipole=1o")
        domain = domain.declare({name: rep for name, _, rep in pairs})
    reference = None
    if args.compare_to:  # read before the (long) diagnosis
        reference = read_result(args.compare_to, "--compare-to")
        if reference.get("domain") != domain.name:
            raise SymplugError(f"--compare-to {args.compare_to}: a result of domain "
                               f"{reference.get('domain')!r}, not {domain.name!r}")
    model = load_model(args.domain, args.model, trusted=args.trust_model)
    distributed = args.scheduler is not None or args.workers is not None
    if distributed and args.max_samples:
        raise SymplugError("--max-samples reads the data here; with --scheduler or --workers "
                           "the workers read their partitions (use --partition-size)")
    if distributed:
        samples = load_partitions(args.domain, args.data, args.partition_size)
    else:
        samples = [s for path in args.data for s in load_data(args.domain, path)]
    if args.max_samples:
        samples = samples[: args.max_samples]
    layers = [name for name in (args.layers or "").split(",") if name]
    outputs = [name for name in (args.outputs or "").split(",") if name] or None
    client = connect(args.scheduler, args.workers) if distributed else None
    with closing_quietly(client):
        result = diagnose(model, samples, domain, group=args.group, degree=args.degree,
                          kind=args.kind, n=args.n, seed=args.seed, lmax=args.lmax,
                          outputs=outputs, layers=layers, finer_degree=args.finer_degree,
                          check_convergence=not args.no_convergence,
                          chunk_size=args.chunk_size, progress=not args.quiet,
                          skip_failures=args.skip_failures, client=client,
                          per_sample=not args.no_per_sample, max_memory=args.max_memory,
                          precision=args.precision)
    failed = None  # a failed comparison still keeps the diagnosis
    if reference is not None:
        from .findings import findings

        try:
            result["findings"] = [f.to_dict() for f in findings(result, reference=reference)]
        except SymplugError as exc:
            failed = exc
    if args.json:
        write_json(result, args.json)
    if failed is not None:
        raise failed
    print(summary_table(result))
    _report_if_asked(args, {result["domain"]: result}, f"symplug diagnose {args.domain}")
    return 0


def _report_if_asked(args: argparse.Namespace, results: dict, title: str) -> None:
    """With ``--report``: the report (JSON, TensorMaps, figures, Markdown, HTML) in ``--out``."""
    if getattr(args, "report", False):
        from .report import write_report

        paths = write_report(results, args.out, title=title)
        print(f"report: {paths['report.html']}")


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .plugins import demo_results
    from .report import write_report
    from .result import check_folder

    start = time.perf_counter()
    out = check_folder(args.out or time.strftime("symplug-demo-%Y%m%d-%H%M%S"), "--out")
    results = demo_results(out, args.quick, args.seed, not args.quiet)
    if not results:
        raise SymplugError("no installed plugin offers a demo; install symplug[all]")
    for name, result in results.items():
        if result.get("kind") == "diagnosis":
            print(f"\n[{name}]\n{summary_table(result)}")
    paths = write_report(results, out, title="symplug demo" + (" (quick)" if args.quick else ""),
                         intro="The shipped reference models on their shipped data.")
    print(f"\nsymplug demo: {len(results)} results in {time.perf_counter() - start:.0f} s; "
          f"report: {paths['report.html']}")
    return 0


def _number(value: float | None, spec: str) -> str:
    """``value`` formatted, or "undefined" for None (e.g. the relative error of a zero response)."""
    return "undefined" if value is None else format(value, spec)


def summary_table(result: dict) -> str:
    """A plain-text summary of a diagnosis result."""
    from .findings import convergence_verdict, items_text, precision_text, skipped_text

    grid = result["grid"]
    lines = [f"{result['domain']}: group {result['group']}, {grid['kind']} grid degree "
             f"{grid['degree']} ({grid['size']} elements), {items_text(result)}"]
    lines.append(f"{'output':<16}{'rep':<12}{'A (RMSE)':>12}  {'units':<10}{'relative':>10}"
                 f"{'invariant':>11}")
    for name, o in result["outputs"].items():
        lines.append(f"{name:<16}{o['rep']:<12}{o['equivariance_rmse']:>12.4e}  {o['units']:<10}"
                     f"{_number(o['relative_error'], '.3e'):>10}"
                     f"{_number(o['invariant_fraction'], '.4f'):>11}")
        if o.get("undefined"):
            lines.append(f"  {name}: {o['undefined']}")
    labelled = {n: o for n, o in result["outputs"].items() if "bias_variance" in o}
    if labelled:  # against the labels, as metatrain's evaluation reports it
        lines.append(f"{'vs labels':<16}{'equivariance':>13}{'O(3)-avg RMSE':>15}"
                     f"{'O(3)-avg MAE':>14}{'oriented RMSE':>15}{'share':>8}  grid")
        for name, o in labelled.items():
            bv, share = o["bias_variance"], o["bias_variance"]["symmetry_share"]
            grid = ("-" if "grid_converged" not in o else
                    f"{'ok' if o['grid_converged'] else 'CHANGES'} ({100 * o['grid_change']:.2g} %)")
            lines.append(f"{name:<16}{bv['equivariance_rmse']:>13.4g}{bv['symmetrized_rmse']:>15.4g}"
                         f"{bv['symmetrized_mae']:>14.4g}{bv['random_orientation_rmse']:>15.4g}"
                         f"{'-' if share is None else format(share, '.1%'):>8}  {grid}")
    if result["layers"]:
        lines.append(f"{'layer':<28}{'invariant':>11}{'centred':>11}{'truncation':>12}")
        for name, layer in result["layers"].items():
            lines.append(f"{name:<28}{layer['invariant_fraction']:>11.4f}"
                         f"{layer['invariant_fraction_centered']:>11.4f}"
                         f"{layer['truncation']:>12.2e}")
    summary = result.get("summary") or {}
    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    if scalars:
        lines.append("summary: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
    if result.get("skipped"):
        lines.append(f"skipped {skipped_text(result) or 'parts of the run'}: "
                     + "; ".join(f"#{s['index']}: {s['reason']}" if s["index"] is not None
                                 else s["reason"] for s in result["skipped"][:3]))
    if summary.get("undefined"):  # a figure of the domain's summary that no number can state
        lines.append(f"summary: {summary['undefined']}")
    lines.append(f"precision {precision_text(result)}")
    verdict = convergence_verdict(result)
    if verdict:
        lines.append(verdict)
    for f in result.get("findings") or []:
        where = f" ({f['where']})" if f.get("where") else ""
        lines.append(f"{f['severity']}: {f['code']}{where}: {f['evidence']}\n  remedy: {f['remedy']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="symplug", description="Measure, diagnose and improve the learned symmetry of "
        "unconstrained ML models.")
    parser.add_argument("--version", action="version", version=f"symplug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, their domains and versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("quadrature", help="size and exactness of a quadrature grid")
    p.add_argument("--group", default="O3", help="O3, SO3, SO2 or O2 (default O3)")
    p.add_argument("--degree", type=nonnegative_int, default=4, help="band limit L (default 4)")
    p.add_argument("--kind", default="auto", help="auto (the smallest exact rule), finite, "
                   "lebedev, gauss-legendre or haar")
    p.add_argument("--purpose", default="diagnosis", choices=("diagnosis", "mean"),
                   help="diagnosis: second moments and B to band L (exact to 2L, default); "
                   "mean: the symmetrised prediction alone (exact to L)")
    p.add_argument("--n", type=positive_int, help="number of elements for kind=haar")
    p.add_argument("--seed", type=nonnegative_int, help="seed for kind=haar")
    p.add_argument("--axis", type=float, nargs=3, default=(0.0, 0.0, 1.0),
                   help="rotation axis for SO2/O2 (default 0 0 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_quadrature)

    p = sub.add_parser("diagnose", help="A and B of a model's outputs and layers on data")
    p.add_argument("domain", help="a domain declared by an installed plugin")
    p.add_argument("--model", required=True, help="model spec understood by the domain's plugin")
    add_trust_option(p)
    p.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="data files understood by the domain's plugin")
    p.add_argument("--group", help="group (default: the domain's first)")
    p.add_argument("--degree", type=positive_int, default=4,
                   help="grid band limit L >= 1 (default 4)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler (e.g. tcp://host:8786)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="run on a new local dask cluster of N worker processes")
    p.add_argument("--no-per-sample", action="store_true",
                   help="leave the per-sample lists out of the result (large data sets: "
                   "partitions then send sums only)")
    p.add_argument("--partition-size", type=positive_int, metavar="N",
                   help="data-parallel partitions of N units (jets: ROOT entries, default: "
                   "all entries split 16 ways in blocks of 16 jets, at most 100000; atoms: "
                   "frames, default 16)")
    p.add_argument("--kind", default="auto", help="auto (the smallest exact rule), finite, "
                   "lebedev, gauss-legendre or haar")
    p.add_argument("--n", type=int_at_least(2), help="number of elements for kind=haar")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed for random grids (default 0)")
    p.add_argument("--lmax", type=nonnegative_int,
                   help="highest l of the spectra (default: the degree)")
    p.add_argument("--outputs", help="comma-separated outputs (default: all declared)")
    p.add_argument("--declare", action="append", default=[], metavar="NAME=REP",
                   help="a further model output and its representation, e.g. dipole=1o, "
                   "polarizability=cartesian2, mtt::target=2,+1 (repeatable; values in the "
                   "model's units), diagnosed with the domain's default outputs or those of --outputs")
    p.add_argument("--layers", help="comma-separated hidden layers to capture")
    p.add_argument("--finer-degree", type=positive_int,
                   help="check convergence on this finer degree (default: the same rule "
                   "turned by a random rotation, one grid more)")
    p.add_argument("--no-convergence", action="store_true", help="skip the convergence check")
    p.add_argument("--precision", default="auto",
                   choices=("auto", "float16", "bfloat16", "float32", "float64"),
                   help="the floating-point format the model computes in, which sets the "
                   "round-off below which A counts as exact (1000 machine epsilons of the "
                   "output's magnitude, at least 1e-11); auto (default): the dtype of a torch "
                   "model's parameters, else the narrowest format that holds every output value")
    p.add_argument("--chunk-size", type=positive_int, default=64,
                   help="copies per model call at most (default 64; fewer where the memory "
                   "budget needs it)")
    add_memory_option(p)
    p.add_argument("--max-samples", type=positive_int, help="use the first N samples only")
    p.add_argument("--skip-failures", action="store_true",
                   help="flag and count samples whose evaluation fails instead of stopping")
    p.add_argument("--compare-to", metavar="RESULT.json",
                   help="an in-distribution result (e.g. the test set) to compare A with: "
                   "growth out of distribution becomes a finding")
    p.add_argument("--json", help="write the result JSON here (atomically)")
    p.add_argument("--out", default="symplug-diagnose", help="folder for --report")
    p.add_argument("--report", action="store_true",
                   help="write report.html, report.md, JSON and TensorMaps to --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_diagnose)


    p = sub.add_parser("demo", help="the shipped models on their shipped data: diagnosis, MD, "
                       "jet analysis, findings and the report (about 5 min; --quick about 1)")
    p.add_argument("--out", help="folder for the report and results (default: a fresh "
                   "symplug-demo-DATE-TIME)")
    p.add_argument("--quick", action="store_true", help="the one-minute version")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for velocities and rotations")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    from .training.commands import add_commands as add_training_commands

    add_training_commands(sub)  # finetune, track

    from .plugins import add_cli_commands

    add_cli_commands(sub)  # a failing plugin's commands are left out, the plugin named
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    pm.warn, pm.warned = False, set()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is not _cmd_plugins:
        pm.warn_failed()  # one line per failed plugin; `symplug plugins` lists them
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return one_line_errors(lambda: args.func(args))


def one_line_errors(run: Callable[[], int | None], prog: str = "symplug") -> int:
    """``run()``'s exit status (None: 0), a :class:`SymplugError` printed as one line
    ``"<prog>: error: ..."`` (status 2, whatever a library put in the message) and Ctrl-C
    as ``"<prog>: interrupted"`` (130): the command line and the plugins' ``python -m``
    scripts end the same way."""
    try:
        return run() or 0
    except SymplugError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The jets adapter's registration (through the ``symplug`` entry-point group, exactly
as a third-party plugin registers): the ``jets`` and ``jets_axis`` domain records,
``symplug jets generate`` and the demo. Nothing heavy is imported here: listing plugins
works without uproot and torch."""

from __future__ import annotations

import importlib.util

from symplug import Domain, hookimpl


@hookimpl
def symplug_domains() -> list[Domain]:
    if any(importlib.util.find_spec(m) is None for m in ("awkward", "uproot")):
        return []  # without the jets extra the domains are not offered
    from .record import jets_domain

    return [jets_domain("lab"), jets_domain("jet")]


def _cmd_generate(args) -> int:
    from .generate import check_options, generate_file
    from .rootio import read_root

    check_options(args.n, args.seed, args.pt_min, args.pt_max, args.out)  # before Pythia
    path = generate_file(args.out, args.n, seed=args.seed, pt_min=args.pt_min,
                         pt_max=args.pt_max, progress=not args.quiet)
    jets = read_root(path)
    print(f"{path}: {len(jets)} jets ({args.n} top, {args.n} QCD), "
          f"pT in [{args.pt_min}, {args.pt_max}) GeV, anti-kT R = 0.8")
    return 0


@hookimpl
def symplug_cli(subparsers):
    jets = subparsers.add_parser("jets", help="jet tools (generate samples)")
    sub = jets.add_subparsers(dest="jets_command", metavar="COMMAND", required=True)
    p = sub.add_parser("generate", help="top and QCD jets with Pythia 8 and FastJet",
                       description="Generate N hadronic top jets and N QCD jets (2N in all) "
                       "with Pythia 8 and FastJet into one ROOT file (JetClass layout).")
    p.add_argument("--out", required=True, help="ROOT file to write (JetClass layout)")
    p.add_argument("--n", type=int, default=500, metavar="N",
                   help="jets per class: N top and N QCD jets, 2N in all (N >= 1, default 500)")
    p.add_argument("--seed", type=int, default=0,
                   help="Pythia seed, 0 to 899999999 (default 0)")
    p.add_argument("--pt-min", type=float, default=550.0,
                   help="jet pT minimum in GeV, at least 100 (default 550)")
    p.add_argument("--pt-max", type=float, default=650.0,
                   help="jet pT maximum in GeV, above --pt-min, at most 7000 (default 650)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)


@hookimpl
def symplug_demo(out, quick: bool, seed: int, progress: bool):
    try:
        from .demo import run_demo
    except ImportError:
        return None  # without the jets extra the jets demo is left out
    return run_demo(out, quick, seed, progress)

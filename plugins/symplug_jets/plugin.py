"""The jets adapter's hook implementations (registered through the ``symplug``
entry-point group). uproot and awkward are imported only when a hook needs them."""

from __future__ import annotations

from symplug import Domain, ReportSection, SymplugError, hookimpl

DOMAINS = ("jets", "jets_axis")


def _require_jets():
    try:
        import awkward  # noqa: F401
        import uproot  # noqa: F401
    except ImportError as exc:
        raise SymplugError("the jets domains need uproot and awkward: "
                           "pip install 'symplug[jets]'") from exc


@hookimpl
def symplug_domains() -> list[Domain]:
    try:
        from .domain import jets_domain
    except ImportError:
        return []  # without the jets extra the domains are not offered
    return [jets_domain("lab"), jets_domain("jet")]


@hookimpl
def symplug_load_model(domain: str, spec: str, trusted: bool):
    if domain not in DOMAINS:
        return None
    from .taggers import load_tagger

    return load_tagger(spec, trusted=trusted)


@hookimpl
def symplug_load_data(domain: str, path: str):
    if domain not in DOMAINS:
        return None
    _require_jets()
    from .domain import blocks
    from .rootio import read_root, read_top_tagging_h5

    reader = read_top_tagging_h5 if path.endswith((".h5", ".hdf5")) else read_root
    return blocks(reader(path))


@hookimpl
def symplug_load_partitions(domain: str, paths: list[str], size: int | None):
    """ROOT files through ``uproot.dask``: partitions of about ``size`` entries; by default
    (``size`` None) the entries of all files split 16 ways in whole blocks of 16 jets, at
    most 100 000 entries each (:func:`~symplug_jets.domain.partition_step`), so that one
    small file still spreads over the workers."""
    if domain not in DOMAINS or not all(p.endswith(".root") for p in paths):
        return None
    _require_jets()
    from .domain import jet_partitions

    return jet_partitions(paths, step_size=size)


@hookimpl
def symplug_augment_batch(domain: str, batch, matrices):
    """``batch``: a dict with ``p4`` (J, P, 4) (and any other keys, e.g. labels, which are
    invariant); each jet is rotated by its own element, about the beam (``jets``) or
    its own axis (``jets_axis``)."""
    if domain not in DOMAINS:
        return None
    from .action import rotate_each

    return rotate_each(batch, matrices, frame="lab" if domain == "jets" else "jet")


@hookimpl
def symplug_training_task(domain: str, model, samples: list):
    if domain not in DOMAINS:
        return None
    from .finetune import training_task

    return training_task(model, samples)


@hookimpl
def symplug_report_sections(result: dict):
    if result.get("kind") != "jet_analysis" and (result.get("domain") not in DOMAINS
                                                 or "summary" not in result):
        return []
    from .analysis import boost_figure, roc_figure, score_shift_figure, table_markdown
    from .domain import BLOCK, grid_text
    from .metrics import rejection_text

    if result.get("kind") == "jet_analysis":
        shifts = {s["label"]: s["score_shift"] for s in result["symmetries"]}
        figures = {"roc.png": roc_figure({result["model"]: {**result["roc"], "auc": result["auc"]}}),
                   "score_shift.png": score_shift_figure(shifts),
                   "boost.png": boost_figure(result["boost_scan"])}
        return [ReportSection(f"Jet tagging analysis: {result['model']} on {result['n_jets']} jets",
                              table_markdown(result), figures)]
    s = result["summary"]
    rotations = s.get("rotations") or grid_text(result["grid"],
                                                "lab" if result["domain"] == "jets" else "jet")
    units = result["outputs"].get("score", {}).get("units") or "probability"
    counts = f"{s['n_jets']} jets"
    if "n_signal" in s:
        counts += f" ({s['n_signal']} signal, {s['n_background']} background)"
    flip = "undefined" if s.get("flip_rate") is None else f"{s['flip_rate']:.4f}"
    lines = [f"- {counts}; the engine's {result['n_samples']} samples above are blocks of up "
             f"to {BLOCK} jets; {len(s['skipped'])} jets skipped by the reader",
             f"- score: {units}; flip rate (copies on the other side of the working point): "
             f"{flip}"]
    if s.get("undefined"):
        lines.append(f"- {s['undefined']}")
    # a diagnosis of an analysis: its ROC and score shift are already in the analysis's figures
    alone = "analysis" not in result
    figures = ({"score_shift.png": score_shift_figure({rotations: s["score_shift"]})}
               if alone and s.get("score_shift") else {})
    if s.get("auc") is not None:
        rates = s["background_rejection"]
        lines.append(f"- AUC {s['auc']:.4f}; 1/eps_B at eps_S = 0.3: "
                     f"{rejection_text(rates['0.3'])}; at eps_S = 0.5: "
                     f"{rejection_text(rates['0.5'])}")
        if alone:
            figures["roc.png"] = roc_figure({"tagger": {**s["roc"], "auc": s["auc"]}})
    return [ReportSection(f"Jet tagging under {rotations}", "\n".join(lines), figures)]


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

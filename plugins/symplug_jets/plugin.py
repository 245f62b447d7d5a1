"""The jets adapter's registration (through the ``symplug`` entry-point group, exactly
as a third-party plugin registers): the ``jets`` and ``jets_axis`` domains with their
loaders, training tasks and report sections, ``symplug jets generate`` and the demo.
uproot and awkward are imported only when a domain needs them."""

from __future__ import annotations

import dataclasses
import importlib.util
from functools import partial

from symplug import Domain, ReportSection, SymplugError, hookimpl


def _require_jets():
    missing = [m for m in ("awkward", "uproot") if importlib.util.find_spec(m) is None]
    if missing:
        raise SymplugError("the jets domains need uproot and awkward: "
                           "pip install 'symplug[jets]'")


def load_model(spec: str, trusted: bool):
    """A tagger named by ``spec`` (:func:`symplug_jets.load_tagger`)."""
    from .taggers import load_tagger

    return load_tagger(spec, trusted=trusted)


def load_data(path: str) -> list:
    """The jets of a ROOT file (JetClass layout) or a top-tagging HDF5 file, in blocks."""
    _require_jets()
    from .domain import blocks
    from .rootio import read_root, read_top_tagging_h5

    reader = read_top_tagging_h5 if path.endswith((".h5", ".hdf5")) else read_root
    return blocks(reader(path))


def load_partitions(paths: list, size: int | None):
    """ROOT files through ``uproot.dask``: partitions of about ``size`` entries; by default
    (``size`` None) the entries of all files split 16 ways in whole blocks of 16 jets, at
    most 100 000 entries each (:func:`~symplug_jets.domain.partition_step`), so that one
    small file still spreads over the workers. None for other files."""
    if not all(p.endswith(".root") for p in paths):
        return None
    _require_jets()
    from .domain import jet_partitions

    return jet_partitions(paths, step_size=size)


def training_task(model, samples: list, frame: str):
    """Augmented fine-tuning of a torch tagger on labelled jet blocks, jets rotated about
    the beam (``frame`` "lab") or their own axis ("jet")."""
    from .finetune import training_task as make

    return make(model, samples, frame=frame)


def report_sections(result: dict, frame: str) -> list[ReportSection]:
    """A jet analysis, or the tagging summary of a diagnosis, rotations about the beam
    (``frame`` "lab") or each jet's axis ("jet")."""
    if result.get("kind") != "jet_analysis" and "summary" not in result:
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
    rotations = s.get("rotations") or grid_text(result["grid"], frame)
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


@hookimpl
def symplug_domains() -> list[Domain]:
    try:
        from .domain import jets_domain
    except ImportError:
        return []  # without the jets extra the domains are not offered
    return [dataclasses.replace(jets_domain(frame), load_model=load_model, load_data=load_data,
                                load_partitions=load_partitions,
                                training_task=partial(training_task, frame=frame),
                                report_sections=partial(report_sections, frame=frame))
            for frame in ("lab", "jet")]


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

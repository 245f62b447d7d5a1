"""Jet-tagging analysis with symmetry diagnostics, in the field's conventions.

    python examples/jet_tagging_analysis.py [--data JETS.root] [--model reference]
        [--degree 4] [--max-jets 400] [--out DIR] [--quiet]

Reads jets from a ROOT file (default: the test jets shipped with the reference
tagger), runs the tagger, and writes to ``--out`` (see
:func:`symplug_jets.analysis.analyze`):
- a table (printed and ``table.md``): the jets (signal / background), the score's
  units, AUC and background rejection 1/eps_B at eps_S = 0.3 and 0.5 with its
  binomial uncertainty ("> N" when none of the N background jets passes), and for
  each symmetry the rotations, the equivariance error A of the score, its invariant
  fraction, the classification flip rate and the grid convergence check;
- ``roc.png`` (mplhep style), ``boost.png`` (score shift and AUC against the boost
  rapidity along the beam and the jet axis);
- ``result_<frame>_<group>.json`` (symplug results), ``analysis.json`` and
  ``predictions.root`` (weaver's ``Events`` tree with ``score_label_*``, ``label_*``
  and observers);
- ``report/``: report.html and report.md with all figures.

Progress goes to stderr (a line per step, a bar for each diagnosis and boost scan;
``--quiet``: none); stdout gets the table and the list of files. A bad option or input
is one line on stderr (``jet_tagging_analysis.py: error: ...``) and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import symplug_jets as sj
from symplug import SymplugError
from symplug.report import write_report
from symplug_jets.analysis import analyze, table_markdown
from symplug_jets.taggers import REFERENCE


def check_options(args: argparse.Namespace) -> None:
    """Option ranges, before any work: --degree 0 to 12, --max-jets >= 2 (both classes
    are needed), --out a folder or a new path."""
    if not 0 <= args.degree <= 12:
        raise SymplugError(f"--degree must be in [0, 12] (the grid's band limit), got {args.degree}")
    if args.max_jets < 2:
        raise SymplugError(f"--max-jets must be >= 2 (AUC needs signal and background jets), "
                           f"got {args.max_jets}")
    if args.out.exists() and not args.out.is_dir():
        raise SymplugError(f"--out {args.out}: a file, not a folder")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REFERENCE.with_name("tagger_test.root"))
    parser.add_argument("--model", default="reference")
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--max-jets", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("jet-analysis"))
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    check_options(args)
    start = time.perf_counter()
    if not args.quiet:
        print(f"reading {args.data} (first {args.max_jets} jets)", file=sys.stderr, flush=True)
    jets = sj.read_root(args.data)
    jets = jets.subset(np.arange(min(len(jets), args.max_jets)))
    analysis = analyze(sj.load_tagger(args.model), jets, args.out, model=args.model,
                       degree=args.degree, progress=not args.quiet)
    print(table_markdown(analysis))
    if not args.quiet:
        print(f"writing the report to {args.out / 'report'}", file=sys.stderr, flush=True)
    write_report({"analysis": analysis, **analysis.pop("results")}, args.out / "report",
                 title=f"Jet tagging analysis: {args.model}")
    if not args.quiet:
        print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"wrote {args.out}/: table.md, roc.png, boost.png, result_*.json, analysis.json, "
          "predictions.root, report/report.html")


if __name__ == "__main__":
    try:
        main()
    except SymplugError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        sys.exit(2)

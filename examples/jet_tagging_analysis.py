"""Jet-tagging analysis with symmetry diagnostics, in the field's conventions.

    python examples/jet_tagging_analysis.py [--data JETS.root] [--model reference] [--out DIR]

Reads jets from a ROOT file (default: the test jets shipped with the reference
tagger), runs the tagger, and writes to ``--out`` (see
:func:`symplug_jets.analysis.analyze`):
- a table (printed and ``table.md``): AUC and background rejection 1/eps_B at
  eps_S = 0.3 and 0.5, and for each symmetry the equivariance error A of the score,
  its invariant fraction and the classification flip rate;
- ``roc.png`` (mplhep style), ``boost.png`` (score shift and AUC against the boost
  rapidity along the beam and the jet axis);
- ``result_<frame>_<group>.json`` (symplug results), ``analysis.json`` and
  ``predictions.root`` (weaver's ``Events`` tree with ``score_label_*``, ``label_*``
  and observers);
- ``report/``: report.html and report.md with all figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import symplug_jets as sj
from symplug.report import write_report
from symplug_jets.analysis import analyze, table_markdown
from symplug_jets.taggers import REFERENCE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REFERENCE.with_name("tagger_test.root"))
    parser.add_argument("--model", default="reference")
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--max-jets", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("jet-analysis"))
    args = parser.parse_args()
    jets = sj.read_root(args.data)
    jets = jets.subset(np.arange(min(len(jets), args.max_jets)))
    analysis = analyze(sj.load_tagger(args.model), jets, args.out, model=args.model,
                       degree=args.degree, progress=False)
    print(table_markdown(analysis))
    write_report({"analysis": analysis, **analysis.pop("results")}, args.out / "report",
                 title=f"Jet tagging analysis: {args.model}")
    print(f"wrote {args.out}/: table.md, roc.png, boost.png, result_*.json, analysis.json, "
          "predictions.root, report/report.html")


if __name__ == "__main__":
    main()

"""The jets part of ``symplug demo``: the shipped reference tagger on its test jets.

The jet-tagging analysis (:func:`symplug_jets.analysis.analyze`): AUC and 1/eps_B,
A, invariant fraction and flip rate of the score under SO(2) about the beam (an
exact symmetry of the data), SO(2) about the jet axis and SO(3), boost scans, and
the weaver-style prediction file under ``OUT/jets``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import analyze
from .rootio import read_root
from .taggers import REFERENCE, load_reference

QUICK = {"jets": 128, "degree": 2}  # jets (top and QCD mixed as shipped), grid degree
FULL = {"jets": 160, "degree": 4}


def run_demo(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``{"jets": analysis, "jets_<frame>_<group>": diagnosis, ...}``."""
    size = QUICK if quick else FULL
    jets = read_root(REFERENCE.with_name("tagger_test.root"))
    jets = jets.subset(np.arange(min(len(jets), size["jets"])))
    analysis = analyze(load_reference(), jets, Path(out) / "jets", model="reference",
                       degree=size["degree"], progress=progress)
    diagnoses = analysis.pop("results")
    return {"jets": analysis, **{f"jets_{stem.removeprefix('result_')}": r
                                 for stem, r in diagnoses.items()}}

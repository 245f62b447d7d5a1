"""The jets part of ``symplug demo``: the shipped PointNet tagger on its test jets.

``pointnet`` is a PointNet-style tagger on raw constituent 4-momenta, trained on 16 800
Pythia top and QCD jets with random rotations about the beam (test AUC 0.968 on 3600
held-out jets; docs/jets.md): nothing in it is invariant by construction, so what it
shows is learned.

The jet-tagging analysis (:func:`symplug_jets.analysis.analyze`): AUC and 1/eps_B
(with its resolution), A, invariant fraction and flip rate of the score under SO(2)
about the beam (an exact symmetry of the data), SO(2) about the jet axis and SO(3),
each with the convergence check, boost scans, and the weaver-style prediction file
under ``OUT/jets``.

Grid degree: every diagnosis now runs the convergence check (the same rule turned by
a random rotation: one grid more), which doubles the copies per jet block. The full
demo therefore uses degree 3 rather than 4: the SO(3) Lebedev rule of degree 3 has
182 rotations, so grid + check = 364 copies per block, about the 342 of the degree-4
grid alone that the demo ran before without a check (about 48 s of its ~130 s), and
the demo keeps its time. SO(2) grids are tiny either way (7 + 7 angles). The quick
demo keeps degree 2 (SO(3): 70 rotations, 140 with the check; degree 1 would be a
12-element group that the check flags as unresolved) on 64 jets instead of 128, so
that its copies, and its time, stay those of 128 jets without the check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import analyze
from .rootio import read_root
from .taggers import REFERENCE, load_tagger

QUICK = {"jets": 64, "degree": 2}  # jets (top and QCD mixed as shipped), grid degree
FULL = {"jets": 160, "degree": 3}  # degree 3: grid + check cost the old degree-4 grid alone


def run_demo(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``{"jets": analysis, "jets_<frame>_<group>": diagnosis, ...}``."""
    size = QUICK if quick else FULL
    jets = read_root(REFERENCE.with_name("jets_test.root"))
    jets = jets.subset(np.arange(min(len(jets), size["jets"])))
    analysis = analyze(load_tagger("pointnet"), jets, Path(out) / "jets", model="pointnet",
                       degree=size["degree"], progress=progress)
    diagnoses = analysis.pop("results")
    return {"jets": analysis, **{f"jets_{stem.removeprefix('result_')}": r
                                 for stem, r in diagnoses.items()}}

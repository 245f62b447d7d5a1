"""The atoms part of ``symplug demo``: the shipped reference model on its test frames.

Diagnosis of energy and forces and of every hidden layer (with the grid-convergence
check and the findings), then a short NVE comparison of the raw and the symmetrised
model on an isolated 13-atom Cu icosahedron, where broken rotational symmetry shows
up directly as a growing angular momentum.
"""

from __future__ import annotations

import time
from pathlib import Path

from .domain import diagnose, read_frames
from .md import compare, structure_named, variants
from .torch_model import SHIPPED_DIR, TorchAtomsCalculator, load_reference

# test frames (indices into pet_cu_test.extxyz), grid degree and MD steps (of 2 fs)
QUICK = {"frames": [0, 2, 6], "degree": 2, "steps": 100}  # Cu13, Cu13, Cu32 bulk
FULL = {"frames": [0, 2, 4, 6, 7, 11], "degree": 3, "steps": 400}  # Cu13-Cu55, bulk
# band of the symmetrised model's mean in the MD comparison: the tetrahedral rule, 24
# copies with inversion (exact to band 2, as the 36-copy Lebedev rule it replaces)
MD_DEGREE = 2


def layer_names(module) -> list[str]:
    """The named layers of a :class:`~symplug_atoms.pet.PointEdgeTransformer`, input first."""
    return (["embedding"] + [f"layers.{i}" for i in range(len(module.layers))]
            + [f"heads.{i}" for i in range(len(module.heads))])


def run_demo(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``{"atoms": diagnosis, "atoms_md": MD comparison}`` of the shipped model."""
    size = QUICK if quick else FULL
    start = time.perf_counter()
    model = load_reference()
    frames = read_frames(SHIPPED_DIR / "pet_cu_test.extxyz")
    frames = [frames[i] for i in size["frames"]]
    diagnosis = diagnose(model, frames, layers=layer_names(model.module),
                         degree=size["degree"], seed=seed, progress=progress)
    diagnosis["model"] = "pet-cu"
    diagnosis["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    calcs = variants(TorchAtomsCalculator(model), ["raw", "symmetrized"], degree=MD_DEGREE,
                     interval=4, seed=seed)
    md = compare(structure_named("ico13"), calcs, steps=size["steps"], timestep_fs=2.0,
                 temperature_K=600.0, seed=seed, progress=progress)
    md["model"] = "pet-cu"
    md["degree"] = MD_DEGREE
    md["seconds"] = time.perf_counter() - start
    return {"atoms": diagnosis, "atoms_md": md}

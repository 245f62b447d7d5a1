"""The atoms part of ``symplug demo``: the reference metatrain PET (``pet-ref``) on its
test frames.

``pet-ref`` is metatrain's PET trained on EMT Cu with metatrain's own rotational
augmentation (test MAE 1.67 meV/atom, 11.9 meV/A; docs/atoms.md): a model that has
learned its task, so its symmetry errors mean something. The demo loads its
checkpoint (shipped with symplug, so trusted; a user's ``.ckpt`` needs
``--trust-model``) in float32, the precision it was trained in, to reach the hidden
layers, and diagnoses energy, forces, stress and every layer on test frames with the
grid-convergence check and the findings. Then a short NVE comparison of the raw model,
the symmetrised one and the one with the rigid-body part of its forces projected out
(:mod:`symplug_atoms.rigid`) on an isolated 13-atom Cu icosahedron, where broken
rotational symmetry shows directly as a growing angular momentum.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .domain import diagnose, read_frames
from .md import compare, structure_named, variants
from .metatrain_model import MetatrainModel
from .torch_model import SHIPPED_DIR

# test frames (indices into pet_ref_test.extxyz), grid degree and MD steps (of 2 fs)
QUICK = {"frames": [4, 2], "degree": 2, "steps": 100}  # Cu13 icosahedron, Cu32 bulk
FULL = {"frames": [4, 2, 3, 1], "degree": 2, "steps": 300}  # + Cu36 (100) slab, Cu38 cluster
# band of the symmetrised model's mean in the MD comparison: the tetrahedral rule, 24
# copies with inversion (exact to band 2)
MD_DEGREE = 2
# PET's layers, input to output: the edge embedding, both message-passing layers and
# the first layer of each energy head
LAYERS = ["backend.gnn_layers.0.edge_embedder", "backend.gnn_layers.0", "backend.gnn_layers.1",
          "backend.node_heads.energy.0", "backend.edge_heads.energy.0"]


def load_pet_ref() -> MetatrainModel:
    """The shipped ``pet_ref.ckpt`` in float32 (the checkpoint ships with symplug)."""
    return MetatrainModel(SHIPPED_DIR / "pet_ref.ckpt", dtype=torch.float32, trusted=True)


def run_demo(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``{"atoms": diagnosis, "atoms_md": MD comparison}`` of ``pet-ref``."""
    size = QUICK if quick else FULL
    start = time.perf_counter()
    model = load_pet_ref()
    frames = read_frames(SHIPPED_DIR / "pet_ref_test.extxyz")
    frames = [frames[i] for i in size["frames"]]
    diagnosis = diagnose(model, frames, layers=LAYERS, degree=size["degree"], seed=seed,
                         progress=progress)
    diagnosis["model"] = "pet-ref"
    diagnosis["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    calcs = variants(model.calculator(), ["raw", "symmetrized", "projected"],
                     degree=MD_DEGREE, interval=4, seed=seed)
    md = compare(structure_named("ico13"), calcs, steps=size["steps"], timestep_fs=2.0,
                 temperature_K=600.0, seed=seed, progress=progress)
    md["model"] = "pet-ref"
    md["degree"] = MD_DEGREE
    md["seconds"] = time.perf_counter() - start
    return {"atoms": diagnosis, "atoms_md": md}

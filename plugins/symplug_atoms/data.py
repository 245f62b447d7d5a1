"""The reference data set: Cu structures labelled with ase's EMT.

What it holds (all Cu, EMT energies, forces and, for periodic cells, stress):
bulk fcc cells of 32 atoms (lattice constant scaled by 0.98-1.02) and 108 atoms,
fcc(111) slabs (3 x 3 x 4, 7 A vacuum), and clusters of 13 (icosahedron),
38 (truncated octahedron) and 55 (icosahedron) atoms, each equilibrated and
sampled by Langevin MD at 300, 600 and 900 K (5 fs steps, a snapshot every 10
steps). Everything is seeded, so the set is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron, Octahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from tqdm.auto import tqdm

TEMPERATURES = (300.0, 600.0, 900.0)


def _templates() -> list[tuple[str, ase.Atoms, int]]:
    """(name, structure, snapshots per temperature)."""
    out = []
    for scale in (0.98, 1.0, 1.02):
        cell = bulk("Cu", "fcc", a=3.61 * scale, cubic=True) * (2, 2, 2)
        out.append((f"bulk32-a{scale}", cell, 14))
    out.append(("bulk108", bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3), 6))
    slab = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    slab.info.pop("adsorbate_info", None)  # ase's site table: not a frame property (extxyz)
    out.append(("slab111", slab, 10))
    out.append(("ico13", Icosahedron("Cu", 2), 16))
    out.append(("to38", Octahedron("Cu", 4, cutoff=1), 12))
    out.append(("ico55", Icosahedron("Cu", 3), 8))
    return out


def labelled(atoms: ase.Atoms) -> ase.Atoms:
    """A copy carrying its EMT labels in a SinglePointCalculator."""
    calc = EMT()
    copy = atoms.copy()
    copy.calc = calc
    results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
    if copy.get_pbc().all():
        results["stress"] = copy.get_stress()
    copy.calc = SinglePointCalculator(copy, **results)
    return copy


def generate(seed: int = 0, progress: bool = True) -> list[ase.Atoms]:
    """The EMT Cu data set described in the module docstring."""
    rng = np.random.default_rng(seed)
    frames = []
    templates = _templates()
    jobs = [(n, a, k, t) for n, a, k in templates for t in TEMPERATURES]
    for name, template, count, temperature in tqdm(jobs, desc="EMT MD", disable=not progress):
        atoms = template.copy()
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature_K=temperature,
                           rng=np.random.default_rng(rng.integers(2 ** 32)))
        dyn = Langevin(atoms, 5 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                       rng=np.random.default_rng(rng.integers(2 ** 32)))
        dyn.run(40)  # equilibrate
        for _ in range(count):
            dyn.run(10)
            frame = labelled(atoms)
            frame.info.update({"config": name, "temperature_K": temperature})
            frames.append(frame)
    return frames


def write(frames: list[ase.Atoms], path: str | Path) -> Path:
    """Write frames with their labels as extxyz."""
    path = Path(path)
    ase.io.write(path, frames, format="extxyz")
    return path

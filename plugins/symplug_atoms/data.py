"""The EMT Cu data sets: structures labelled with ase's EMT (energy in eV, forces in
eV/A and, for periodic cells, stress in eV/A^3), in SinglePointCalculators; each frame's
``info`` holds ``config`` (its template) and ``temperature_K``.

:func:`generate` (the shipped pet-cu's set, 282 frames): bulk fcc cells of 32 atoms
(lattice constant scaled by 0.98-1.02) and 108 atoms, fcc(111) slabs (3 x 3 x 4, 7 A
vacuum), and clusters of 13 (icosahedron), 38 (truncated octahedron) and 55
(icosahedron) atoms, each equilibrated and sampled by Langevin MD at 300, 600 and 900 K
(5 fs steps, a snapshot every 10 steps).

:func:`generate_reference` (the reference PET's wider set, 500 frames, 19,705 atoms):
the same MD protocol at 300, 600, 900, 1200 and 1500 K on bulk fcc cells of 32 atoms
(lattice scales 0.97-1.03) and 108 atoms, the same cells with one (31 atoms) or two
(106 atoms) vacancies, fcc(111) and fcc(100) slabs (3 x 3 x 4), icosahedra of 13, 55 and
147 atoms, truncated octahedra of 38 and 79 atoms and a Marks decahedron of 75 atoms
(fewer snapshots of the large ones; see :func:`_reference_templates`).

Everything is seeded, so both sets are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Decahedron, Icosahedron, Octahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from tqdm.auto import tqdm

TEMPERATURES = (300.0, 600.0, 900.0)
REFERENCE_TEMPERATURES = (300.0, 600.0, 900.0, 1200.0, 1500.0)


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


def _langevin_frames(jobs, rng: np.random.Generator, desc: str,
                     progress: bool) -> list[ase.Atoms]:
    """EMT-labelled snapshots of Langevin MD (5 fs steps, 40 steps of equilibration, one
    snapshot every 10 steps) for each (name, template, count, temperature K) job; two
    seeds per job drawn from ``rng``."""
    frames = []
    for name, template, count, temperature in tqdm(jobs, desc=desc, disable=not progress):
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


def generate(seed: int = 0, progress: bool = True) -> list[ase.Atoms]:
    """The EMT Cu data set described in the module docstring."""
    rng = np.random.default_rng(seed)
    jobs = [(n, a, k, t) for n, a, k in _templates() for t in TEMPERATURES]
    return _langevin_frames(jobs, rng, "EMT MD", progress)


def _slab(build) -> ase.Atoms:
    slab = build("Cu", size=(3, 3, 4), vacuum=7.0)
    slab.info.pop("adsorbate_info", None)  # ase's site table: not a frame property (extxyz)
    return slab


def _without(atoms: ase.Atoms, count: int, rng: np.random.Generator) -> ase.Atoms:
    """A copy with ``count`` atoms (vacancies), picked by ``rng``, removed."""
    copy = atoms.copy()
    del copy[sorted(rng.choice(len(copy), size=count, replace=False).tolist())]
    return copy


def _reference_templates(rng: np.random.Generator) -> list[tuple[str, ase.Atoms, int]]:
    """(name, structure, snapshots per temperature) of :func:`generate_reference`."""
    a0 = 3.61
    out = []
    for scale in (0.97, 0.985, 1.0, 1.015, 1.03):
        cell = bulk("Cu", "fcc", a=a0 * scale, cubic=True) * (2, 2, 2)
        out.append((f"bulk32-a{scale}", cell, 8))
    out.append(("bulk108", bulk("Cu", "fcc", a=a0, cubic=True) * (3, 3, 3), 3))
    out.append(("vac31", _without(bulk("Cu", "fcc", a=a0, cubic=True) * (2, 2, 2), 1, rng), 6))
    out.append(("vac106", _without(bulk("Cu", "fcc", a=a0, cubic=True) * (3, 3, 3), 2, rng), 2))
    out.append(("slab111", _slab(fcc111), 8))
    out.append(("slab100", _slab(fcc100), 8))
    out.append(("ico13", Icosahedron("Cu", 2), 14))
    out.append(("to38", Octahedron("Cu", 4, cutoff=1), 8))
    out.append(("ico55", Icosahedron("Cu", 3), 5))
    out.append(("dec75", Decahedron("Cu", 2, 2, 1), 2))
    out.append(("to79", Octahedron("Cu", 5, cutoff=1), 2))
    out.append(("ico147", Icosahedron("Cu", 4), 2))
    return out


def generate_reference(seed: int = 0, progress: bool = True) -> list[ase.Atoms]:
    """The wider EMT Cu data set of the reference PET (module docstring): Langevin MD
    (5 fs steps, 40 steps of equilibration, a snapshot every 10 steps) of each template
    at each of ``REFERENCE_TEMPERATURES``; ordered by template, then temperature."""
    rng = np.random.default_rng(seed)
    templates = _reference_templates(rng)
    jobs = [(n, a, k, t) for n, a, k in templates for t in REFERENCE_TEMPERATURES]
    return _langevin_frames(jobs, rng, "EMT MD (reference)", progress)


def write(frames: list[ase.Atoms], path: str | Path) -> Path:
    """Write frames with their labels as extxyz."""
    path = Path(path)
    ase.io.write(path, frames, format="extxyz")
    return path

"""Small structure files for the atoms, fine-tuning, MD and numbers tables: each writer
makes one file in the case's folder and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FRAMES = ROOT / "plugins/symplug_atoms/data/pet_cu_test.extxyz"  # ico13 ... with E, F labels
QUICK = ["--degree", "1", "--no-convergence", "--quiet"]


def cluster(n: int = 2, seed: int = 0):
    """A rattled Cu icosahedron (13 atoms for n=2), isolated."""
    from ase.cluster import Icosahedron

    atoms = Icosahedron("Cu", n)
    atoms.rattle(0.02, seed=seed)
    return atoms


def crystal(repeat: int = 1):
    """fcc Cu, conventional cell (4 atoms per repeat^3), periodic."""
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)


def labelled(atoms, energy: float = -1.0, forces=None, stress=None):
    """``atoms`` carrying energy (eV), forces (eV/A) and, if given, stress labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    forces = np.zeros((len(atoms), 3)) if forces is None else forces
    extra = {} if stress is None else {"stress": stress}
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, **extra)
    return atoms


def write(tmp: Path, name: str, *frames) -> str:
    """``frames`` written to ``tmp/name`` (format from the suffix)."""
    from ase.io import write as ase_write

    path = tmp / name
    ase_write(path, list(frames))
    return str(path)


def with_cell(atoms, cell, pbc=True):
    atoms.set_cell(cell, scale_atoms=False)
    atoms.pbc = pbc
    return atoms

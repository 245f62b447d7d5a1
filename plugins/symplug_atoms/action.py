"""How O(3) acts on ase.Atoms, and the checks every structure passes first.

g acts about the centre of mass c: r_i -> c + g (r_i - c). A periodic cell
rotates with the atoms by the proper part R = det(g) g (cell rows a_k -> R a_k):
the lattice spanned by -R a_k is the same, and the cell stays right-handed.
Atom order is kept, so tokens correspond across the orbit.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase
import numpy as np
import torch
from ase.neighborlist import neighbor_list

from symplug import SymplugError

MIN_DISTANCE = 0.1  # A: closer atoms are "overlapping"
MAX_COORDINATE = 1e6  # A: farther from the origin is not a structure (wrong units, garbage)
MIN_VOLUME_PER_ATOM = 0.5  # A^3: denser than any solid (metallic H at ~500 GPa: ~1 A^3)
MAX_CELL_CONDITION = 1e5  # largest over smallest singular value of the periodic cell vectors


def check_frame(atoms: ase.Atoms, where: str = "structure") -> None:
    """Raise a :class:`SymplugError` naming ``where`` and the field for unusable input."""
    if not isinstance(atoms, ase.Atoms):
        raise SymplugError(f"{where}: expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise SymplugError(f"{where}: empty structure (no atoms)")
    pos = atoms.get_positions()
    if not np.isfinite(pos).all():
        bad = int(np.where(~np.isfinite(pos).all(axis=1))[0][0])
        raise SymplugError(f"{where}: field 'positions' holds NaN or inf (atom {bad})")
    far = np.abs(pos).max()
    if far > MAX_COORDINATE:
        raise SymplugError(f"{where}: field 'positions' holds a coordinate of {far:.3g} A "
                           f"(beyond {MAX_COORDINATE:g} A: wrong units or garbage)")
    check_cell(atoms, where)
    if len(atoms) > 1:  # pairs closer than MIN_DISTANCE, periodic images included: O(N)
        i, j, dist = neighbor_list("ijd", atoms, MIN_DISTANCE)
        if len(dist):
            k = int(np.argmin(dist))
            raise SymplugError(f"{where}: atoms {min(i[k], j[k])} and {max(i[k], j[k])} overlap "
                               f"(distance {dist[k]:.3g} A < {MIN_DISTANCE} A) in field "
                               "'positions'")


def check_cell(atoms: ase.Atoms, where: str = "structure") -> None:
    """Refuse a periodic cell (rows of ``atoms.cell`` along the periodic axes) that is not
    finite, singular, denser than :data:`MIN_VOLUME_PER_ATOM` (all axes periodic; either
    handedness), ill-conditioned (condition number > :data:`MAX_CELL_CONDITION`) or whose
    planes spanned by cell vectors lie closer than :data:`MIN_DISTANCE` (an atom overlaps
    its own image, or a sheared cell). Runs before any neighbour list, whose size such a cell makes unbounded."""
    pbc = atoms.get_pbc()
    if not pbc.any():
        return
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    field = f"field 'cell' {cell.round(4).tolist()}"
    if not np.isfinite(cell).all():
        raise SymplugError(f"{where}: {field} holds NaN or inf")
    vectors = cell[pbc]
    if (np.linalg.norm(vectors, axis=1) < 1e-8).any():
        raise SymplugError(f"{where}: periodic along {pbc.tolist()} but {field} has a zero "
                           "vector along a periodic axis")
    singular = np.linalg.svd(vectors, compute_uv=False)
    if singular[-1] <= 1e-12 * singular[0]:
        raise SymplugError(f"{where}: {field} is singular (its periodic vectors are linearly "
                           "dependent)")
    if pbc.all():
        per_atom = abs(np.linalg.det(cell)) / len(atoms)
        if per_atom < MIN_VOLUME_PER_ATOM:
            raise SymplugError(f"{where}: {field} is nearly singular: volume {per_atom:.3g} "
                               f"A^3 per atom < {MIN_VOLUME_PER_ATOM} A^3")
    condition = singular[0] / singular[-1]
    if condition > MAX_CELL_CONDITION:
        raise SymplugError(f"{where}: {field} is ill-conditioned (condition number "
                           f"{condition:.3g} > {MAX_CELL_CONDITION:g}); reduce it, e.g. "
                           "ase.build.niggli_reduce")
    spacing = float((1.0 / np.linalg.norm(np.linalg.pinv(vectors), axis=0)).min())
    if spacing < MIN_DISTANCE:
        raise SymplugError(f"{where}: {field} is nearly singular: lattice planes {spacing:.3g} A "
                           f"apart < {MIN_DISTANCE} A (an atom overlaps its own image, or the "
                           "cell is sheared: reduce it, e.g. ase.build.niggli_reduce)")


def transform(atoms: ase.Atoms, g: np.ndarray) -> ase.Atoms:
    """A copy of ``atoms`` acted on by the orthogonal matrix ``g`` (3, 3) about its centre of mass.

    The copy carries no calculator; periodic copies are wrapped into the rotated cell.
    """
    g = np.asarray(g, dtype=np.float64)
    new = atoms.copy()
    new.calc = None
    com = atoms.get_center_of_mass()
    new.positions = com + (atoms.positions - com) @ g.T
    if atoms.get_pbc().any():
        proper = np.sign(np.linalg.det(g)) * g
        new.set_cell(atoms.cell.array @ proper.T, scale_atoms=False)
        new.wrap()
    return new


def transform_labelled(atoms: ase.Atoms, g: np.ndarray) -> ase.Atoms:
    """:func:`transform` keeping the labels of ``atoms.calc`` transformed by their
    representations: energy invariant, forces g F, stress g S g^T (Voigt or 3x3)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

    g = np.asarray(g, dtype=np.float64)
    new = transform(atoms, g)
    results = dict(getattr(atoms.calc, "results", {}) or {})
    if "forces" in results:
        results["forces"] = np.asarray(results["forces"]) @ g.T
    if "stress" in results:
        stress = np.asarray(results["stress"])
        full = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress
        results["stress"] = full_3x3_to_voigt_6_stress(g @ full @ g.T)
    if results:
        new.calc = SinglePointCalculator(new, **results)
    return new


@dataclass(frozen=True)
class RotatedCopies:
    """The batch the atoms domain hands to a model: one structure and the (B, 3, 3)
    group elements acting on it. Calculators ask for ``structures()``; torch models
    rotate positions, cell and edge vectors themselves on a graph built once
    (``matrices`` may carry a forward-mode tangent for Lie derivatives)."""

    atoms: ase.Atoms
    matrices: torch.Tensor

    def __len__(self) -> int:
        return int(self.matrices.shape[0])

    def structures(self) -> list[ase.Atoms]:
        """One transformed ase.Atoms per element."""
        mats = np.asarray(torch.as_tensor(self.matrices).detach().cpu(), dtype=np.float64)
        return [transform(self.atoms, g) for g in mats]


def rotated_copies(atoms: ase.Atoms, matrices: torch.Tensor) -> RotatedCopies:
    """The orbit action of the atoms domain."""
    return RotatedCopies(atoms, matrices)

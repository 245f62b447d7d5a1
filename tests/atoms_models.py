"""ASE calculators with known symmetry breaking, for the atoms adapter tests."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

EPS = 1e-3  # eV/A^2
W = np.array([0.3, -0.5, 0.8])


class _Planted(Calculator):
    """EMT plus a planted term ``planted(atoms) -> (energy, forces, virial or None)``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, eps=EPS, w=W, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.w, self.emt = eps, np.asarray(w, dtype=float), EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.emt
        energy, forces, virial = self.planted(a)
        self.results["energy"] = self.results["free_energy"] = a.get_potential_energy() + energy
        self.results["forces"] = a.get_forces() + forces
        if "stress" in properties and a.get_pbc().all():
            s = a.get_stress(voigt=False) + (0.0 if virial is None else virial)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


class PlantedEMT(_Planted):
    """EMT + eps sum_i ((r_i - r_com) . w)^2 (single-element systems: equal masses).

    Forces of the planted term: -2 eps ((r_i - r_com) . w) w (sum_i (r_i - r_com) = 0).
    Its stress is not included (the term is not periodic).
    """

    def planted(self, a):
        d = a.positions - a.get_center_of_mass()
        proj = d @ self.w
        return self.eps * float(proj @ proj), -2 * self.eps * proj[:, None] * self.w, None


class FailingEMT(EMT):
    """EMT that raises for structures with more than 20 atoms (a copy-level failure)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if len(atoms) > 20:
            raise RuntimeError("too many atoms for this test calculator")
        super().calculate(atoms, properties, system_changes)


class BadShapeEMT(EMT):
    """EMT whose forces come back with the wrong shape."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["forces"] = self.results["forces"][:, :2]


class PlantedPairEMT(_Planted):
    """EMT + eps/2 sum over ordered first-shell pairs (d_ij . w)^2 (minimum image):
    invariant under translations and wrapping, not under rotations."""

    cutoff = 3.0

    def planted(self, a):
        from ase.neighborlist import neighbor_list

        i, d = neighbor_list("iD", a, self.cutoff)
        proj = d @ self.w
        forces = np.zeros((len(a), 3))
        np.add.at(forces, i, 2 * self.eps * proj[:, None] * self.w)
        virial = None
        if a.get_pbc().all():
            virial = self.eps * np.einsum("e,a,eb->ab", proj, self.w, d)
            virial = (virial + virial.T) / 2 / a.get_volume()
        return self.eps / 2 * float(proj @ proj), forces, virial


CHARGES = (0.3, -0.2, 0.1)  # e, cycled over the atoms
NET_DIPOLE = np.array([0.05, -0.02, 0.04])  # e A, fixed in the lab frame


class DipoleEMT(EMT):
    """EMT with a dipole sum_i q_i (r_i - r_com) + c (e A): equivariant but for the
    lab-fixed c, whose back-rotation g^T c gives A = |c| / sqrt(3)."""

    implemented_properties = EMT.implemented_properties + ["dipole"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        q = np.resize(CHARGES, len(self.atoms))
        rel = self.atoms.positions - self.atoms.get_center_of_mass()
        self.results["dipole"] = q @ rel + NET_DIPOLE


def small_pet():
    """A bare torch module with a ``cutoff`` (for ``load_model("atoms_models:small_pet")``)."""
    import torch
    from symplug_atoms.pet import PointEdgeTransformer

    torch.manual_seed(0)
    return PointEdgeTransformer(d=8, heads=2, n_layers=1, cutoff=3.0)


class NoStressEMT(EMT):
    """EMT that does not offer stress."""

    implemented_properties = ["energy", "free_energy", "forces"]

"""ASE calculators with known symmetry breaking, for the atoms adapter tests."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

EPS = 1e-3  # eV/A^2
W = np.array([0.3, -0.5, 0.8])


class PlantedEMT(Calculator):
    """EMT + eps sum_i ((r_i - r_com) . w)^2 (single-element systems: equal masses).

    Forces of the planted term: -2 eps ((r_i - r_com) . w) w (sum_i (r_i - r_com) = 0).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, eps=EPS, w=W, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.w, self.emt = eps, np.asarray(w, dtype=float), EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.emt
        d = a.positions - a.get_center_of_mass()
        proj = d @ self.w
        self.results["energy"] = self.results["free_energy"] = (
            a.get_potential_energy() + self.eps * float(proj @ proj))
        self.results["forces"] = a.get_forces() - 2 * self.eps * proj[:, None] * self.w
        if "stress" in properties:
            self.results["stress"] = a.get_stress()


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

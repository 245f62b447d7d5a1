"""ASE calculators whose outputs mean nothing for a diagnosis (loaded by the CLI as
``--model bad_inputs.calculators:Name``)."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class ZeroCalculator(Calculator):
    """Energy, forces and stress identically zero: a zero response."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": 0.0, "free_energy": 0.0, "forces": np.zeros((n, 3)),
                        "stress": np.zeros(6)}


class ConstantCalculator(Calculator):
    """A constant energy (1 eV) and the same lab-fixed force on every atom: invariant
    energy, forces that break rotation symmetry completely."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": 1.0, "free_energy": 1.0,
                        "forces": np.tile([0.1, -0.2, 0.3], (n, 1))}

"""An ASE calculator whose forces hold no rigid-body part: no net force and, for an
isolated structure, no net torque.

A model that has not learned rotational invariance exactly exerts a net torque
tau = sum_i (r_i - R) x F_i on an isolated cluster (R its centre of mass), which makes
its angular momentum drift in NVE. The smallest change of the forces that removes it,
in the metric of the masses, is the projection out of the six rigid-body directions:

    F_i' = F_i - m_i / M sum_j F_j - m_i alpha x (r_i - R),   I alpha = tau',

with I = sum_i m_i (|r_i - R|^2 1 - (r_i - R)(r_i - R)^T) the inertia tensor and tau' the
torque of the forces after the first step. Then sum_i F_i' = 0 and sum_i (r_i - R) x F_i'
= tau' - I alpha = 0, so velocity Verlet conserves momentum and angular momentum to
round-off, at the cost of one model call per step. Periodic structures keep only the
net-force projection (a periodic cell has no conserved angular momentum). The energy
and stress are the model's; the projected forces are the gradient of the energy only
where the model is invariant (a model that breaks rotational invariance has E change
under a rigid rotation, and the projection drops exactly that part of -dE/dx), so
energy conservation is measured, not assumed (``symplug md --variants projected``).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes

from .calculator import ase_results, supported_properties


def project_rigid_body(forces: np.ndarray, positions: np.ndarray, masses: np.ndarray,
                       isolated: bool) -> np.ndarray:
    """(N, 3) forces without their net force and, if ``isolated``, their net torque
    about the centre of mass (module docstring); units of ``forces``."""
    m = masses[:, None]
    out = forces - m / masses.sum() * forces.sum(axis=0)
    if not isolated or len(forces) < 2:
        return out
    r = positions - (m * positions).sum(axis=0) / masses.sum()
    torque = np.cross(r, out).sum(axis=0)
    inertia = (masses * (r * r).sum(axis=1)).sum() * np.eye(3) - (m * r).T @ r
    alpha = np.linalg.lstsq(inertia, torque, rcond=None)[0]  # a linear molecule: I singular
    return out - m * np.cross(alpha, r)


class RigidBodyProjectedCalculator(Calculator):
    """``calc`` with the rigid-body part of its forces projected out (module docstring)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, calc: BaseCalculator, **kwargs):
        super().__init__(**kwargs)
        self.calc = calc

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.all())
        props = ["energy", "forces"] + (["stress"] if periodic and "stress" in
                                        supported_properties(self.calc) else [])
        results = ase_results(self.calc, self.atoms.copy(), props)
        forces = project_rigid_body(results["forces"], self.atoms.positions,
                                    self.atoms.get_masses(), not self.atoms.pbc.any())
        self.results = {"energy": results["energy"], "free_energy": results["energy"],
                        "forces": forces}
        if "stress" in results:
            from ase.stress import full_3x3_to_voigt_6_stress

            self.results["stress"] = full_3x3_to_voigt_6_stress(results["stress"])

"""Any ASE calculator as a symplug atoms model, copy by copy, and the reporting units.

:class:`CalculatorModel` maps a list of structures (the transformed copies of
one input) to symplug outputs in reporting units: ``energy`` in meV/atom,
per-atom ``energies`` in meV, ``forces`` in meV/A, ``stress`` in GPa (3 x 3, periodic
structures only), ``dipole`` in e A; any further output the calculator implements
(declared with its representation, :meth:`symplug.Domain.declare`) in its own units.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import ase
import numpy as np
import torch
from ase import units
from ase.calculators.calculator import BaseCalculator

from symplug import SymplugError

from .action import RotatedCopies

DEFAULT = ("energy", "forces", "stress")  # what a model computes unless asked otherwise
# reporting units (record.UNITS) from ASE units (eV, eV/A, eV/A^3, e A)
STRESS_TO_GPA = 1.0 / units.GPa


def to_reporting_units(name: str, value: np.ndarray, n_atoms: int) -> np.ndarray:
    """Convert an ASE-unit ``energy`` (eV), ``energies`` (eV), ``forces`` (eV/A) or 3x3
    ``stress`` (eV/A^3); other outputs keep their units."""
    value = np.asarray(value, dtype=np.float64)
    if name == "energy":
        return value.reshape(1) * 1000.0 / n_atoms
    if name in ("energies", "forces"):
        return value * 1000.0
    if name == "stress":
        return value * STRESS_TO_GPA
    return value


def ase_results(calc: BaseCalculator, atoms: ase.Atoms, properties: Sequence[str]) -> dict:
    """energy (eV), forces (N, 3), stress (3, 3), per-atom energies (N,) and any other
    property ``calc`` implements, of ``atoms``, shapes of the standard ones checked."""
    atoms.calc = calc
    out = {}
    name = type(calc).__name__
    for p in properties:
        if p == "energy":
            energy = np.asarray(atoms.get_potential_energy(), dtype=np.float64)
            if energy.size != 1:
                raise SymplugError(f"calculator {name} returned energy of shape "
                                   f"{energy.shape}; expected a scalar")
            out[p] = float(energy.reshape(()))
        elif p == "stress":
            out[p] = np.asarray(atoms.get_stress(voigt=False), dtype=np.float64)
        elif p == "energies":
            out[p] = np.asarray(atoms.get_potential_energies(), dtype=np.float64)
        else:
            out[p] = np.asarray(calc.get_property(p, atoms), dtype=np.float64)
    expected = {"forces": (len(atoms), 3), "stress": (3, 3), "energies": (len(atoms),)}
    for p, shape in expected.items():
        if p in out and out[p].shape != shape:
            raise SymplugError(f"calculator {name} returned {p} of shape {out[p].shape} "
                               f"for {len(atoms)} atoms; expected {shape}")
    atoms.calc = None
    return out


def supported_properties(calc: BaseCalculator) -> set[str]:
    return set(getattr(calc, "implemented_properties", ("energy", "forces")))


class CalculatorModel:
    """An ASE calculator as a symplug model: ``model(copies) -> {output: tensor}`` for
    :class:`RotatedCopies` or a list of structures, copy by copy.

    ``properties`` names the outputs it computes; by default energy, forces and stress
    as far as the calculator implements them (stress only when every copy is periodic).
    :func:`symplug.diagnose` evaluates a copy that computes the outputs diagnosed
    (:meth:`for_outputs`).
    """

    def __init__(self, calc: BaseCalculator, properties: Sequence[str] | None = None):
        if not isinstance(calc, BaseCalculator):
            raise SymplugError(f"expected an ASE calculator, got {type(calc).__name__}")
        self.calc = calc
        self.properties = ([p for p in DEFAULT if p in self.available()] if properties is None
                           else self._checked(properties))

    def available(self) -> set[str]:
        """The output names this model can compute."""
        return supported_properties(self.calc)

    def for_outputs(self, outputs: Mapping[str, str], optional=()) -> tuple["CalculatorModel", list[str]]:
        """A copy of this model that computes ``outputs`` (names and representations),
        less those in ``optional`` that it cannot compute, and their names."""
        available = self.available()
        model = copy.copy(self)
        model.properties = self._checked([p for p in outputs if p in available or p not in optional])
        return model, list(model.properties)

    def _checked(self, names: Sequence[str]) -> list[str]:
        available = self.available()
        for p in names:
            if p not in available:
                raise SymplugError(f"{self!r} cannot compute output {p!r} (it offers "
                                   f"{', '.join(sorted(available))})")
        return list(names)

    def __call__(self, batch: "RotatedCopies | Sequence[ase.Atoms]") -> dict[str, torch.Tensor]:
        copies = batch.structures() if isinstance(batch, RotatedCopies) else list(batch)
        periodic = all(a.get_pbc().all() for a in copies)
        props = [p for p in self.properties if p != "stress" or periodic]
        rows: dict[str, list[np.ndarray]] = {p: [] for p in props}
        for q, atoms in enumerate(copies):
            try:
                result = ase_results(self.calc, atoms, props)
            except SymplugError:
                raise
            except Exception as exc:
                raise SymplugError(f"calculator {type(self.calc).__name__} failed on copy {q} "
                                   f"({atoms.get_chemical_formula()}): "
                                   f"{type(exc).__name__}: {exc}") from exc
            for p in props:
                rows[p].append(to_reporting_units(p, result[p], len(atoms)))
        return {p: torch.from_numpy(np.stack(v)) for p, v in rows.items()}

    def __repr__(self) -> str:
        return f"CalculatorModel({type(self.calc).__name__})"

"""Models the atoms adapter evaluates: any ASE calculator, copy by copy.

:class:`CalculatorModel` maps a list of structures (the transformed copies of
one input) to symplug outputs in reporting units: ``energy`` in meV/atom,
``forces`` in meV/A, ``stress`` in GPa (3 x 3, periodic structures only).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Sequence

import ase
import numpy as np
import torch
from ase import units
from ase.calculators.calculator import BaseCalculator

from symplug import SymplugError

from .action import RotatedCopies

# reporting unit and factor from ASE units (eV, eV/A, eV/A^3)
UNITS = {"energy": "meV/atom", "forces": "meV/A", "stress": "GPa"}
REPS = {"energy": "0e", "forces": "1o", "stress": "cartesian2"}
STRESS_TO_GPA = 1.0 / units.GPa


def to_reporting_units(name: str, value: np.ndarray, n_atoms: int) -> np.ndarray:
    """Convert an ASE-unit ``energy`` (eV), ``forces`` (eV/A) or 3x3 ``stress`` (eV/A^3)."""
    if name == "energy":
        return np.asarray(value, dtype=np.float64).reshape(1) * 1000.0 / n_atoms
    if name == "forces":
        return np.asarray(value, dtype=np.float64) * 1000.0
    return np.asarray(value, dtype=np.float64) * STRESS_TO_GPA


def ase_results(calc: BaseCalculator, atoms: ase.Atoms, properties: Sequence[str]) -> dict:
    """energy (eV), forces (N, 3) and stress (3, 3) of ``atoms`` from ``calc``, shapes checked."""
    atoms.calc = calc
    out = {}
    if "energy" in properties:
        energy = np.asarray(atoms.get_potential_energy(), dtype=np.float64)
        if energy.size != 1:
            raise SymplugError(f"calculator {type(calc).__name__} returned energy of shape "
                               f"{energy.shape}; expected a scalar")
        out["energy"] = float(energy.reshape(()))
    if "forces" in properties:
        forces = np.asarray(atoms.get_forces(), dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise SymplugError(f"calculator {type(calc).__name__} returned forces of shape "
                               f"{forces.shape} for {len(atoms)} atoms; expected ({len(atoms)}, 3)")
        out["forces"] = forces
    if "stress" in properties:
        stress = np.asarray(atoms.get_stress(voigt=False), dtype=np.float64)
        if stress.shape != (3, 3):
            raise SymplugError(f"calculator {type(calc).__name__} returned stress of shape "
                               f"{stress.shape}; expected (3, 3)")
        out["stress"] = stress
    atoms.calc = None
    return out


def supported_properties(calc: BaseCalculator) -> set[str]:
    return set(getattr(calc, "implemented_properties", ("energy", "forces")))


class CalculatorModel:
    """An ASE calculator as a symplug model: ``model(copies) -> {output: tensor}`` for
    :class:`RotatedCopies` or a list of structures, copy by copy.

    ``properties`` restricts the outputs; by default all of energy, forces and stress
    that the calculator implements (stress only when every copy is periodic).
    """

    def __init__(self, calc: BaseCalculator, properties: Sequence[str] | None = None):
        if not isinstance(calc, BaseCalculator):
            raise SymplugError(f"expected an ASE calculator, got {type(calc).__name__}")
        self.calc = calc
        available = supported_properties(calc)
        if properties is None:
            self.properties = [p for p in REPS if p in available]
            return
        for p in properties:
            if p not in REPS:
                raise SymplugError(f"unknown atoms output {p!r}; known: {', '.join(REPS)}")
            if p not in available:
                raise SymplugError(f"calculator {type(calc).__name__} does not implement "
                                   f"{p!r} (it implements {sorted(available)})")
        self.properties = list(properties)

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
        return f"CalculatorModel({type(self.calc).__name__}, properties={self.properties})"


SHIPPED = {"emt": ("ase.calculators.emt", "EMT")}


def load_model(spec: str):
    """A model from a spec: a shipped name (``emt``, ``pet-cu``), a ``*.pt`` file (a
    metatomic model, or a checkpoint written by :mod:`symplug_atoms.train`), a metatrain
    ``*.ckpt`` checkpoint (hidden layers available), or
    ``module:attribute`` naming an ASE calculator instance, class or factory (called
    without arguments)."""
    from .torch_model import SHIPPED as SHIPPED_TORCH
    from .torch_model import load_reference

    from .metatomic import MetatomicModel, is_metatomic_file

    if spec in SHIPPED_TORCH:
        return load_reference()
    if spec.endswith(".pt"):
        return MetatomicModel(spec) if is_metatomic_file(spec) else load_reference(spec)
    if spec.endswith(".ckpt"):
        from .metatrain_model import MetatrainModel

        return MetatrainModel(spec)
    if spec in SHIPPED:
        module_name, attr = SHIPPED[spec]
    elif ":" in spec:
        module_name, attr = spec.split(":", 1)
    else:
        raise SymplugError(f"unknown atoms model {spec!r}: give a shipped name "
                           f"({', '.join([*SHIPPED, *SHIPPED_TORCH])}), a .pt checkpoint "
                           "or module:attribute")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SymplugError(f"cannot load atoms model {spec!r}: {exc}") from exc
    obj = target() if inspect.isclass(target) or (callable(target) and not
                                                  isinstance(target, BaseCalculator)) else target
    if isinstance(obj, torch.nn.Module):
        raise SymplugError(f"{spec!r} is a bare torch module; wrap it as "
                           "symplug_atoms.torch_model.TorchAtomsModel(module, cutoff) or in an "
                           "ASE calculator (e.g. metatomic_ase.MetatomicCalculator)")
    if hasattr(obj, "module") and callable(obj):
        return obj  # already a symplug atoms model (e.g. TorchAtomsModel)
    return CalculatorModel(obj)

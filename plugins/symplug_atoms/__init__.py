"""symplug adapter for atomistic models (ASE calculators).

Public API (imported lazily, so that ``symplug plugins`` works without ase)::

    from symplug_atoms import diagnose, SymmetrizedCalculator, CalculatorModel, transform

Outputs and the units symplug reports them in: ``energy`` (0e, meV/atom),
``forces`` (1o, meV/A), ``stress`` (cartesian2, GPa; over the periodic structures).
Group elements act about the centre of mass; periodic cells rotate with the atoms.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "transform": "action", "check_frame": "action", "rotated_copies": "action",
    "CalculatorModel": "models", "load_model": "models",
    "SymmetrizedCalculator": "symmetrize",
    "symmetrize_metatomic": "symmetrized_export", "export_symmetrized": "symmetrized_export",
    "TorchAtomsModel": "torch_model", "load_reference": "torch_model",
    "PointEdgeTransformer": "pet", "MetatomicModel": "metatomic",
    "MetatrainModel": "metatrain_model",
    "diagnose": "domain", "atoms_domain": "record", "read_frames": "domain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'symplug_atoms' has no attribute {name!r}")

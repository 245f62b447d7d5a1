"""Loading the models the atoms adapter evaluates, from a spec (:func:`load_model`): an
ASE calculator (:class:`~symplug_atoms.calculator.CalculatorModel`, in reporting units),
a metatomic model, a symplug or metatrain checkpoint, or a torch module.

The calculator model and the reporting units live in :mod:`symplug_atoms.calculator`
and are re-exported here.
"""

from __future__ import annotations

import inspect
import sys

import torch
from ase.calculators.calculator import BaseCalculator

from symplug import SymplugError
from symplug.plugins import import_spec

from .calculator import CalculatorModel

SHIPPED = {"emt": "ase.calculators.emt:EMT"}
# metatrain PET trained to 1.67 meV/atom and 11.9 meV/A on its test split
# (examples/train_reference_pet.py; data/pet_ref_metrics.json)
SHIPPED_METATOMIC = {"pet-ref": "pet_ref.pt"}


def load_model(spec: str, trusted: bool = False):
    """A model from a spec: a shipped name (``emt``, ``pet-cu``, ``pet-ref``: the
    reference metatrain PET, exported), a ``*.pt`` file (a
    metatomic model, or a checkpoint written by :mod:`symplug_atoms.train`), a metatrain
    ``*.ckpt`` checkpoint (hidden layers available), or
    ``module:attribute`` naming an ASE calculator instance, class or factory (called
    without arguments), or a torch module ``module(graph, vectors) -> atomic energies``
    with a ``cutoff`` attribute (A), e.g. a
    :class:`~symplug_atoms.pet.PointEdgeTransformer`.

    Loading runs no code from the spec unless ``trusted``: ``.pt`` checkpoints are read
    with ``torch.load(weights_only=True)`` and metatomic ``.pt`` files are TorchScript
    (no Python); a ``.ckpt`` (metatrain unpickles it with ``weights_only=False``) and a
    ``module:attribute`` (an import) are refused unless ``trusted=True``."""
    from .torch_model import SHIPPED as SHIPPED_TORCH
    from .torch_model import load_reference

    from .metatomic import MetatomicModel, is_metatomic_file

    if spec in SHIPPED_TORCH:
        return load_reference()
    if spec in SHIPPED_METATOMIC:
        from .torch_model import SHIPPED_DIR

        return MetatomicModel(str(SHIPPED_DIR / SHIPPED_METATOMIC[spec]))
    if spec.endswith(".pt"):
        return MetatomicModel(spec) if is_metatomic_file(spec) else load_reference(spec)
    if spec.endswith(".ckpt"):
        from .metatrain_model import MetatrainModel

        return MetatrainModel(spec, trusted=trusted)
    if spec not in SHIPPED and ":" not in spec:
        raise SymplugError(f"unknown atoms model {spec!r}: give a shipped name "
                           f"({', '.join([*SHIPPED, *SHIPPED_TORCH, *SHIPPED_METATOMIC])}), "
                           "a .pt checkpoint "
                           "or module:attribute")
    # a shipped calculator is our own code; any other module:attribute runs the user's
    target = import_spec(SHIPPED.get(spec, spec), "atoms model", trusted or spec in SHIPPED)
    obj = target() if inspect.isclass(target) or (callable(target) and not
                                                  isinstance(target, BaseCalculator)) else target
    if isinstance(obj, torch.nn.Module):
        from .torch_model import TorchAtomsModel

        if isinstance(getattr(obj, "cutoff", None), (int, float)):
            return TorchAtomsModel(obj, cutoff=float(obj.cutoff))
        raise SymplugError(f"{spec!r} is a torch module without a numeric 'cutoff' attribute "
                           "(the neighbour-list radius in A); give it one, or wrap it as "
                           "symplug_atoms.torch_model.TorchAtomsModel(module, cutoff), or in an "
                           "ASE calculator (e.g. metatomic_ase.MetatomicCalculator)")
    if hasattr(obj, "module") and callable(obj):
        return obj  # already a symplug atoms model (e.g. TorchAtomsModel)
    return calculator_model(obj)


def calculator_model(calc: BaseCalculator) -> CalculatorModel:
    """``calc`` as a symplug model: batched for a metatomic-ase ``MetatomicCalculator``,
    copy by copy otherwise."""
    metatomic_ase = sys.modules.get("metatomic_ase")  # imported by whoever made ``calc``
    if metatomic_ase is not None and isinstance(calc, metatomic_ase.MetatomicCalculator):
        from .metatomic import MetatomicModel

        return MetatomicModel(calc)
    return CalculatorModel(calc)

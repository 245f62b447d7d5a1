"""Augmented fine-tuning of metatrain checkpoints (e.g. PET): the atoms domain's
training task for a :class:`~symplug_atoms.metatrain_model.MetatrainModel`.

Each structure's neighbour lists are built once, unrotated, with metatrain's own
options; a rotated copy rebuilds its distance vectors from the rotated positions and
cell in the same order (as :class:`~symplug_atoms.metatrain_model.MetatrainModel` does
for an orbit), so augmentation and the penalties run no neighbour search. Predictions
are in eV/atom and eV/A, the loss and penalty weights those of
:mod:`symplug_atoms.finetune` (10 x MSE(E/N) + MSE(F)).

The model runs with its post-processing in evaluation mode (metatrain's scaler and
composition energies added, so it predicts the labels themselves) and its backend in
training mode, where metatrain's PET uses its own attention, which allows the second
derivative that training on forces takes (torch's fused attention does not). Nothing
else in the forward depends on the mode (PET has no dropout or batch norm);
``tests/test_atoms_metatrain.py`` checks that it predicts what the evaluated model does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import ase
import numpy as np
import torch

from symplug import SymplugError, TrainingTask
from symplug.groups import O3

from .domain import check_structure
from .structure_batches import (StructureBatch, energy_forces_loss, force_rows, forces_labels,
                                transform_batch, with_forces_labels)
from .metatrain_model import ENERGY, MetatrainModel, neighbor_blocks, system_with_neighbors
from .train import ENERGY_WEIGHT, FORCE_WEIGHT


@dataclass(frozen=True)
class SystemItem:
    """A labelled structure for a metatrain model: atomic ``types`` (N,) int32, ``pos``
    (N, 3) A about the centre of mass, ``cell`` (3, 3) A (rows; zero along a
    non-periodic direction), ``pbc`` (3,), the neighbour-list blocks of the unrotated
    structure (one per requested list: pairs and cell shifts, rotation-invariant),
    ``energy`` eV and ``forces`` (N, 3) eV/A."""

    types: torch.Tensor
    n: int
    pos: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    neighbors: tuple
    energy: float
    forces: torch.Tensor

    @classmethod
    def of(cls, atoms: ase.Atoms, options: Sequence, dtype: torch.dtype,
           where: str) -> "SystemItem":
        results = getattr(atoms.calc, "results", None) or {}
        missing = [k for k in ("energy", "forces") if k not in results]
        if missing:
            raise SymplugError(f"{where}: no {missing[0]!r} label to fine-tune on")
        pbc = torch.as_tensor(atoms.get_pbc())
        return cls(torch.as_tensor(atoms.numbers, dtype=torch.int32), len(atoms),
                   torch.tensor(atoms.positions - atoms.get_center_of_mass(), dtype=dtype),
                   torch.tensor(atoms.cell.array, dtype=dtype) * pbc[:, None], pbc,
                   tuple(neighbor_blocks(atoms, options, dtype)),
                   float(results["energy"]),
                   torch.tensor(np.asarray(results["forces"]), dtype=dtype))

    def transformed(self, g: torch.Tensor) -> "SystemItem":
        """The structure acted on by the orthogonal g (3, 3): positions and cell rows
        turn (the neighbour pairs and shifts stay); the labels are left as they are."""
        g = g.to(self.pos.dtype)
        return replace(self, pos=self.pos @ g.T, cell=self.cell @ g.T)


def predict(module: torch.nn.Module, options, batch: Sequence[SystemItem]
            ) -> dict[str, torch.Tensor]:
    """Energy per atom (B,) eV/atom and forces (sum N, 3) eV/A of ``batch``; forces keep
    their graph (for a loss on them) when gradients are enabled."""
    from metatomic.torch import ModelOutput

    create = torch.is_grad_enabled()
    module.eval()  # metatrain's scaler and composition energies: the labels' own units
    module.backend.train(create)  # metatrain's own attention: twice differentiable
    try:
        with torch.enable_grad():  # forces are energy gradients, also when evaluating
            positions = [item.pos.detach().requires_grad_() for item in batch]
            systems = [system_with_neighbors(item.types, pos, item.cell, item.pbc, options,
                                             item.neighbors)
                       for item, pos in zip(batch, positions)]
            out = module(systems,
                         {ENERGY: ModelOutput(unit="eV", sample_kind="system")})
            energy = out[ENERGY].block().values.reshape(-1)
            grads = torch.autograd.grad(energy.sum(), positions, create_graph=create)
    finally:
        module.backend.eval()
    n = torch.tensor([item.n for item in batch], dtype=energy.dtype)
    return {"energy": (energy if create else energy.detach()) / n,
            "forces": -torch.cat(grads)}


def errors(module: torch.nn.Module, options, items: Sequence[SystemItem], seed: int = 1,
           chunk: int = 8) -> dict[str, float]:
    """MAE and RMSE of energy (meV/atom) and forces (meV/A) on ``items``, each rotated
    by a Haar-random element of O(3) (seeded), as :func:`symplug_atoms.train.errors`."""
    mats = O3().haar(len(items), seed=seed).to(items[0].pos.dtype)
    items = [item.transformed(g) for item, g in zip(items, mats)]
    e_err, f_err = [], []
    with torch.no_grad():
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            pred = predict(module, options, part)
            e_err.append((pred["energy"] - torch.tensor([i.energy / i.n for i in part],
                                                        dtype=pred["energy"].dtype)) * 1000)
            labels = torch.cat([i.forces @ g.T for i, g in zip(part, mats[start:start + chunk])])
            f_err.append((pred["forces"] - labels).flatten() * 1000)
    e, f = torch.cat(e_err).double().numpy(), torch.cat(f_err).double().numpy()
    return {"energy_mae_meV_per_atom": float(np.abs(e).mean()),
            "energy_rmse_meV_per_atom": float(np.sqrt((e ** 2).mean())),
            "forces_mae_meV_per_A": float(np.abs(f).mean()),
            "forces_rmse_meV_per_A": float(np.sqrt((f ** 2).mean()))}


def training_task(model: MetatrainModel, frames: Sequence[ase.Atoms],
                  dtype: torch.dtype = torch.float32) -> TrainingTask:
    """The fine-tuning task of a metatrain checkpoint on labelled ``frames`` (energy and
    forces), trained in ``dtype`` (float32, as metatrain trains); tracking and
    ``snapshot`` use float64 copies of the weights."""
    if not isinstance(model, MetatrainModel):
        raise SymplugError(f"expected a metatrain checkpoint, got {type(model).__name__}")
    for i, a in enumerate(frames):
        check_structure(a, f"frame {i}")
    options = model.options
    items = [SystemItem.of(a, options, dtype, f"frame {i}") for i, a in enumerate(frames)]
    module = model.module.to(dtype)  # after the labels are checked: a refusal leaves the model

    def evaluate(samples, diagnosis):
        for i, a in enumerate(samples):
            check_structure(a, f"validation frame {i}")
        return errors(module, options, [SystemItem.of(a, options, dtype, f"validation frame {i}")
                                        for i, a in enumerate(samples)])

    return TrainingTask(
        module=module, items=items, collate=StructureBatch,
        predict=lambda batch: predict(module, options, batch), loss=energy_forces_loss,
        outputs={"energy": "0e", "forces": "1o"},
        output_weights={"energy": ENERGY_WEIGHT, "forces": FORCE_WEIGHT}, rows=force_rows,
        snapshot=lambda: model.with_module(copy.deepcopy(module)),
        evaluate=evaluate, act=transform_batch, labels=forces_labels,
        with_labels=with_forces_labels)

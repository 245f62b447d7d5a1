"""Augmented fine-tuning of torch atoms models (the atoms domain's ``training_task``).

Training items are labelled structures as tensors on a neighbour graph built once
(:class:`Labelled`); a batch is a :class:`~symplug_atoms.structure_batches.StructureBatch`,
whose positions and cell the task's ``act`` rotates about the centre of mass without
rebuilding graphs (the core rotates the force labels as ``1o``; the energy is
invariant). The loss is the reference model's (:mod:`symplug_atoms.structure_batches`);
the penalties compare the energy per atom (``0e``, eV/atom) and the forces (``1o``,
eV/A) with the same weights. A metatrain checkpoint's task is
:mod:`symplug_atoms.metatrain_finetune`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import ase
import numpy as np
import torch

from symplug import SymplugError, TrainingTask

from .graph import Graph, build_graph
from .structure_batches import (StructureBatch, energy_forces_loss, force_rows, forces_labels,
                                transform_batch, with_forces_labels)
from .torch_model import TorchAtomsModel
from .domain import check_structure
from .train import ENERGY_WEIGHT, FORCE_WEIGHT, errors, predict


@dataclass(frozen=True)
class Labelled:
    """A labelled structure: ``pos`` (N, 3) A about the centre of mass, ``cell`` (3, 3) A
    (rows), ``energy`` eV, ``forces`` (N, 3) eV/A, and its graph (rotation-invariant)."""

    graph: Graph
    n: int
    pos: torch.Tensor
    cell: torch.Tensor
    energy: float
    forces: torch.Tensor

    @classmethod
    def of(cls, atoms: ase.Atoms, cutoff: float, dtype: torch.dtype, where: str) -> "Labelled":
        results = getattr(atoms.calc, "results", None) or {}
        missing = [k for k in ("energy", "forces") if k not in results]
        if missing:
            raise SymplugError(f"{where}: no {missing[0]!r} label to fine-tune on")
        com = atoms.get_center_of_mass()
        return cls(build_graph(atoms, cutoff), len(atoms),
                   torch.tensor(atoms.positions - com, dtype=dtype),
                   torch.tensor(atoms.cell.array, dtype=dtype), float(results["energy"]),
                   torch.tensor(np.asarray(results["forces"]), dtype=dtype))

    def transformed(self, g: torch.Tensor) -> "Labelled":
        """The structure acted on by the orthogonal g (3, 3): positions and cell rows
        (image shifts S.a turn with g) rotate; the labels are left as they are."""
        g = g.to(self.pos.dtype)
        return replace(self, pos=self.pos @ g.T, cell=self.cell @ g.T)


def _predict(module: torch.nn.Module, batch: StructureBatch) -> dict[str, torch.Tensor]:
    dtype = batch[0].pos.dtype
    eye = torch.eye(3, dtype=dtype).expand(len(batch), 3, 3)
    energy, forces = predict(module, list(batch), eye, create_graph=torch.is_grad_enabled())
    n = torch.tensor([item.n for item in batch], dtype=dtype)
    return {"energy": energy / n, "forces": torch.cat(forces)}


def training_task(model: TorchAtomsModel, frames: Sequence[ase.Atoms],
                  dtype: torch.dtype = torch.float32) -> TrainingTask:
    """The fine-tuning task of a torch atoms model on labelled ``frames`` (energy and
    forces), trained in ``dtype``; tracking uses a float64 copy. A metatrain checkpoint
    gets :func:`symplug_atoms.metatrain_finetune.training_task`."""
    from .metatrain_model import MetatrainModel

    if isinstance(model, MetatrainModel):
        from .metatrain_finetune import training_task as metatrain_task

        return metatrain_task(model, frames, dtype)
    if not isinstance(model, TorchAtomsModel):
        raise SymplugError(f"fine-tuning needs a torch atoms model (pet-cu or a .pt checkpoint "
                           f"of symplug_atoms.train) or a metatrain .ckpt, got "
                           f"{type(model).__name__}")
    cutoff = model.cutoff
    for i, a in enumerate(frames):
        check_structure(a, f"frame {i}")
    items = [Labelled.of(a, cutoff, dtype, f"frame {i}") for i, a in enumerate(frames)]
    module = model.module.to(dtype)  # after the labels are checked: a refusal leaves the model
    layers = tuple(module.layer_names()) if hasattr(module, "layer_names") else ()

    def evaluate(samples, diagnosis):
        was = module.training
        module.eval()
        for i, a in enumerate(samples):
            check_structure(a, f"validation frame {i}")
        with torch.enable_grad():  # forces are energy gradients
            out = errors(module, [Labelled.of(a, cutoff, dtype, f"validation frame {i}")
                                  for i, a in enumerate(samples)])
        module.train(was)
        return out

    return TrainingTask(
        module=module, items=items, collate=StructureBatch,
        predict=lambda batch: _predict(module, batch), loss=energy_forces_loss,
        outputs={"energy": "0e", "forces": "1o"},
        output_weights={"energy": ENERGY_WEIGHT, "forces": FORCE_WEIGHT}, rows=force_rows,
        snapshot=lambda: TorchAtomsModel(copy.deepcopy(module), cutoff),
        evaluate=evaluate, layers=layers, act=transform_batch, labels=forces_labels,
        with_labels=with_forces_labels)

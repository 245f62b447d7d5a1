"""Augmented fine-tuning of torch atoms models (the atoms domain's ``training_task``).

Training items are labelled structures as tensors on a neighbour graph built once
(:class:`Labelled`); a batch is a :class:`StructureBatch`, whose positions and cell
the task's ``act`` rotates about the centre of mass without rebuilding graphs (the core
rotates the force labels as ``1o``; the energy is invariant). The loss is the
reference model's: 10 x MSE(E/N in eV) + MSE(F in eV/A), as :class:`~symplug.MeanTerm`
sums over structures and force components; the penalties compare the
energy per atom (``0e``, eV/atom) and the forces (``1o``, eV/A) with the same weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import ase
import numpy as np
import torch

from symplug import MeanTerm, SymplugError, TrainingTask

from .graph import Graph, build_graph
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


class StructureBatch(list):
    """A training batch of :class:`Labelled` structures."""


def transform_batch(batch: StructureBatch, matrices: torch.Tensor) -> StructureBatch:
    """Each structure acted on by its own element (``matrices`` (B, 3, 3)), labels kept."""
    return StructureBatch(item.transformed(g) for item, g in zip(batch, torch.as_tensor(matrices)))


def _labels(batch: StructureBatch) -> dict[str, torch.Tensor]:
    """The labels that turn: forces (all atoms, 1o); the energy is invariant."""
    return {"forces": torch.cat([item.forces for item in batch])}


def _with_labels(batch: StructureBatch, labels: dict[str, torch.Tensor]) -> StructureBatch:
    forces = torch.split(labels["forces"], [item.n for item in batch])
    return StructureBatch(replace(item, forces=f) for item, f in zip(batch, forces))


def _predict(module: torch.nn.Module, batch: StructureBatch) -> dict[str, torch.Tensor]:
    dtype = batch[0].pos.dtype
    eye = torch.eye(3, dtype=dtype).expand(len(batch), 3, 3)
    energy, forces = predict(module, list(batch), eye, create_graph=torch.is_grad_enabled())
    n = torch.tensor([item.n for item in batch], dtype=dtype)
    return {"energy": energy / n, "forces": torch.cat(forces)}


def _targets(batch: StructureBatch) -> dict[str, torch.Tensor]:
    dtype = batch[0].pos.dtype
    return {"energy": torch.tensor([item.energy / item.n for item in batch], dtype=dtype),
            "forces": torch.cat([item.forces for item in batch])}


def _loss(batch: StructureBatch, pred: dict[str, torch.Tensor]) -> dict[str, MeanTerm]:
    """10 x mean over structures of (E/N)^2 errors + mean over force components of
    squared errors, as sums and counts (exact when ranks hold different atom counts)."""
    target = _targets(batch)
    forces = pred["forces"] - target["forces"]
    return {"energy": MeanTerm((pred["energy"] - target["energy"]).pow(2).sum(),
                               float(len(batch)), ENERGY_WEIGHT),
            "forces": MeanTerm(forces.pow(2).sum(), float(forces.numel()), FORCE_WEIGHT)}


def _rows(batch: StructureBatch, name: str) -> torch.Tensor | None:
    if name != "forces":
        return None
    return torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([i.n for i in batch]))


def training_task(model: TorchAtomsModel, frames: Sequence[ase.Atoms],
                  dtype: torch.dtype = torch.float32) -> TrainingTask:
    """The fine-tuning task of a torch atoms model on labelled ``frames`` (energy and
    forces), trained in ``dtype``; tracking uses a float64 copy."""
    if not isinstance(model, TorchAtomsModel):
        raise SymplugError(f"fine-tuning needs a torch atoms model (pet-cu or a .pt checkpoint "
                           f"of symplug_atoms.train), got {type(model).__name__}")
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
        predict=lambda batch: _predict(module, batch), loss=_loss,
        outputs={"energy": "0e", "forces": "1o"},
        output_weights={"energy": ENERGY_WEIGHT, "forces": FORCE_WEIGHT}, rows=_rows,
        snapshot=lambda: TorchAtomsModel(copy.deepcopy(module), cutoff),
        evaluate=evaluate, layers=layers, act=transform_batch, labels=_labels,
        with_labels=_with_labels)

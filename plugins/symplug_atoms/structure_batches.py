"""Training batches of labelled structures, for any atoms model's fine-tuning task
(:mod:`symplug_atoms.finetune`, :mod:`symplug_atoms.metatrain_finetune`): the action on a
batch, its labels that turn (forces, ``1o``; the energy is invariant) and the loss of the
reference model, 10 x MSE(E/N in eV) + MSE(F in eV/A), as :class:`~symplug.MeanTerm`
sums over structures and force components.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from symplug import MeanTerm

from .train import ENERGY_WEIGHT, FORCE_WEIGHT


class StructureBatch(list):
    """A training batch of labelled structures (items with ``n``, ``pos``, ``energy``,
    ``forces`` and ``transformed(g)``)."""


def transform_batch(batch: StructureBatch, matrices: torch.Tensor) -> StructureBatch:
    """Each structure acted on by its own element (``matrices`` (B, 3, 3)), labels kept."""
    return StructureBatch(item.transformed(g)
                          for item, g in zip(batch, torch.as_tensor(matrices)))


def forces_labels(batch: StructureBatch) -> dict[str, torch.Tensor]:
    """The labels that turn: forces (all atoms, 1o); the energy is invariant."""
    return {"forces": torch.cat([item.forces for item in batch])}


def with_forces_labels(batch: StructureBatch, labels: dict[str, torch.Tensor]) -> StructureBatch:
    forces = torch.split(labels["forces"], [item.n for item in batch])
    return StructureBatch(replace(item, forces=f) for item, f in zip(batch, forces))


def energy_forces_targets(batch: StructureBatch) -> dict[str, torch.Tensor]:
    dtype = batch[0].pos.dtype
    return {"energy": torch.tensor([item.energy / item.n for item in batch], dtype=dtype),
            "forces": torch.cat([item.forces for item in batch])}


def energy_forces_loss(batch: StructureBatch,
                       pred: dict[str, torch.Tensor]) -> dict[str, MeanTerm]:
    """10 x mean over structures of (E/N)^2 errors + mean over force components of
    squared errors, as sums and counts (exact when ranks hold different atom counts)."""
    target = energy_forces_targets(batch)
    forces = pred["forces"] - target["forces"]
    return {"energy": MeanTerm((pred["energy"] - target["energy"]).pow(2).sum(),
                               float(len(batch)), ENERGY_WEIGHT),
            "forces": MeanTerm(forces.pow(2).sum(), float(forces.numel()), FORCE_WEIGHT)}


def force_rows(batch: StructureBatch, name: str) -> torch.Tensor | None:
    """The structure of every force row; None for the energy (a row per structure)."""
    if name != "forces":
        return None
    return torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([i.n for i in batch]))

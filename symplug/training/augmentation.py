"""Training batches acted on by group elements: inputs by the task's action, labels by
their declared representations (x -> g x, y -> rho(g) y, one element per batch item)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import SymplugError
from ..records import TrainingTask
from ..representations import representation


def rows_matrices(task: TrainingTask, batch: Any, name: str, rho: torch.Tensor) -> torch.Tensor:
    """rho (B, d, d), one per batch item, expanded to one matrix per row of output ``name``
    (e.g. per atom for forces, through ``task.rows``)."""
    owner = task.rows(batch, name) if task.rows is not None else None
    return rho if owner is None else rho[owner]


def apply(rho: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """rho (R, d, d) acting on values (R, ..., d)."""
    return torch.einsum("rij,r...j->r...i", rho.to(device=values.device, dtype=values.dtype), values)


def augment(task: TrainingTask, batch: Any, matrices: torch.Tensor) -> Any:
    """``batch`` with item b acted on by ``matrices[b]`` ((B, 3, 3) float64): inputs by
    ``task.act``, the labels ``task.labels`` returns by the representations ``task.outputs``
    declares for them."""
    if task.act is None:
        raise SymplugError("this training task declares no action on its batches (act), so "
                           "it cannot be augmented or penalised")
    moved = task.act(batch, matrices)
    if task.labels is None:
        return moved
    labels = {}
    for name, values in task.labels(batch).items():
        if name not in task.outputs:
            raise SymplugError(f"training label {name!r} has no representation: declare it in "
                               "the task's outputs")
        rep = representation(task.outputs[name])
        rho = rows_matrices(task, batch, name, rep.matrices(matrices))
        labels[name] = apply(rho, rep.flatten(values, 1, name)).reshape(values.shape)
    return task.with_labels(moved, labels)

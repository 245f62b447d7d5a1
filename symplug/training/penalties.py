"""The symmetry penalties of the fine-tuning objective, in training units squared:

    P_eq  = sum_outputs w_o * mean |f(h x) - rho(h) f(x)|^2            (h Haar-random)
    P_lie = sum_outputs w_o * sum_J mean |[rho(e^{sJ})^-1 f(e^{sJ} x)
                                       - rho(e^{-sJ})^-1 f(e^{-sJ} x)] / (2 s)|^2

(means over rows and components; J the generators of the group, s the central-difference
step in rad; for an exactly equivariant f both vanish, and P_lie -> sum_J mean |L_J f|^2
as s -> 0). The ``*_sums`` functions give each as a :class:`~symplug.MeanTerm` (sum and
count) for the data-parallel reduction.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..groups import Group
from ..records import MeanTerm, TrainingTask
from ..representations import representation
from .augmentation import apply, augment, rows_matrices


def equivariance_sums(task: TrainingTask, batch: Any,
                      predictions: Mapping[str, torch.Tensor],
                      matrices: torch.Tensor) -> dict[str, MeanTerm]:
    """{output: MeanTerm(sum |f(h x) - rho(h) f(x)|^2, rows x components)}."""
    moved = task.predict(augment(task, batch, matrices))
    out = {}
    for name, spec in task.outputs.items():
        rep = representation(spec)
        y = rep.flatten(predictions[name], 1, name)
        rho = rows_matrices(task, batch, name, rep.matrices(matrices))
        diff = rep.flatten(moved[name], 1, name) - apply(rho, y)
        out[name] = MeanTerm(diff.pow(2).sum(), float(diff.numel()))
    return out


def equivariance_penalty(task: TrainingTask, batch: Any,
                         predictions: Mapping[str, torch.Tensor],
                         matrices: torch.Tensor) -> dict[str, torch.Tensor]:
    """{output: mean |f(h x) - rho(h) f(x)|^2} for the (B, 3, 3) elements ``matrices``
    (one per batch item), in training units squared (differentiable)."""
    return {k: v.value for k, v in
            equivariance_sums(task, batch, predictions, matrices).items()}


def lie_sums(task: TrainingTask, batch: Any, size: int, group: Group,
             step: float) -> dict[str, MeanTerm]:
    """{output: MeanTerm(sum_J sum |L_J f|^2, rows x components)}."""
    n = int(size)
    totals: dict[str, Any] = {name: 0.0 for name in task.outputs}
    counts = {name: 0.0 for name in task.outputs}
    for j in group.generators().values():
        terms = []
        for sign in (1.0, -1.0):
            mats = torch.linalg.matrix_exp(sign * step * j)[None].expand(n, 3, 3).contiguous()
            pred = task.predict(augment(task, batch, mats))
            terms.append((mats, pred))
        for name, spec in task.outputs.items():
            rep = representation(spec)
            back = []
            for mats, pred in terms:
                rho = rows_matrices(task, batch, name, rep.matrices(mats))
                back.append(apply(rho.transpose(1, 2), rep.flatten(pred[name], 1, name)))
            diff = (back[0] - back[1]) / (2 * step)
            totals[name] = totals[name] + diff.pow(2).sum()
            counts[name] = float(diff.numel())
    return {name: MeanTerm(totals[name], counts[name]) for name in task.outputs}


def lie_penalty(task: TrainingTask, batch: Any, size: int, group: Group | str,
                step: float = 1e-2) -> dict[str, torch.Tensor]:
    """{output: sum_J mean |L_J f|^2} with the Lie derivative L_J f of every generator J
    by a rho-corrected central difference of step ``step`` rad (exactly zero for an
    exactly equivariant f; for f = v + w, v equivariant and w constant, it equals
    (sin s / s)^2 sum_J |J w|^2 / d over the rotation generators, d the number of
    components, the mean running over components). ``size``: the number of items in
    ``batch``; ``group`` a :class:`~symplug.Group` (a name: about z)."""
    group = Group.parse(group)
    return {k: v.value for k, v in lie_sums(task, batch, size, group, step).items()}

"""One step's objective, loss + W_eq * P_eq + W_lie * P_lie, as a module that
DistributedDataParallel can wrap.

Every term is a :class:`~symplug.MeanTerm` (a sum and its count); the counts and detached
totals of all terms go in one float64 all-reduce (SUM), so that the gradients of W ranks
equal the one-process gradients (docs/training.md).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.distributed as dist

from ..errors import SymplugError
from ..groups import Group
from ..records import MeanTerm, TrainingTask
from .augmentation import augment
from .config import FinetuneConfig
from .distributed import World, module_device
from .penalties import equivariance_sums, lie_sums

PARTS = ("supervised", "penalty_equivariance", "penalty_lie")


def loss_terms(value: Any) -> dict[str, MeanTerm]:
    """A task's loss as {name: MeanTerm}: a dict of MeanTerms as is, a scalar tensor as
    one term of count 1 (averaged over data-parallel ranks)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return {"loss": MeanTerm(value, 1.0)}
    if isinstance(value, Mapping) and value and all(
            isinstance(t, MeanTerm) and isinstance(t.total, torch.Tensor) and t.total.dim() == 0
            for t in value.values()):
        return dict(value)
    raise SymplugError("TrainingTask.loss must return a scalar tensor or a non-empty "
                       f"{{name: MeanTerm}} of scalar totals, got {type(value).__name__}")


class Objective(torch.nn.Module):
    """One step's objective as a module that holds ``task.module``: predictions, loss and
    penalties run inside its forward, so DistributedDataParallel (which reduces the
    gradients of a backward only after its own forward ran) wraps all of them.

    Each rank's objective is ``W sum_t factor_t weight_t total_t / global_count_t``: DDP
    averages the gradients over the W ranks, so they equal the one-process gradient.
    ``logged`` holds the global values of the last step (identical on every rank)."""

    def __init__(self, task: TrainingTask, config: FinetuneConfig, group: Group | None,
                 world: World):
        super().__init__()
        self.model = task.module
        self.task, self.config, self.group, self.world = task, config, group, world
        self.factors = {"supervised": 1.0, "penalty_equivariance": config.penalty_equivariance,
                        "penalty_lie": config.penalty_lie}
        self.keys: list[tuple[str, str, float]] | None = None  # (part, name, weight), agreed
        self.logged: dict[str, float] = {}

    def terms(self, batch: Any, n: int, augment_by: torch.Tensor | None,
              compare: torch.Tensor | None) -> dict[tuple[str, str], MeanTerm]:
        """{(part, name): MeanTerm} of this rank's ``n`` items: ``batch`` transformed by
        ``augment_by`` (B, 3, 3) if given; the equivariance penalty against ``compare``."""
        task, config = self.task, self.config
        if augment_by is not None:
            batch = augment(task, batch, augment_by)
        predictions = task.predict(batch)
        terms = {("supervised", k): t
                 for k, t in loss_terms(task.loss(batch, predictions)).items()}
        penalties = {}
        if compare is not None:
            penalties["penalty_equivariance"] = equivariance_sums(task, batch, predictions,
                                                                  compare)
        if config.penalty_lie:
            penalties["penalty_lie"] = lie_sums(task, batch, n, self.group, config.lie_step)
        for part, sums in penalties.items():
            for k, t in sums.items():
                terms[(part, k)] = MeanTerm(t.total, t.count, float(task.output_weights.get(k, 1.0)))
        return terms

    def agree(self, terms: Mapping[tuple[str, str], MeanTerm]) -> list[tuple[str, str, float]]:
        """The terms' (part, name, weight) in reduction order: rank 0's, sent once (a rank
        without items this step has none of its own); checked on every step."""
        mine = [(part, name, float(t.weight)) for (part, name), t in terms.items()]
        if self.keys is None:
            shared = [mine]
            if self.world.size > 1:
                dist.broadcast_object_list(shared, src=0)
            self.keys = [tuple(k) for k in shared[0]]
        if terms and mine != self.keys:
            raise SymplugError(f"the loss terms changed from {self.keys} to {mine}: a "
                               "TrainingTask.loss must return the same names and weights for "
                               "every batch")
        return self.keys

    def forward(self, batch: Any, n: int, augment_by: torch.Tensor | None = None,
                compare: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's share of the objective (see the class docstring); sets ``logged``."""
        terms = self.terms(batch, n, augment_by, compare) if n else {}
        keys = self.agree(terms)
        device = module_device(self.model)
        local = torch.zeros(2, len(keys), dtype=torch.float64, device=device)
        if terms:
            local[0] = torch.tensor([float(terms[k[:2]].count) for k in keys], dtype=torch.float64)
            local[1] = torch.stack([terms[k[:2]].total.detach().to(torch.float64).reshape(())
                                    for k in keys])
        if self.world.size > 1:
            dist.all_reduce(local)
        counts, totals = local.tolist()
        objective = None
        values = dict.fromkeys(p for p in PARTS if any(k[0] == p for k in keys))
        for (part, name, weight), count, total in zip(keys, counts, totals):
            if count <= 0:
                continue
            values[part] = (values[part] or 0.0) + weight * total / count
            if terms:
                coef = self.factors[part] * weight / count
                term = terms[(part, name)].total * (self.world.size * coef)
                objective = term if objective is None else objective + term
        self.logged = {"loss": sum(self.factors[p] * (v or 0.0) for p, v in values.items()),
                       **{p: v or 0.0 for p, v in values.items()}}
        # every parameter takes part (zero weight): DDP needs no search for unused
        # parameters, and a rank without items this step contributes zero gradients
        anchor = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return anchor if objective is None else objective + anchor

"""A tagger ``f(p4, mask) -> scores`` as a symplug model on rotated jet blocks."""

from __future__ import annotations

from typing import Callable

import torch

from symplug import SymplugError


class CallableTagger:
    """A tagger ``f(p4, mask)`` as a symplug model on rotated jet blocks; ``units``: what
    its score is (``"probability"``, ``"logit"`` or a physical unit such as ``"GeV^2"``)."""

    def __init__(self, fn: Callable, name: str = "tagger", units: str = "probability"):
        if not callable(fn):
            raise SymplugError(f"tagger {name!r} is not callable")
        self.fn, self.name, self.units = fn, name, str(units)

    @property
    def output_units(self) -> dict[str, str]:
        """``{"score": units}``: the units of the score this tagger returns."""
        return {"score": self.units}

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        raw = self.fn(batch["p4"], batch["mask"])
        scores = _as_scores(raw, self.name)
        n = batch["p4"].shape[0]
        if scores.ndim not in (1, 2) or scores.shape[0] != n:
            raise SymplugError(f"tagger {self.name!r} returned {tuple(scores.shape)} scores for "
                               f"{n} jets; expected (N,) or (N, C)")
        return {"score": scores.reshape(batch["copies"], batch["jets"], *scores.shape[1:])}

    def __repr__(self) -> str:
        return f"CallableTagger({self.name})"


def _as_scores(raw, name: str) -> torch.Tensor:
    """A tagger's output as a real tensor: tensors, numpy arrays and lists of numbers;
    integer or bool scores (hard decisions) become float64."""
    try:
        scores = torch.as_tensor(raw)
    except Exception as exc:
        raise SymplugError(f"tagger {name!r} returned a {type(raw).__name__}, not scores "
                           "(a tensor or array of numbers)") from exc
    if scores.is_complex():
        raise SymplugError(f"tagger {name!r} returned complex scores ({scores.dtype})")
    return scores if scores.is_floating_point() else scores.to(torch.float64)

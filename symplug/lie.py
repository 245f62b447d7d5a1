"""Lie derivatives: the local (infinitesimal) equivariance error (Gruver et al. 2023).

For a generator J and an output with representation rho,

    L_J y(x) = d/dt rho(e^{tJ})^-1 y(e^{tJ} x) |_{t=0} = d/dt y(e^{tJ} x) - d rho(J) y(x),

which vanishes for an equivariant output. One forward-mode JVP per generator
gives it for every output and, through forward hooks, the tangent d/dt u(e^{tJ} x)
of every named hidden layer (its invariance Lie derivative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.autograd.forward_ad as fwAD

from .errors import SymplugError
from .groups import DTYPE, generators
from .orbit import Action, LayerCapture, call_model, default_split_layer
from .representations import Representation, representation


@dataclass(frozen=True)
class LieDerivative:
    """RMS over components of L_J y (``rms``, output units per radian) and its
    ratio to the RMS of y (``relative``), for one output or layer and generator."""

    rms: float
    relative: float
    value: torch.Tensor

    def to_dict(self) -> dict:
        return {"rms": self.rms, "relative": self.relative}


def _summary(value: torch.Tensor, primal: torch.Tensor) -> LieDerivative:
    rms = math.sqrt(float((value ** 2).mean())) if value.numel() else 0.0
    scale = math.sqrt(float((primal ** 2).mean())) if primal.numel() else 0.0
    return LieDerivative(rms, rms / scale if scale > 0 else 0.0, value)


def lie_derivatives(model: Callable, sample: Any, action: Action, *,
                    outputs: Mapping[str, str | Representation], layers: Sequence[str] = (),
                    group: str = "SO3", axis: Sequence[float] = (0.0, 0.0, 1.0),
                    split_layer: Callable | None = None) -> dict[str, dict[str, LieDerivative]]:
    """{output or layer name: {generator name: LieDerivative}} at the input ``sample``.

    ``action(sample, matrices)`` must be differentiable in ``matrices`` (a
    (1, 3, 3) tensor carrying a forward-mode tangent J); hidden layers are
    treated as invariant features (their tangent is reported).
    """
    reps = {name: representation(rep) for name, rep in outputs.items()}
    split = split_layer or default_split_layer
    found: dict[str, dict[str, LieDerivative]] = {n: {} for n in list(reps) + list(layers)}
    eye = torch.eye(3, dtype=DTYPE)[None]
    for gen_name, j in generators(group, axis).items():
        with LayerCapture(model, layers) as capture, fwAD.dual_level():
            mats = fwAD.make_dual(eye.clone(), j[None].clone())  # tangent of e^{tJ} at t = 0
            result = call_model(model, action(sample, mats))
            for name, rep in reps.items():
                if name not in result:
                    raise SymplugError(f"model produced no output {name!r}; it has {sorted(result)}")
                primal, tangent = fwAD.unpack_dual(result[name])
                y = rep.flatten(primal.detach().to(DTYPE), 1, name)
                dy = (torch.zeros_like(y) if tangent is None
                      else rep.flatten(tangent.detach().to(DTYPE), 1, name))
                lie = dy - torch.einsum("ij,b...j->b...i", rep.generator(j), y)
                found[name][gen_name] = _summary(lie[0], y[0])
            for name in layers:
                primal, tangent = fwAD.unpack_dual(capture.values.pop(name))
                u = split(name, primal.detach().to(DTYPE), 1)
                du = (torch.zeros_like(u) if tangent is None
                      else split(name, tangent.detach().to(DTYPE), 1))
                found[name][gen_name] = _summary(du[0], u[0])
    return found

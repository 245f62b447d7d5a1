"""Lie derivatives: the local (infinitesimal) equivariance error (Gruver et al. 2023).

For a generator J and an output with representation rho,

    L_J y(x) = d/dt rho(e^{tJ})^-1 y(e^{tJ} x) |_{t=0} = d/dt y(e^{tJ} x) - d rho(J) y(x),

which vanishes for an equivariant output. One forward-mode JVP per generator
gives d/dt y(e^{tJ} x) for every output and, through forward hooks, the tangent
d/dt u(e^{tJ} x) of every named hidden layer (its invariance Lie derivative).
Models with operations lacking forward-mode rules (custom autograd functions)
fall back to a fourth-order central difference on exact rotations e^{+-hJ},
e^{+-2hJ} (truncation error ~ h^4, h = 1e-3).

The mathematics and design: docs/design.md, section 1.6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.autograd.forward_ad as fwAD

from .errors import SymplugError
from .groups import DTYPE, Group
from .orbit import Action, LayerCapture, call_model, default_split_layer
from .representations import Representation, representation

METHODS = ("auto", "forward", "central")
CENTRAL_STEP = 1e-3


@dataclass(frozen=True)
class LieDerivative:
    """RMS over components of L_J y (``rms``, output units per radian) and its
    ratio to the RMS of y (``relative``), for one output or layer and generator."""

    rms: float
    relative: float
    value: torch.Tensor
    method: str

    def to_dict(self) -> dict:
        return {"rms": self.rms, "relative": self.relative, "method": self.method}


def _evaluate(model, sample, action, mats, outputs, layers, split) -> dict[str, torch.Tensor]:
    """Outputs and captured layers (copy axis removed) for the (1, 3, 3) element ``mats``."""
    with LayerCapture(model, layers) as capture:
        result = call_model(model, action(sample, mats))
        missing = [name for name in outputs if name not in result]
        if missing:
            raise SymplugError(f"model produced no output {missing[0]!r}; it has {sorted(result)}")
        found = {name: result[name] for name in outputs}
        found.update({name: split(name, capture.values.pop(name), 1) for name in layers})
    return found


def _forward_tangents(model, sample, action, j, outputs, layers, split):
    eye = torch.eye(3, dtype=DTYPE)[None]
    with fwAD.dual_level():
        mats = fwAD.make_dual(eye.clone(), j[None].clone())  # tangent of e^{tJ} at t = 0
        found = _evaluate(model, sample, action, mats, outputs, layers, split)
        primal, tangent = {}, {}
        for name, value in found.items():
            p, t = fwAD.unpack_dual(value)
            primal[name] = p.detach().to(DTYPE)[0]
            tangent[name] = (torch.zeros_like(primal[name]) if t is None
                             else t.detach().to(DTYPE)[0])
    return primal, tangent


def _central_tangents(model, sample, action, j, outputs, layers, split, h=CENTRAL_STEP):
    def at(t: float) -> dict[str, torch.Tensor]:
        mats = torch.linalg.matrix_exp(t * j)[None]
        with torch.no_grad():
            return {k: v.detach().to(DTYPE)[0]
                    for k, v in _evaluate(model, sample, action, mats, outputs, layers,
                                          split).items()}

    f0, p1, m1, p2, m2 = at(0.0), at(h), at(-h), at(2 * h), at(-2 * h)
    tangent = {k: (8 * (p1[k] - m1[k]) - (p2[k] - m2[k])) / (12 * h) for k in f0}
    return f0, tangent


def _summary(value: torch.Tensor, primal: torch.Tensor, method: str) -> LieDerivative:
    rms = math.sqrt(float((value ** 2).mean())) if value.numel() else 0.0
    scale = math.sqrt(float((primal ** 2).mean())) if primal.numel() else 0.0
    return LieDerivative(rms, rms / scale if scale > 0 else 0.0, value, method)


def lie_derivatives(model: Callable, sample: Any, action: Action, *,
                    outputs: Mapping[str, str | Representation], layers: Sequence[str] = (),
                    group: str | Group = "SO3", axis: Sequence[float] | None = None,
                    split_layer: Callable | None = None,
                    method: str = "auto") -> dict[str, dict[str, LieDerivative]]:
    """{output or layer name: {generator name: LieDerivative}} at the input ``sample``.

    ``method``: ``"forward"`` (forward-mode AD; ``action`` must be differentiable
    in the (1, 3, 3) matrices), ``"central"`` (finite differences on exact
    rotations) or ``"auto"`` (forward, falling back to central where the model
    has no forward-mode rule). Hidden layers are treated as invariant features.
    ``group``: a :class:`~symplug.groups.Group`, or its name with SO2/O2 about ``axis``
    (default z); one derivative per generator (:meth:`~symplug.groups.Group.generators`).
    """
    if method not in METHODS:
        raise SymplugError(f"unknown Lie derivative method {method!r}; expected {METHODS}")
    reps = {name: representation(rep) for name, rep in outputs.items()}
    split = split_layer or default_split_layer
    found: dict[str, dict[str, LieDerivative]] = {n: {} for n in list(reps) + list(layers)}
    for gen_name, j in Group.parse(group, axis).generators().items():
        args = (model, sample, action, j, list(reps), list(layers), split)
        used = "central" if method == "central" else "forward"
        if used == "forward":
            try:
                primal, tangent = _forward_tangents(*args)
            except (NotImplementedError, RuntimeError) as exc:
                if method == "forward":
                    raise SymplugError(f"forward-mode AD failed on this model ({exc}); "
                                       "use method='central'") from exc
                used = "central"
        if used == "central":
            primal, tangent = _central_tangents(*args)
        for name, rep in reps.items():
            y = rep.flatten(primal[name], 0, name)
            lie = rep.flatten(tangent[name], 0, name) - torch.einsum(
                "ij,...j->...i", rep.generator(j), y)
            found[name][gen_name] = _summary(lie, y, used)
        for name in layers:
            found[name][gen_name] = _summary(tangent[name], primal[name], used)
    return found

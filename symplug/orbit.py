"""Orbit evaluation: run a model on transformed copies of one input, chunk by chunk.

The domain supplies ``action(sample, matrices) -> batch`` (B transformed copies
of ``sample`` for the (B, 3, 3) group elements, tokens kept in the same order)
and the model maps a batch to ``{output_name: tensor (B, ...)}``. Named hidden
layers are captured with forward hooks and split into copies by
``split_layer(name, tensor, B) -> (B, ...)``. Each chunk is streamed into the
metric accumulators and dropped; chunks are sized against the memory budget
(:func:`symplug.memory.chunks`: one copy first, then as many as the measured cost
per copy allows, at most ``chunk_size``).

The mathematics and design: docs/design.md, section 2.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .equivariance import EquivarianceAccumulator, EquivarianceError
from . import memory
from .errors import SymplugError
from .precision import values_dtype, widest
from .protocols import SplitsLayers, WrapsModule
from .quadrature import Grid
from .representations import Representation, representation
from .spectra import Spectrum, SpectrumAccumulator

Action = Callable[[Any, torch.Tensor], Any]
SplitLayer = Callable[[str, torch.Tensor, int], torch.Tensor]


def default_split_layer(name: str, tensor: torch.Tensor, copies: int) -> torch.Tensor:
    """Split a copy-major activation (B*T, ..., F) into (B, T, ..., F), keeping the feature axis."""
    if tensor.ndim == 0 or tensor.shape[0] % copies:
        raise SymplugError(f"layer {name!r}: leading axis of shape {tuple(tensor.shape)} is not a "
                           f"multiple of the {copies} copies in the batch; give the domain a "
                           "split_layer")
    return tensor.reshape(copies, -1, *tensor.shape[1:])


def find_module(model: Any) -> torch.nn.Module | None:
    """The torch module whose submodules name the layers: the model or ``model.module``."""
    if isinstance(model, torch.nn.Module):
        return model
    module = model.module if isinstance(model, WrapsModule) else None
    return module if isinstance(module, torch.nn.Module) else None


class LayerCapture:
    """Forward hooks that keep the latest output of each named submodule."""

    def __init__(self, model: Any, layers: Sequence[str]):
        self.layers = list(layers)
        self.values: dict[str, torch.Tensor] = {}
        self._handles = []
        if not self.layers:
            return
        module = find_module(model)
        if module is None:
            raise SymplugError("hidden layers can only be captured from a torch.nn.Module "
                               "(or a wrapper with a .module attribute)")
        names = dict(module.named_modules())
        for name in self.layers:
            if name not in names:
                known = ", ".join(n for n in list(names)[1:12] if n)
                raise SymplugError(f"model has no layer {name!r}; some layers it has: {known}")
            self._handles.append(names[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            value = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(value, torch.Tensor):
                raise SymplugError(f"layer {name!r} returned {type(value).__name__}, not a tensor")
            self.values[name] = value
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "LayerCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call_model(model: Callable, batch: Any) -> Mapping[str, torch.Tensor]:
    """Call the model; a bare tensor result is named ``"output"``."""
    out = model(batch)
    if isinstance(out, torch.Tensor):
        return {"output": out}
    if not isinstance(out, Mapping):
        raise SymplugError(f"model returned {type(out).__name__}; expected a tensor or a "
                           "mapping of output names to tensors")
    return out


@dataclass
class OrbitResult:
    """Metrics of one input: A and B per output, B per hidden layer.

    ``breaking_spectra[name]`` is B of the back-transformed response
    z(g) = rho(g)^-1 y(g x) around the first one, z(g) - z(g_0): its power outside
    the invariant sector sums to A^2 (all components), so its sectors say where the
    breaking lies. The constant shift changes only the invariant sector (on exact
    grids), and keeps a large invariant part from leaking into the other sectors of
    Monte Carlo estimates.
    """

    outputs: dict[str, EquivarianceError] = field(default_factory=dict)
    output_spectra: dict[str, Spectrum] = field(default_factory=dict)
    layers: dict[str, Spectrum] = field(default_factory=dict)
    breaking_spectra: dict[str, Spectrum] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # kept outputs, (grid, ...)
    dtypes: dict[str, str | None] = field(default_factory=dict)  # precision.values_dtype


def _check_finite(values: torch.Tensor, what: str, index: slice) -> None:
    """Raise naming ``what`` and the first grid element (of the chunk ``index``) whose
    values hold NaN or inf: a model's non-finite output is an error, never a 0."""
    bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        first = index.start + int(bad.nonzero()[0, 0])
        raise SymplugError(f"{what} is not finite (NaN or inf) on {int(bad.sum())} of the "
                           f"{values.shape[0]} copies of a model call, first on grid element "
                           f"{first}")


def evaluate_orbit(model: Callable, sample: Any, action: Action, grid: Grid, *,
                   outputs: Mapping[str, str | Representation],
                   layers: Sequence[str] = (), lmax: int | None = None,
                   chunk_size: int = 64, split_layer: SplitLayer | None = None,
                   progress: Callable[[int], None] | None = None,
                   keep: Sequence[str] = ()) -> OrbitResult:
    """Evaluate ``model`` on the orbit of ``sample`` over ``grid`` and measure A and B.

    ``outputs`` maps output names to their representations; ``layers`` names
    submodules whose activations are captured, split into copies by ``split_layer``,
    else by the model's own ``split_layer`` method, else copy-major. ``progress(n)``
    is called with the number of grid elements done after each chunk. The values of
    the outputs named in ``keep`` are kept, in grid order (``OrbitResult.values``).
    ``OrbitResult.dtypes`` holds per output the narrowest dtype that holds all its
    values (:func:`symplug.precision.values_dtype`, the widest over chunks).
    """
    split = split_layer or (model.split_layer if isinstance(model, SplitsLayers) else None) \
        or default_split_layer
    reps = {name: representation(rep) for name, rep in outputs.items()}
    acc_a = {n: EquivarianceAccumulator(grid, r, name=n) for n, r in reps.items()}
    acc_b = {n: SpectrumAccumulator(grid, lmax) for n in list(reps) + list(layers)}
    acc_z = {n: SpectrumAccumulator(grid, lmax) for n in reps}
    refs: dict[str, torch.Tensor] = {}  # z(g_0): the breaking spectrum is taken around it
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in keep}
    dtypes: dict[str, str | None] = {}
    with LayerCapture(model, layers) as capture:
        for index in memory.chunks(grid.size, chunk_size, "copies"):
            mats = grid.matrices[index]
            copies = mats.shape[0]
            result = call_model(model, action(sample, mats))
            for name in reps:
                if name not in result:
                    raise SymplugError(f"model produced no output {name!r}; it has "
                                       f"{sorted(result)}")
                value = result[name].detach()
                if value.shape[0] != copies:
                    raise SymplugError(f"output {name!r} has leading size {value.shape[0]} for "
                                       f"{copies} copies; outputs must be (copies, ...)")
                _check_finite(value, f"output {name!r}", index)
                dtypes[name] = widest([dtypes.get(name), values_dtype(value)])
                z = acc_a[name].update(value, index)
                acc_z[name].update(z - refs.setdefault(name, z[0].clone()), index)
                acc_b[name].update(value, index)
                if name in kept:
                    kept[name].append(value)
            for name in layers:
                if name not in capture.values:
                    raise SymplugError(f"layer {name!r} was not called during the forward pass")
                acts = split(name, capture.values.pop(name).detach(), copies)
                _check_finite(acts, f"layer {name!r}", index)
                acc_b[name].update(acts, index)
            if progress is not None:
                progress(copies)
    return OrbitResult({n: a.result() for n, a in acc_a.items()},
                       {n: acc_b[n].result() for n in reps},
                       {n: acc_b[n].result() for n in layers},
                       {n: a.result() for n, a in acc_z.items()},
                       {n: torch.cat(v) for n, v in kept.items()}, dtypes)

"""What the engine may ask of a model: one required call and a few optional abilities.

A model is anything :class:`Model` describes: called on a domain batch (the copies
g_q x of one sample that ``Domain.act`` made) it returns ``{output: tensor (copies,
...)}``. The engine asks for nothing else; a model that has one of the abilities below
is used through it, checked with ``isinstance`` (the protocols are runtime checkable).

The mathematics and design: docs/design.md, section 2.3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Model(Protocol):
    """``model(batch) -> {output: tensor (copies, ...)}``, outputs in their declared
    representations and units."""

    def __call__(self, batch: Any) -> Mapping[str, "torch.Tensor"]: ...


@runtime_checkable
class WrapsModule(Protocol):
    """A wrapper whose ``module`` holds the torch layers that ``--layers`` names (a
    ``torch.nn.Module`` model needs no wrapper)."""

    module: "torch.nn.Module"


@runtime_checkable
class SplitsLayers(Protocol):
    """A model whose captured activations are not copy-major: ``split_layer(name, tensor,
    copies)`` returns them as (copies, ...) (else the domain's, else reshape(copies, -1))."""

    def split_layer(self, name: str, tensor: "torch.Tensor", copies: int) -> "torch.Tensor": ...


@runtime_checkable
class SelectsOutputs(Protocol):
    """A model that computes only the outputs asked for: ``for_outputs(reps, optional)``
    returns the model to evaluate and the output names it computes, dropping the
    ``optional`` ones (defaults, not asked for by the user) it lacks."""

    def for_outputs(self, reps: Mapping[str, str],
                    optional: Collection[str]) -> tuple["Model", Collection[str]]: ...


@runtime_checkable
class StatesUnits(Protocol):
    """A model that states the units of its outputs (e.g. a tagger's score: probability or
    logit), which then replace the domain's."""

    output_units: Mapping[str, str]


@runtime_checkable
class StatesPrecision(Protocol):
    """A model that states the floating-point format it computes in (a dtype name, e.g.
    ``"float32"`` from a metatomic model's capabilities), which the diagnosis then uses
    unless the user declares another (symplug/precision.py)."""

    compute_dtype: str


@runtime_checkable
class TrainingSnapshot(Protocol):
    """A model read from a training checkpoint (e.g. metatrain's): ``as_trained()`` gives
    the weights the training had at that epoch (not its best so far), ``epoch`` the epoch
    (None when unknown)."""

    epoch: int | None

    def as_trained(self) -> "Model": ...

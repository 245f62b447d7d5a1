"""The floating-point precision a model computes in, and the round-off threshold it sets.

An exactly equivariant model still shows an equivariance error A: the round-off of
the precision it computes in (float32 autograd forces reach a relative A of a few
1e-6, float64 codes 1e-16 to 1e-13). :func:`equivariant_relative` turns a
:class:`Precision` into the relative A below which an output counts as equivariant;
the findings (symplug/findings.py), the convergence ranking (symplug/diagnose.py) and
the report's "exact" verdict (symplug/report.py) all read it from here.

How a diagnosis finds the precision (symplug/diagnose.py), first that applies:

1. ``"declared"``: the user says it (``diagnose(..., precision="float32")``,
   ``symplug diagnose --precision float32``);
2. ``"model"``: the model states it (:class:`~symplug.protocols.StatesPrecision`,
   e.g. a metatomic model's ``capabilities().dtype``: its wrapper returns float64
   values in other units, from which the format cannot be read);
3. ``"parameters"``: the widest dtype of the floating parameters and buffers of a
   torch model (the model, or the module a :class:`~symplug.protocols.WrapsModule`
   holds): :func:`module_dtype`;
4. ``"outputs"``: the widest across outputs of :func:`values_dtype`, the narrowest
   dtype that holds every output value the orbit pass saw (a float32 model behind a
   wrapper that returns float64, e.g. CHGNet through ASE, reads float32).

A result without a precision (an older symplug) reads as float64, ``"assumed"``.

The mathematics and design: docs/design.md, section 1.9; docs/findings.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import SymplugError

if TYPE_CHECKING:
    import torch

# Machine epsilon (the spacing of numbers just above 1) of each floating-point format.
EPSILON: dict[str, float] = {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10,
                             "float32": 2.0 ** -23, "float64": 2.0 ** -52}
DTYPES = tuple(EPSILON)  # narrowest (largest epsilon) first
SOURCES = ("declared", "model", "parameters", "outputs", "assumed")

# An output whose relative equivariance error is below ROUND_OFF_ULPS machine epsilons
# counts as equivariant (float32: 1.2e-4), but never below ROUND_OFF_FLOOR (float64:
# 1e-11, not 2.2e-13) nor above ROUND_OFF_CEILING. Measured round-off of exactly
# invariant models, relative A: float32 energies ~5e-8 and autograd forces 2e-6 to
# 6e-6 (CHGNet: ~50 ulps; tests/test_precision.py: 16 ulps), so 1000 ulps leaves float32
# a margin of 20x. float64 autograd forces reach 4e-15 (17 ulps), but ASE's EMT, a
# float64 code summing over neighbour lists and virials, gives stress 1.1e-13 (500 ulps)
# on 32-atom Cu cells (round-off grows with the sums): 1000 ulps (2.2e-13) would leave it 2x
# and flag exact float64 models (the convergence check ranks A's change against this
# threshold, so an A of half of it that moves by 7 % was an "aliasing" warning). The
# floor gives float64 a margin of ~100x; a breaking below 1e-11 of an output's
# magnitude is nothing a learned model can be told to fix.
ROUND_OFF_ULPS = 1000
ROUND_OFF_FLOOR = 1e-11
# In half precision 1000 ulps would be 0.98 (float16) or 7.8 (bfloat16), calling any
# model exact. At 1 % (the report's bound of a "learned" symmetry), "exact" never
# outranks a breaking the verdicts would call learned; a half-precision model may then
# show findings that are round-off.
ROUND_OFF_CEILING = 1e-2


@dataclass(frozen=True)
class Precision:
    """The floating-point format a model computes in (``dtype``: one of
    :data:`DTYPES`) and how it was found (``source``: one of :data:`SOURCES`)."""

    dtype: str
    source: str

    def __post_init__(self) -> None:
        if self.dtype not in EPSILON:
            raise SymplugError(f"precision {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.source not in SOURCES:
            raise SymplugError(f"precision source {self.source!r} is not one of "
                               f"{', '.join(SOURCES)}")

    @property
    def epsilon(self) -> float:
        """Machine epsilon of :attr:`dtype`."""
        return EPSILON[self.dtype]

    @property
    def equivariant_relative(self) -> float:
        """The relative A below which an output is round-off (:func:`equivariant_relative`)."""
        return equivariant_relative(self)

    def to_dict(self) -> dict:
        """The README "Result format" record: dtype, epsilon, source."""
        return {"dtype": self.dtype, "epsilon": self.epsilon, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Precision:
        """The record of :meth:`to_dict`; None (a result of an older symplug) reads as
        :data:`ASSUMED`."""
        return ASSUMED if d is None else cls(d["dtype"], d.get("source", "assumed"))


ASSUMED = Precision("float64", "assumed")


def equivariant_relative(precision: Precision | Mapping | None) -> float:
    """The relative equivariance error A / |y| (dimensionless) below which an output of
    a model computing in ``precision`` counts as equivariant: :data:`ROUND_OFF_ULPS`
    machine epsilons, at least :data:`ROUND_OFF_FLOOR` and at most
    :data:`ROUND_OFF_CEILING` (bfloat16, float16: 1e-2; float32: 1.2e-4; float64: 1e-11).
    ``precision`` may be a result's JSON record; None is float64 (:data:`ASSUMED`)."""
    if not isinstance(precision, Precision):
        precision = Precision.from_dict(precision)
    return min(max(ROUND_OFF_ULPS * precision.epsilon, ROUND_OFF_FLOOR), ROUND_OFF_CEILING)


def dtype_name(dtype: Any) -> str | None:
    """``"float32"`` for ``torch.float32``, ``numpy.float32`` or ``"float32"``; None for a
    non-floating or unknown dtype."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("torch.")
    name = {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
    return name if name in EPSILON else None


def widest(dtypes: Iterable[str | None]) -> str | None:
    """The most precise (smallest epsilon) of ``dtypes``; None if none is given."""
    known = [d for d in dtypes if d is not None]
    return min(known, key=EPSILON.__getitem__) if known else None


def values_dtype(values: "torch.Tensor") -> str | None:
    """The narrowest dtype that holds every one of ``values`` exactly: the tensor's own
    dtype, except that a float64 tensor of float32 numbers (a float32 model behind a
    float64 wrapper) is float32; None for a non-floating tensor. The half precisions
    are not inferred from float64 values: zeros and small integers are exact in every
    format, so a float64 model's counts would read half precision (declare it, or let
    the parameters say it)."""
    import torch

    name = dtype_name(values.dtype)
    if name == "float64" and bool((values == values.to(torch.float32).to(values.dtype)).all()):
        return "float32"
    return name


def module_dtype(module: "torch.nn.Module | None") -> str | None:
    """The widest dtype of ``module``'s floating parameters and buffers; None without
    a module or floating ones."""
    if module is None:
        return None
    tensors = list(module.parameters()) + list(module.buffers())
    return widest(dtype_name(t.dtype) for t in tensors if t.is_floating_point())


def declared_precision(precision: str | None) -> Precision | None:
    """The precision the user declares (a dtype name, e.g. ``"float32"``); None for
    None or ``"auto"`` (found from the model)."""
    if precision is None or precision == "auto":
        return None
    name = dtype_name(precision)
    if name is None:
        raise SymplugError(f"precision {precision!r} is not auto or one of {', '.join(DTYPES)}")
    return Precision(name, "declared")


def resolve_precision(declared: Precision | None, module: "torch.nn.Module | None",
                      outputs: Iterable[str | None], stated: str | None = None) -> Precision:
    """The precision of a diagnosis: the ``declared`` one, else the one the model
    ``stated``, else the :func:`module_dtype` of the model's torch ``module``, else the
    widest of the ``outputs`` dtypes the orbit pass saw (:func:`values_dtype`), else
    float64 (:data:`ASSUMED`)."""
    if declared is not None:
        return declared
    if stated is not None:
        name = dtype_name(stated)
        if name is None:
            raise SymplugError(f"the model states precision {stated!r}, not one of "
                               f"{', '.join(DTYPES)}")
        return Precision(name, "model")
    name = module_dtype(module)
    if name is not None:
        return Precision(name, "parameters")
    name = widest(outputs)
    return ASSUMED if name is None else Precision(name, "outputs")

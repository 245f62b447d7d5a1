"""Metric A: the equivariance error of an output with a declared representation.

    z(g; x) = rho(g)^-1 y(g x),  Pi(x) = int z dmu,  A(x)^2 = int |z|^2 dmu - |Pi|^2

``variance`` is A^2 / d with d the number of components (all atoms x 3 for
forces), ``rmse`` its square root, in the output's own units. Sums are float64
and taken around a reference response (the first z seen) so that A^2 does not
suffer cancellation; a variance negative beyond round-off means the grid
aliases the response and raises :class:`AliasingError`.

The mathematics and design: docs/design.md, section 1.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import reduce

import torch

from .errors import AliasingError, GridError
from .groups import DTYPE
from .quadrature import Grid
from .representations import Representation, representation
from .spectra import JACKKNIFE_GROUPS, ROUNDOFF, _jackknife


def back_transform(values: torch.Tensor, grid: Grid, rep: str | Representation,
                   index: slice = slice(None), name: str = "values") -> torch.Tensor:
    """z = rho(g)^-1 y(g x) for ``values`` (B, *item, d) at ``grid.matrices[index]``,
    float64 on the CPU; rho is orthogonal, so rho^-1 = rho^T. z is invariant
    exactly when y is equivariant: its non-invariant spectrum is the breaking."""
    rep = representation(rep)
    y = rep.flatten(torch.as_tensor(values).detach().to("cpu", DTYPE), 1, name)
    rho = grid.per_element(("rep", rep.spec), rep.matrices, index)  # (B, d, d)
    return torch.einsum("bji,b...j->b...i", rho, y)


@dataclass(frozen=True)
class EquivarianceError:
    """A of one output for one input.

    ``mean`` is Pi (item shape, last axis the representation), ``variance``
    A^2/d, ``variance_per_component`` the per-component variance (item shape),
    ``mean_square`` int |z|^2 / d, ``relative`` A / sqrt(int |z|^2).
    """

    rep: Representation
    mean: torch.Tensor
    variance: float
    variance_per_component: torch.Tensor
    mean_square: float
    stderr: float | None = None
    grid: dict = field(default_factory=dict)

    @property
    def rmse(self) -> float:
        return math.sqrt(self.variance)

    @property
    def relative(self) -> float:
        return math.sqrt(self.variance / self.mean_square) if self.mean_square != 0 else 0.0

    @property
    def n_components(self) -> int:
        return int(self.mean.numel())

    def to_dict(self) -> dict:
        out = {"rep": str(self.rep), "equivariance_rmse": self.rmse,  # no response: undefined
               "relative_error": self.relative if self.mean_square != 0 else None,
               "variance": self.variance,
               "n_components": self.n_components}
        if self.stderr is not None:
            out["variance_stderr"] = self.stderr
        return out


class EquivarianceAccumulator:
    """Streams chunks of y(g_q x) (B, *item, d) into the sums behind A."""

    def __init__(self, grid: Grid, rep: str | Representation, name: str = "values"):
        self.grid, self.rep, self.name = grid, representation(rep), name
        self.groups = JACKKNIFE_GROUPS if grid.monte_carlo else 1
        self._ref: torch.Tensor | None = None
        self._s0 = torch.zeros(self.groups, dtype=DTYPE)
        self._s1: torch.Tensor | None = None
        self._s2: torch.Tensor | None = None

    def update(self, values: torch.Tensor, index: slice) -> torch.Tensor:
        """Accumulate y(g x) for ``grid.matrices[index]``; returns z = rho(g)^-1 y(g x)."""
        values, w = torch.as_tensor(values), self.grid.weights[index]
        if values.shape[0] != w.shape[0]:
            raise GridError(f"{self.name}: got {values.shape[0]} values for {w.shape[0]} "
                            "grid elements")
        z = back_transform(values, self.grid, self.rep, index, self.name)
        if self._ref is None:
            self._ref = z[0].clone()
            self._s1 = torch.zeros(self.groups, *z.shape[1:], dtype=DTYPE)
            self._s2 = torch.zeros_like(self._s1)
        elif z.shape[1:] != self._ref.shape:
            raise GridError(f"{self.name}: output shape changed across the orbit: "
                            f"{tuple(z.shape[1:])} vs {tuple(self._ref.shape)}")
        dz = z - self._ref
        wz = w.reshape(-1, *([1] * (dz.ndim - 1))) * dz
        start = index.start or 0
        group_of = torch.arange(start, start + dz.shape[0]) % self.groups
        self._s0.index_add_(0, group_of, w)
        self._s1.index_add_(0, group_of, wz)
        self._s2.index_add_(0, group_of, wz * dz)
        return z

    def _finalize(self, s0, s1, s2, check: bool):
        m1, m2 = s1 / s0, s2 / s0
        var = m2 - m1 * m1
        if check and bool((var < -ROUNDOFF * m2 - 1e-300).any()):
            worst = float(var.min())
            raise AliasingError(
                f"{self.name}: negative variance {worst:.3e} on the grid {self.grid!r} "
                f"({self.grid.rule}): the response aliases; raise the degree")
        var = var.clamp_min(0.0)
        mean = m1 + self._ref
        return mean, var, float((mean * mean).sum() + var.sum()) / mean.numel()

    def result(self) -> EquivarianceError:
        if self._ref is None:
            raise GridError(f"{self.name}: no values were accumulated")
        total = (self._s0.sum(0), self._s1.sum(0), self._s2.sum(0))
        mean, var, mean_square = self._finalize(*total, check=not self.grid.monte_carlo)
        result = EquivarianceError(self.rep, mean, float(var.mean()), var, mean_square,
                                   None, self.grid.describe())
        if self.grid.monte_carlo:
            loo = [float(self._finalize(total[0] - self._s0[g], total[1] - self._s1[g],
                                        total[2] - self._s2[g], check=False)[1].mean())
                   for g in range(self.groups)]
            result = replace(result, stderr=_jackknife(loo))
        return result


def equivariance_error(values: torch.Tensor, grid: Grid, rep: str | Representation, *,
                       chunk_size: int = 512, name: str = "values") -> EquivarianceError:
    """Metric A of ``values[q] = y(g_q x)`` (shape (grid.size, *item, rep.dim)).

    The function back-transforms with ``rep``: z = rho(g)^-1 y(g x).
    """
    values = torch.as_tensor(values)
    if values.shape[0] != grid.size:
        raise GridError(f"{name}: values have {values.shape[0]} rows for a grid of "
                        f"{grid.size} elements")
    acc = EquivarianceAccumulator(grid, rep, name)
    for index in grid.chunks(chunk_size):
        acc.update(values[index], index)
    return acc.result()


@dataclass(frozen=True)
class DatasetError:
    """A over a data set: ``rmse`` = sqrt(mean over samples of A^2/d)."""

    rmse: float
    relative: float
    n_samples: int
    stderr: float | None = None

    def to_dict(self) -> dict:
        out = {"equivariance_rmse": self.rmse, "relative_error": self.relative,
               "n_samples": self.n_samples}
        if self.stderr is not None:
            out["equivariance_rmse_stderr"] = self.stderr
        return out


@dataclass(frozen=True)
class ErrorSums:
    """The sums behind :func:`aggregate_errors` and :func:`bias_variance`, merged over
    samples in any grouping (e.g. per partition of a data-parallel run).

    With weights w = 1 per sample, or w = d (components) ``by_components``: sum w,
    sum w A^2/d, sum A^2, sum int|z|^2, sum of squared Monte Carlo standard errors
    (None if a sample has none), sum A^2/d; and over the samples with a reference
    (``labelled`` of them) the summed squared bias, the summed mean absolute bias per
    component and the summed A^2/d."""

    n_samples: int
    weight: float
    weighted_variance: float
    a2: float
    z2: float
    stderr2: float | None
    variance: float
    bias2: float  # sum over the labelled samples
    abs_bias: float  # sum over the labelled samples of the mean |Pi - y*| per component
    labelled: int  # samples with a reference
    labelled_variance: float  # sum of their orbit variances

    @classmethod
    def of(cls, error: EquivarianceError, by_components: bool = False,
           reference: torch.Tensor | None = None) -> "ErrorSums":
        n = error.n_components
        w = n if by_components else 1
        bias2 = abs_bias = 0.0
        if reference is not None:
            ref = error.rep.flatten(torch.as_tensor(reference, dtype=DTYPE), 0, "reference")
            if ref.shape != error.mean.shape:
                raise GridError(f"reference has shape {tuple(ref.shape)}, prediction "
                                f"{tuple(error.mean.shape)}")
            bias2 = float(((error.mean - ref) ** 2).mean())
            abs_bias = float((error.mean - ref).abs().mean())
        return cls(1, float(w), w * error.variance, error.variance * n, error.mean_square * n,
                   None if error.stderr is None else error.stderr ** 2, error.variance, bias2,
                   abs_bias, int(reference is not None),
                   error.variance if reference is not None else 0.0)

    def merge(self, other: "ErrorSums") -> "ErrorSums":
        def add(a, b):
            return None if a is None or b is None else a + b
        return ErrorSums(self.n_samples + other.n_samples, self.weight + other.weight,
                         self.weighted_variance + other.weighted_variance, self.a2 + other.a2,
                         self.z2 + other.z2, add(self.stderr2, other.stderr2),
                         self.variance + other.variance, self.bias2 + other.bias2,
                         self.abs_bias + other.abs_bias, self.labelled + other.labelled,
                         self.labelled_variance + other.labelled_variance)

    def dataset_error(self) -> "DatasetError":
        var = self.weighted_variance / self.weight
        stderr = None
        if self.stderr2 is not None and var > 0:
            # propagate SE of the mean variance to its square root
            stderr = math.sqrt(self.stderr2) / self.n_samples / (2 * math.sqrt(var))
        return DatasetError(math.sqrt(var), math.sqrt(self.a2 / self.z2) if self.z2 != 0 else 0.0,
                            self.n_samples, stderr)

    def bias_variance(self) -> "BiasVariance":
        """The split over the samples that have a reference (``labelled`` of them)."""
        if self.labelled == 0:
            raise GridError("the bias-variance split needs reference labels")
        bias2, var = self.bias2 / self.labelled, self.labelled_variance / self.labelled
        return BiasVariance(math.sqrt(bias2 + var), math.sqrt(bias2), math.sqrt(var),
                            self.abs_bias / self.labelled)


def error_sums(errors: list[EquivarianceError], by_components: bool = False,
               references: list[torch.Tensor] | None = None) -> ErrorSums:
    """:class:`ErrorSums` of ``errors`` (with ``references[i]`` = y*(x_i), if given)."""
    if not errors:
        raise GridError("cannot aggregate an empty list of equivariance errors")
    if references is not None and len(references) != len(errors):
        raise GridError(f"need one reference per sample: {len(errors)} errors, "
                        f"{len(references)} references")
    refs = references if references is not None else [None] * len(errors)
    return reduce(ErrorSums.merge, [ErrorSums.of(e, by_components, r)
                                    for e, r in zip(errors, refs)])


def aggregate_errors(errors: list[EquivarianceError], by_components: bool = False) -> DatasetError:
    """Mean of A^2/d over samples (or, ``by_components``, over all components of all
    samples, for domains whose samples are blocks of items such as jets);
    relative = sqrt(sum A^2 / sum int|z|^2)."""
    return error_sums(errors, by_components).dataset_error()


@dataclass(frozen=True)
class BiasVariance:
    """RMSE split against an exactly equivariant reference y*.

    total^2 (random orientations) = symmetrized^2 (Pi f vs y*) + equivariance^2.
    """

    total_rmse: float
    symmetrized_rmse: float
    equivariance_rmse: float
    symmetrized_mae: float

    @property
    def symmetry_share(self) -> float | None:
        """equivariance^2 / total^2: the share of the squared error over random
        orientations that is due to symmetry breaking (None without any error)."""
        return self.equivariance_rmse ** 2 / self.total_rmse ** 2 if self.total_rmse > 0 else None

    def to_dict(self) -> dict:
        """As metatrain's evaluation reports it: ``random_orientation_rmse`` is the
        "oriented RMSE" sqrt(eq^2 + avg^2), ``symmetrized_rmse`` and ``symmetrized_mae``
        the O(3)-averaged RMSE and MAE, ``equivariance_rmse`` the equivariance RMSE."""
        return {"random_orientation_rmse": self.total_rmse,
                "symmetrized_rmse": self.symmetrized_rmse,
                "symmetrized_mae": self.symmetrized_mae,
                "equivariance_rmse": self.equivariance_rmse,
                "symmetry_share": self.symmetry_share}


def bias_variance(errors: list[EquivarianceError], references: list[torch.Tensor]) -> BiasVariance:
    """Bias-variance split of the error over random orientations (README "Conventions").

    ``references[i]`` is y*(x_i) with the item shape of ``errors[i].mean``.
    """
    if len(errors) != len(references) or not errors:
        raise GridError(f"need one reference per sample: {len(errors)} errors, "
                        f"{len(references)} references")
    return error_sums(errors, references=references).bias_variance()

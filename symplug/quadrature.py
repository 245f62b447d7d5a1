"""Quadrature grids {g_q, w_q} on O(3), SO(3), SO(2) and O(2) with sum w_q = 1.

``degree`` L is the band limit of the *response*: a degree-L grid integrates
every product of two Wigner-D functions of order <= L (band 2L) exactly, so the
symmetrised prediction Pi, the equivariance error A and every B_l with l <= L
are exact for responses band-limited to L (DESIGN §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
from scipy.integrate import lebedev_rule
from scipy.spatial.transform import Rotation

from .errors import GridError
from .groups import DTYPE, check_group, has_improper, haar, is_planar, mirror, rotations_about

KINDS = ("lebedev", "gauss-legendre", "haar")

# Per-element tables (Wigner bases, rho(g)) are cached on a grid up to this size.
CACHE_LIMIT_BYTES = 256 * 2 ** 20

# Orders (polynomial degree integrated exactly) of the Lebedev rules scipy ships
# whose weights are all positive; orders 13, 25 and 27 have negative weights, which
# lets a variance of a non-band-limited response go negative, so they are skipped.
LEBEDEV_ORDERS = (3, 5, 7, 9, 11, 15, 17, 19, 21, 23, 29, 31, 35, 41, 47,
                  53, 59, 65, 71, 77, 83, 89, 95, 101, 107, 113, 119, 125, 131)


@dataclass(frozen=True, eq=False)
class Grid:
    """A weighted set of group elements.

    Attributes: ``matrices`` (N, 3, 3) float64 (improper elements have det -1),
    ``weights`` (N,) summing to 1, ``group`` name, ``kind``, ``degree`` (band
    limit L; None for Monte Carlo), ``exact_degree`` (the band the rule
    integrates exactly, >= 2L; 0 for Monte Carlo), ``axis`` (SO2/O2) and
    ``rule`` (a one-line description of the construction).
    """

    group: str
    kind: str
    degree: int | None
    exact_degree: int
    matrices: torch.Tensor
    weights: torch.Tensor
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    rule: str = ""
    seed: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    @property
    def monte_carlo(self) -> bool:
        return self.kind == "haar"

    def chunks(self, chunk_size: int) -> Iterator[slice]:
        """Consecutive slices of at most ``chunk_size`` elements."""
        if int(chunk_size) < 1:
            raise GridError(f"chunk_size must be >= 1, got {chunk_size}")
        for start in range(0, self.size, int(chunk_size)):
            yield slice(start, min(start + int(chunk_size), self.size))

    def per_element(self, key: Hashable, compute: Callable[[torch.Tensor], torch.Tensor],
                    index: slice) -> torch.Tensor:
        """``compute(matrices)`` (one row per element) for ``matrices[index]``.

        The first call computes the table for the whole grid and keeps it when it
        fits in :data:`CACHE_LIMIT_BYTES`, so every chunk, sample and accumulator
        that uses the same grid shares it; larger tables are computed per chunk.
        """
        table = self._cache.get(key)
        if table is None and key not in self._cache:
            row = compute(self.matrices[:1])
            fits = row.numel() * row.element_size() * self.size <= CACHE_LIMIT_BYTES
            table = compute(self.matrices) if fits else None
            self._cache[key] = table
        return compute(self.matrices[index]) if table is None else table[index]

    def describe(self) -> dict:
        """The DESIGN §3 ``grid`` record."""
        out = {"kind": self.kind, "degree": self.degree, "size": self.size,
               "exact_degree": self.exact_degree, "group": self.group, "rule": self.rule}
        if is_planar(self.group):
            out["axis"] = list(self.axis)
        if self.monte_carlo:
            out["seed"] = self.seed
        return out

    def __repr__(self) -> str:
        return (f"Grid(group={self.group!r}, kind={self.kind!r}, degree={self.degree}, "
                f"size={self.size}, exact_degree={self.exact_degree})")


def lebedev_order(band: int) -> int:
    """Smallest Lebedev order that integrates spherical harmonics of degree ``band``."""
    for order in LEBEDEV_ORDERS:
        if order >= band:
            return order
    raise GridError(f"no Lebedev rule integrates band {band} (scipy's largest order is "
                    f"{LEBEDEV_ORDERS[-1]}, i.e. degree <= {LEBEDEV_ORDERS[-1] // 2}); "
                    "use kind='gauss-legendre'")


def _euler_zyz(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> torch.Tensor:
    """R = Rz(alpha) Ry(beta) Rz(gamma) for all combinations given as flat arrays."""
    angles = np.stack([alpha, beta, gamma], axis=1)
    return torch.from_numpy(Rotation.from_euler("ZYZ", angles).as_matrix()).to(DTYPE)


def _so3_lebedev(degree: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    order = lebedev_order(2 * degree)
    k = 2 * degree + 1
    nodes, w_leb = lebedev_rule(order)  # (3, M), weights sum to 4 pi
    alpha = np.arctan2(nodes[1], nodes[0])
    beta = np.arccos(np.clip(nodes[2], -1.0, 1.0))
    gamma = 2 * math.pi * np.arange(k) / k
    a = np.repeat(alpha, k)
    b = np.repeat(beta, k)
    g = np.tile(gamma, alpha.size)
    weights = np.repeat(w_leb / (4 * math.pi * k), k)
    rule = (f"Lebedev order {order} ({alpha.size} nodes) x {k} equispaced gamma, ZYZ Euler")
    return _euler_zyz(a, b, g), torch.from_numpy(weights), min(order, k - 1), rule


def _so3_gauss_legendre(degree: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    k = 2 * degree + 1
    x, w = np.polynomial.legendre.leggauss(degree + 1)  # exact to degree 2L+1 in cos(beta)
    alpha = 2 * math.pi * np.arange(k) / k
    a, b, g = np.meshgrid(alpha, np.arccos(x), alpha, indexing="ij")
    weights = np.broadcast_to((w / 2)[None, :, None] / (k * k), a.shape)
    rule = (f"{k} alpha x {degree + 1} Gauss-Legendre cos(beta) x {k} gamma, ZYZ Euler")
    return (_euler_zyz(a.ravel(), b.ravel(), g.ravel()), torch.from_numpy(weights.ravel().copy()),
            2 * degree, rule)


def quadrature(group: str, degree: int | None = None, kind: str = "lebedev",
               axis: Sequence[float] = (0.0, 0.0, 1.0), n: int | None = None,
               seed: int | None = None) -> Grid:
    """A quadrature on ``group`` that is exact for responses band-limited to ``degree``.

    Rules (L = ``degree``; the smallest grid achieving exactness is chosen):

    * SO3, ``"lebedev"``: Lebedev nodes of the smallest positive-weight order >= 2L
      (scipy.integrate.lebedev_rule) give (alpha, beta), times K = 2L+1
      equispaced gamma (ZYZ Euler angles), weights w_Leb / (4 pi K).
    * SO3, ``"gauss-legendre"``: (2L+1) alpha x (L+1) Gauss-Legendre nodes in
      cos(beta) x (2L+1) gamma.
    * SO2 (about ``axis``): 2L+1 equispaced angles (both kinds).
    * O3 / O2: the SO3 / SO2 rule followed by its improper copies (-R for O3,
      R M for O2 with M the mirror e2 -> -e2), all weights halved.
    * ``"haar"``: ``n`` seeded Haar-random elements with weights 1/n (Monte
      Carlo; metrics then carry jackknife standard errors). ``degree`` is None.

    Degree 0 uses the identity alone (plus its improper copy).
    """
    group = check_group(group)
    kind = str(kind).lower()
    if kind not in KINDS:
        raise GridError(f"unknown quadrature kind {kind!r}; expected one of {', '.join(KINDS)}")
    axis_t = tuple(float(v) for v in np.asarray(axis, dtype=float).reshape(3))
    if kind == "haar":
        if n is None or int(n) < 2:
            raise GridError("kind='haar' needs n >= 2 random elements (n=...)")
        mats = haar(group, int(n), seed=seed, axis=axis_t)
        weights = torch.full((int(n),), 1.0 / int(n), dtype=DTYPE)
        return Grid(group, kind, None, 0, mats, weights, axis_t,
                    f"{n} Haar-random elements (seed {seed})", seed)
    if degree is None or int(degree) != degree or int(degree) < 0:
        raise GridError(f"degree must be a non-negative integer band limit, got {degree!r}")
    degree = int(degree)
    if degree == 0:
        mats, weights, exact, rule = (torch.eye(3, dtype=DTYPE)[None], torch.ones(1, dtype=DTYPE),
                                      0, "identity (band 0)")
    elif is_planar(group):
        k = 2 * degree + 1
        mats = rotations_about(axis_t, torch.arange(k, dtype=DTYPE) * (2 * math.pi / k))
        weights, exact, rule = torch.full((k,), 1.0 / k, dtype=DTYPE), 2 * degree, \
            f"{k} equispaced angles about axis {list(axis_t)}"
    elif kind == "lebedev":
        mats, weights, exact, rule = _so3_lebedev(degree)
    else:
        mats, weights, exact, rule = _so3_gauss_legendre(degree)
    if has_improper(group):
        improper = mirror(axis_t) if is_planar(group) else -torch.eye(3, dtype=DTYPE)
        mats = torch.cat([mats, mats @ improper])
        weights = torch.cat([weights, weights]) / 2
        rule += "; plus improper copies (" + ("R M" if is_planar(group) else "-R") + "), weights halved"
    weights = weights / weights.sum()  # remove the last ulp of drift
    return Grid(group, kind, degree, exact, mats.contiguous(), weights, axis_t, rule)

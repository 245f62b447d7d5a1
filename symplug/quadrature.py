"""Quadrature grids {g_q, w_q} on O(3), SO(3), SO(2) and O(2) with sum w_q = 1.

``degree`` L is the band limit of the *response*; the ``purpose`` says what the grid
must integrate exactly (docs/design.md, "Quadrature"):

* ``"diagnosis"`` (default): second moments, so every product of two Wigner-D
  functions of order <= L (band 2L). Pi, A and every B_l with l <= L are then exact
  for responses band-limited to L.
* ``"mean"``: the group average of a band-L response (symmetrisation), band L.

Rules and their exact bands (a rule "exact to band b" integrates every Wigner-D
function D^l with 1 <= l <= b to zero and D^0 to one):

=====================  ===========================================  ===========
rule                   construction                                  exact band
=====================  ===========================================  ===========
finite D2 / T / O / I  the rotation group of the rectangular box,    1 / 2 / 3 / 5
                       tetrahedron, octahedron, icosahedron (4, 12,
                       24, 60 elements; scipy ``Rotation.create_group``)
lebedev                Lebedev order n x K equispaced gamma          min(n, K - 1)
gauss-legendre         K alpha x (L'+1) Gauss-Legendre x K gamma     K - 1
SO2 / O2               K equispaced angles about the axis            K - 1
=====================  ===========================================  ===========

O(3) and O(2) append the improper copies (-R, or R M with M the mirror), weights
halved; that keeps the band. ``kind="auto"`` picks the smallest positive-weight rule
for the request. Any rule rotated by a fixed element (:meth:`Grid.rotated`) stays
exact to the same band, which the convergence check uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
from scipy.integrate import lebedev_rule
from scipy.spatial.transform import Rotation

from . import memory
from .errors import GridError
from .groups import DTYPE, Group, PlanarGroup

KINDS = ("auto", "finite", "lebedev", "gauss-legendre", "equispaced", "haar")
PURPOSES = ("diagnosis", "mean")

# The finite rotation groups (scipy names) and the band to which each integrates every
# Wigner-D function: the first l at which the group has an invariant is band + 1.
FINITE_GROUPS = (("D2", 1), ("T", 2), ("O", 3), ("I", 5))

# Bytes held per grid element while a rule is built (Euler angles, scipy's matrices,
# the torch copy and the improper copies): the up-front memory check of a request.
BUILD_BYTES_PER_ELEMENT = 400

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
    ``weights`` (N,) summing to 1, ``group`` (a :class:`~symplug.groups.Group`, with
    the axis of SO2/O2; a name is parsed), ``kind``, ``degree`` (the band limit L of
    the response it was asked for; None for Monte Carlo), ``purpose``
    (``"diagnosis"`` or ``"mean"``), ``exact_degree`` (the band the rule integrates
    exactly: >= 2L for a diagnosis, >= L for a mean; 0 for Monte Carlo), ``rule`` (a
    one-line description of the construction) and ``seed`` (Monte Carlo and rotated
    rules).
    """

    group: Group
    kind: str
    degree: int | None
    exact_degree: int
    matrices: torch.Tensor
    weights: torch.Tensor
    rule: str = ""
    seed: int | None = None
    purpose: str = "diagnosis"
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", Group.parse(self.group))

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    @property
    def monte_carlo(self) -> bool:
        return self.kind == "haar"

    @property
    def moment_degree(self) -> int | None:
        """The largest l whose second moments (A, B_l) the rule integrates exactly:
        half its exact band (None for Monte Carlo)."""
        return None if self.monte_carlo else self.exact_degree // 2

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

    def rotated(self, seed: int | None = 0) -> "Grid":
        """The same rule turned by one Haar-random proper rotation g0 (seeded):
        elements g0 g_q, the same weights and exact band. For a response band-limited
        to the grid's band both grids give the same numbers to round-off; their
        difference estimates what the rule misses (the convergence check)."""
        if self.monte_carlo:
            raise GridError("a Monte Carlo grid has no fixed orientation to turn; draw "
                            "another seed instead")
        g0 = self.group.proper.haar(1, seed=seed)[0]
        return Grid(self.group, self.kind, self.degree, self.exact_degree,
                    (g0 @ self.matrices).contiguous(), self.weights,
                    f"{self.rule}; turned by a Haar-random rotation (seed {seed})", seed,
                    self.purpose)

    def describe(self) -> dict:
        """The ``grid`` record of a result (docs/design.md, "Result format")."""
        out = {"kind": self.kind, "degree": self.degree, "size": self.size,
               "exact_degree": self.exact_degree, "purpose": self.purpose,
               "group": self.group.name, "rule": self.rule}
        if isinstance(self.group, PlanarGroup):
            out["axis"] = list(self.group.axis)
        if self.monte_carlo or self.seed is not None:
            out["seed"] = self.seed
        return out

    def __repr__(self) -> str:
        return (f"Grid(group={self.group.name!r}, kind={self.kind!r}, degree={self.degree}, "
                f"purpose={self.purpose!r}, size={self.size}, exact_degree={self.exact_degree})")


def lebedev_order(band: int) -> int:
    """Smallest positive-weight Lebedev order that integrates spherical harmonics of
    degree ``band``."""
    for order in LEBEDEV_ORDERS:
        if order >= band:
            return order
    raise GridError(f"no Lebedev rule integrates band {band} (scipy's largest order is "
                    f"{LEBEDEV_ORDERS[-1]}); use kind='gauss-legendre'")


def _euler_zyz(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> torch.Tensor:
    """R = Rz(alpha) Ry(beta) Rz(gamma) for all combinations given as flat arrays."""
    angles = np.stack([alpha, beta, gamma], axis=1)
    return torch.from_numpy(Rotation.from_euler("ZYZ", angles).as_matrix()).to(DTYPE)


Rule = tuple[torch.Tensor, torch.Tensor, int, str]  # matrices, weights, exact band, text


def _so3_finite(band: int) -> Rule | None:
    """The smallest finite rotation group exact to ``band``, or None (band > 5)."""
    for name, exact in FINITE_GROUPS:
        if exact >= band:
            mats = torch.from_numpy(Rotation.create_group(name).as_matrix()).to(DTYPE)
            n = mats.shape[0]
            return (mats, torch.full((n,), 1.0 / n, dtype=DTYPE), exact,
                    f"rotation group {name} ({n} elements)")
    return None


def _so3_lebedev(band: int) -> Rule:
    order = lebedev_order(band)
    k = band + 1
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


def _so3_gauss_legendre(band: int) -> Rule:
    k = band + 1
    x, w = np.polynomial.legendre.leggauss(band // 2 + 1)  # exact to band+1 in cos(beta)
    alpha = 2 * math.pi * np.arange(k) / k
    a, b, g = np.meshgrid(alpha, np.arccos(x), alpha, indexing="ij")
    weights = np.broadcast_to((w / 2)[None, :, None] / (k * k), a.shape)
    rule = (f"{k} alpha x {band // 2 + 1} Gauss-Legendre cos(beta) x {k} gamma, ZYZ Euler")
    return (_euler_zyz(a.ravel(), b.ravel(), g.ravel()), torch.from_numpy(weights.ravel().copy()),
            band, rule)


def _element_count(group: Group, kind: str, band: int) -> int:
    """Elements of the rule ``quadrature`` builds, known before it is built."""
    if band == 0:
        count = 1
    elif group.is_planar:
        count = band + 1
    elif kind == "gauss-legendre":
        count = (band + 1) ** 2 * (band // 2 + 1)
    else:  # finite groups and Lebedev rules are small (at most 5810 nodes x 132 angles)
        count = 0
    return count * (2 if group.has_improper else 1)


def _so3_rule(kind: str, band: int) -> tuple[str, Rule]:
    """(the kind of rule chosen, the rule) for ``kind`` on SO(3)."""
    if kind == "equispaced":
        raise GridError("kind='equispaced' is the rule of SO2/O2; for O3/SO3 use "
                        "'auto', 'finite', 'lebedev' or 'gauss-legendre'")
    if kind == "finite":
        rule = _so3_finite(band)
        if rule is None:
            raise GridError(f"no finite rotation group integrates band {band} (the icosahedral "
                            f"group reaches band {FINITE_GROUPS[-1][1]}); use kind='lebedev'")
        return kind, rule
    if kind == "lebedev":
        return kind, _so3_lebedev(band)
    if kind == "gauss-legendre":
        return kind, _so3_gauss_legendre(band)
    candidates = [(k, r) for k, r in (("finite", _so3_finite(band)), ("lebedev", _so3_lebedev(band)))
                  if r is not None]
    return min(candidates, key=lambda c: c[1][1].shape[0])  # "auto": the smallest


def quadrature(group: str | Group, degree: int | None = None, kind: str = "auto",
               axis: Sequence[float] = (0.0, 0.0, 1.0), n: int | None = None,
               seed: int | None = None, purpose: str = "diagnosis") -> Grid:
    """A quadrature on ``group`` for responses band-limited to ``degree`` L.

    ``purpose="diagnosis"`` asks for exactness to band 2L (second moments: A and B_l
    for l <= L), ``purpose="mean"`` to band L (the symmetrised prediction alone).
    ``kind``:

    * ``"auto"`` (default): the smallest positive-weight rule for the request (its
      ``rule`` says which);
    * ``"finite"``: the smallest of the rotation groups D2, T, O, I exact to the band;
    * ``"lebedev"``: Lebedev nodes of the smallest positive-weight order >= band
      (scipy.integrate.lebedev_rule) for (alpha, beta), times K = band + 1 equispaced
      gamma (ZYZ Euler angles), weights w_Leb / (4 pi K);
    * ``"gauss-legendre"``: K alpha x (band // 2 + 1) Gauss-Legendre nodes in
      cos(beta) x K gamma;
    * ``"haar"``: ``n`` seeded Haar-random elements with weights 1/n (Monte Carlo;
      metrics then carry jackknife standard errors). ``degree`` is None.

    ``group``: a :class:`~symplug.groups.Group`, or its name with SO2/O2 about ``axis``
    (:meth:`~symplug.groups.Group.parse`). SO2/O2 use K = band + 1 equispaced angles
    for every exact kind (recorded as kind ``"equispaced"``). The grid's ``kind`` names
    the rule chosen. O3/O2 append the improper copies (-R for O3, R M for O2 with M the
    mirror e2 -> -e2), all weights halved. Degree 0 uses the identity alone (plus its
    improper copy).
    """
    group = Group.parse(group, axis)
    kind = str(kind).lower()
    if kind not in KINDS:
        raise GridError(f"unknown quadrature kind {kind!r}; expected one of {', '.join(KINDS)}")
    if purpose not in PURPOSES:
        raise GridError(f"unknown grid purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")
    if kind == "haar":
        if n is None or int(n) < 2:
            raise GridError("kind='haar' needs n >= 2 random elements (n=...)")
        mats = group.haar(int(n), seed=seed)
        weights = torch.full((int(n),), 1.0 / int(n), dtype=DTYPE)
        return Grid(group, kind, None, 0, mats, weights,
                    f"{n} Haar-random elements (seed {seed})", seed, purpose)
    if degree is None or int(degree) != degree or int(degree) < 0:
        raise GridError(f"degree must be a non-negative integer band limit, got {degree!r}")
    degree = int(degree)
    band = 2 * degree if purpose == "diagnosis" else degree
    count = _element_count(group, kind, band)
    memory.require(count * BUILD_BYTES_PER_ELEMENT,
                   f"the {kind} grid of {group.name} at degree {degree} ({count} elements)",
                   "ask for a lower degree or a Monte Carlo grid (kind haar)")
    if degree == 0:
        kind = "identity"
        mats, weights, exact, rule = (torch.eye(3, dtype=DTYPE)[None], torch.ones(1, dtype=DTYPE),
                                      0, "identity (band 0)")
    elif isinstance(group, PlanarGroup):
        kind, k = "equispaced", band + 1
        mats = group.rotations(torch.arange(k, dtype=DTYPE) * (2 * math.pi / k))
        weights, exact, rule = torch.full((k,), 1.0 / k, dtype=DTYPE), band, \
            f"{k} equispaced angles about axis {list(group.axis)}"
    else:
        kind, (mats, weights, exact, rule) = _so3_rule(kind, band)
    if group.has_improper:
        mats = torch.cat([mats, mats @ group.improper])
        weights = torch.cat([weights, weights]) / 2
        rule += f"; plus improper copies ({'R M' if group.is_planar else '-R'}), weights halved"
    weights = weights / weights.sum()  # remove the last ulp of drift
    return Grid(group, kind, degree, exact, mats.contiguous(), weights, rule, purpose=purpose)

"""Metric B: the symmetry content of a quantity u(g) = u(g x) sampled on a grid.

For O(3), with C^{l,+/-} = int_SO3 D^l(R^-1) u(+/- R x) dR (README "Conventions"):

    B_{l,sigma} = (2l+1)/4 sum_mn (C^{l,+}_mn + sigma (-1)^l C^{l,-}_mn)^2,
    sum_{l,sigma} B_{l,sigma} = int |u|^2 dmu   (Parseval).

SO(3) has the sectors (l, 0) with B_l = (2l+1) sum |C^l|^2. SO(2) uses Fourier
modes e^{i m phi}: B_0 = |c_0|^2, B_m = 2 |c_m|^2 (m >= 1, real u), keys (m, 0).
O(2) adds the mirror coset: (0, +1) and (0, -1) split the invariant mode, and
B_m = |c_m^+|^2 + |c_m^-|^2 for m >= 1 (keys (m, 0)).

Power is accumulated as linear Fourier sums over chunks of the grid, so the orbit
never has to be held at once; Monte Carlo grids carry delete-group jackknife
standard errors.

The mathematics and design: docs/design.md, section 1.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from . import memory
from .errors import AliasingError, GridError
from .groups import DTYPE, Group, PlanarGroup, Sector
from .quadrature import Grid
from .wigner import wigner_D

JACKKNIFE_GROUPS = 10
ROUNDOFF = 1e-10  # relative tolerance for "negative beyond round-off"


def sector_key(sector: Sector) -> str:
    """JSON key of a sector: ``"2,+1"``, ``"2,-1"``, or ``"2,0"`` when parity is not resolved."""
    l, sigma = sector
    return f"{l},{sigma:+d}" if sigma else f"{l},0"


def parse_sector_key(key: str) -> Sector:
    """Inverse of :func:`sector_key`."""
    l, sigma = key.split(",")
    return int(l), int(sigma)


def sectors(group: str | Group, lmax: int) -> list[Sector]:
    """All (l, sigma) sectors of ``group`` up to ``lmax``, invariant sector first
    (:meth:`Group.sectors <symplug.groups.Group.sectors>`)."""
    return Group.parse(group).sectors(lmax)


def invariant_sector(group: str | Group) -> Sector:
    """The sector of exactly invariant quantities: (0, +1), or (0, 0) without improper elements."""
    return Group.parse(group).invariant_sector


@dataclass(frozen=True)
class Spectrum:
    """Symmetry content of one quantity (or a data-set aggregate).

    ``power[(l, sigma)]`` is B_{l,sigma} (absolute, in units of u^2), ``norm2``
    the Haar mean of |u|^2, ``fractions`` = power / norm2, ``truncation`` = 1 -
    sum(fractions): the power above ``lmax``. ``mean`` is the orbit mean
    (the symmetrised u, Pi u) with u's item shape. ``stderr`` holds jackknife
    standard errors of the fractions and truncation for Monte Carlo grids. ``group``
    is a :class:`~symplug.groups.Group` (a name is parsed).
    """

    group: Group
    lmax: int
    power: dict[Sector, float]
    norm2: float
    mean: torch.Tensor | None = None
    stderr: dict[Sector | str, float] | None = None
    grid: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", Group.parse(self.group))

    @property
    def fractions(self) -> dict[Sector, float]:
        if self.norm2 <= 0.0:
            return {k: 0.0 for k in self.power}
        return {k: v / self.norm2 for k, v in self.power.items()}

    @property
    def truncation(self) -> float:
        return 1.0 - sum(self.fractions.values()) if self.norm2 > 0.0 else 0.0

    @property
    def invariant_fraction(self) -> float:
        return self.fractions[self.group.invariant_sector]

    def centered(self, mean: torch.Tensor | None = None) -> "Spectrum":
        """The spectrum of u - c, with c = ``mean`` (broadcast over u's item shape;
        e.g. a per-feature data-set mean) or, by default, the orbit mean itself.

        Only the invariant sector and the norm change: B_inv = |Pi u - c|^2.
        """
        if self.mean is None:
            raise GridError("this spectrum has no orbit mean to centre with")
        c = self.mean if mean is None else torch.as_tensor(mean, dtype=DTYPE)
        c = torch.broadcast_to(c, self.mean.shape)
        return replace(self.with_invariant_power(float(((self.mean - c) ** 2).sum())),
                       mean=self.mean - c)

    def with_invariant_power(self, power: float) -> "Spectrum":
        """This spectrum with the invariant sector's power replaced by ``power`` (the norm
        follows; centring changes nothing else), without standard errors."""
        inv = self.group.invariant_sector
        powers = dict(self.power)
        powers[inv] = power
        return replace(self, power=powers, norm2=max(self.norm2 - self.power[inv] + power, 0.0),
                       stderr=None)

    def to_dict(self) -> dict:
        """JSON record: ``{"spectrum": {"l,sigma": fraction}, "truncation", "norm2", ...}``."""
        out = {"spectrum": {sector_key(k): v for k, v in self.fractions.items()},
               "power": {sector_key(k): v for k, v in self.power.items()},
               "truncation": self.truncation, "norm2": self.norm2,
               "invariant_fraction": self.invariant_fraction}
        if self.stderr is not None:
            out["stderr"] = {sector_key(k) if isinstance(k, tuple) else k: v
                             for k, v in self.stderr.items()}
        return out


@dataclass(frozen=True)
class FeatureMoments:
    """Count, mean and summed squared deviation per feature (last axis) of the orbit
    means of a layer over its tokens (all other axes). Merged with Chan's formula, they
    give the data-set centred spectrum without keeping any per-token mean."""

    count: int
    mean: torch.Tensor  # (F,)
    m2: torch.Tensor    # (F,)

    @classmethod
    def of(cls, orbit_mean: torch.Tensor) -> "FeatureMoments":
        """The moments of one sample's orbit mean (item shape, features last)."""
        flat = orbit_mean.reshape(-1, orbit_mean.shape[-1]) if orbit_mean.ndim else \
            orbit_mean.reshape(1, 1)
        mean = flat.mean(0)
        return cls(int(flat.shape[0]), mean, ((flat - mean) ** 2).sum(0))

    def merge(self, other: "FeatureMoments") -> "FeatureMoments":
        if other.mean.shape != self.mean.shape:
            raise GridError(f"layer features changed between samples: {tuple(other.mean.shape)} "
                            f"vs {tuple(self.mean.shape)}")
        n = self.count + other.count
        delta = other.mean - self.mean
        return FeatureMoments(n, self.mean + delta * (other.count / n),
                              self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n))


def centered_aggregate(raw: Spectrum, moments: FeatureMoments) -> Spectrum:
    """The data-set spectrum of u - c, c the per-feature data-set mean of the orbit
    means: only the invariant sector and the norm change, B_inv = sum |Pi u - c|^2."""
    return replace(raw.with_invariant_power(float(moments.m2.sum())), mean=None)


def aggregate_spectra(spectra: list[Spectrum]) -> Spectrum:
    """Data-set spectrum: powers and norms summed over samples (fractions of the total)."""
    if not spectra:
        raise GridError("cannot aggregate an empty list of spectra")
    first = spectra[0]
    power = {k: sum(s.power[k] for s in spectra) for k in first.power}
    return Spectrum(first.group, first.lmax, power, sum(s.norm2 for s in spectra),
                    None, None, first.grid)


class SpectrumAccumulator:
    """Streams chunks of u(g_q x) into the Fourier sums behind :class:`Spectrum`.

    ``update(values, index)`` takes values (B, *item) for the grid elements
    ``grid.matrices[index]``; ``result()`` returns the :class:`Spectrum`.
    """

    def __init__(self, grid: Grid, lmax: int | None = None):
        if lmax is None:
            if grid.moment_degree is None:
                raise GridError("a Monte Carlo grid needs an explicit lmax")
            lmax = grid.moment_degree
        if int(lmax) < 0:
            raise GridError(f"lmax must be >= 0, got {lmax}")
        if grid.moment_degree is not None and lmax > grid.moment_degree:
            raise GridError(f"lmax={lmax} exceeds the degree {grid.moment_degree} of the grid "
                            f"({grid.rule}): B_l is exact only up to half its exact band "
                            f"{grid.exact_degree}")
        self.grid, self.lmax = grid, int(lmax)
        self.groups = JACKKNIFE_GROUPS if grid.monte_carlo else 1
        self._sums: torch.Tensor | None = None  # (groups, cosets, F, S)
        self._weights = torch.zeros(self.groups, 2, dtype=DTYPE)
        self._norms = torch.zeros(self.groups, 2, dtype=DTYPE)
        self._item_shape: tuple[int, ...] | None = None

    def _basis(self, matrices: torch.Tensor) -> torch.Tensor:
        """Real basis functions (B, S) of the proper part of each element: the
        entries of D^0..D^lmax, or 1, cos(m phi), sin(m phi) for SO2/O2."""
        group = self.grid.group
        _, rotations = group.proper_part(matrices)
        if isinstance(group, PlanarGroup):
            phi = group.angles(rotations)
            m = torch.arange(1, self.lmax + 1, dtype=DTYPE)
            return torch.cat([torch.ones_like(phi)[:, None], torch.cos(phi[:, None] * m),
                              torch.sin(phi[:, None] * m)], dim=1)
        return torch.cat([wigner_D(l, rotations).reshape(rotations.shape[0], -1)
                          for l in range(self.lmax + 1)], dim=1)

    def update(self, values: torch.Tensor, index: slice) -> None:
        values = torch.as_tensor(values).detach().to("cpu", DTYPE)
        w = self.grid.weights[index]
        if values.shape[0] != w.shape[0]:
            raise GridError(f"got {values.shape[0]} values for {w.shape[0]} grid elements")
        if self._item_shape is None:
            self._item_shape = tuple(values.shape[1:])
        elif tuple(values.shape[1:]) != self._item_shape:
            raise GridError(f"values changed shape across the orbit: {tuple(values.shape[1:])} "
                            f"vs {self._item_shape}; tokens must correspond across copies")
        u = values.reshape(values.shape[0], -1)
        sign = self.grid.per_element("sign", lambda g: torch.sign(torch.linalg.det(g)), index)
        basis = self.grid.per_element(("spectrum-basis", self.lmax), self._basis, index)
        basis = basis * w[:, None]
        if self._sums is None:
            shape = (self.groups, 2, u.shape[1], basis.shape[1])
            memory.require(8 * math.prod(shape), f"the spectrum sums of {u.shape[1]} features x "
                           f"{basis.shape[1]} basis functions (band {self.lmax})",
                           "capture fewer or smaller layers, or lower lmax")
            self._sums = torch.zeros(*shape, dtype=DTYPE)
        start = index.start or 0
        group_of = torch.arange(start, start + u.shape[0]) % self.groups
        coset_of = (sign < 0).long()
        norms = w * (u * u).sum(dim=1)
        for g in range(self.groups):
            for c in (0, 1):
                sel = (group_of == g) & (coset_of == c)
                if bool(sel.any()):
                    self._sums[g, c] += u[sel].T @ basis[sel]
                    self._weights[g, c] += w[sel].sum()
                    self._norms[g, c] += norms[sel].sum()

    def _finalize(self, sums, weights, norms) -> tuple[dict[Sector, float], float, torch.Tensor]:
        group = self.grid.group
        improper = group.has_improper
        cosets = (0, 1) if improper else (0,)
        if any(float(weights[c]) <= 0.0 for c in cosets):
            raise GridError(f"the grid ({self.grid.rule}) has no weight on a coset of {group.name}")
        coef = [sums[c] / weights[c] for c in cosets]
        norm2 = sum(float(norms[c] / weights[c]) for c in cosets) / len(cosets)
        mean = sum(cf[:, 0] for cf in coef) / len(cosets)
        power: dict[Sector, float] = {}
        if group.is_planar:
            M = self.lmax
            if improper:
                power[(0, 1)] = float(((coef[0][:, 0] + coef[1][:, 0]) ** 2).sum()) / 4
                power[(0, -1)] = float(((coef[0][:, 0] - coef[1][:, 0]) ** 2).sum()) / 4
            else:
                power[(0, 0)] = float((coef[0][:, 0] ** 2).sum())
            for m in range(1, M + 1):
                p = sum(float((cf[:, m] ** 2 + cf[:, M + m] ** 2).sum()) for cf in coef)
                power[(m, 0)] = 2 * p / len(cosets)
        else:
            offset = 0
            for l in range(self.lmax + 1):
                block = slice(offset, offset + (2 * l + 1) ** 2)
                offset = block.stop
                if improper:
                    for sigma in (1, -1):
                        x = coef[0][:, block] + sigma * (-1) ** l * coef[1][:, block]
                        power[(l, sigma)] = (2 * l + 1) / 4 * float((x * x).sum())
                else:
                    power[(l, 0)] = (2 * l + 1) * float((coef[0][:, block] ** 2).sum())
        return power, norm2, mean

    def result(self) -> Spectrum:
        if self._sums is None:
            raise GridError("no values were accumulated")
        total = (self._sums.sum(0), self._weights.sum(0), self._norms.sum(0))
        power, norm2, mean = self._finalize(*total)
        spectrum = Spectrum(self.grid.group, self.lmax, power, norm2,
                            mean.reshape(self._item_shape), None, self.grid.describe())
        if self.grid.monte_carlo:
            leave_out = [Spectrum(self.grid.group, self.lmax,
                                  *self._finalize(total[0] - self._sums[g],
                                                  total[1] - self._weights[g],
                                                  total[2] - self._norms[g])[:2])
                         for g in range(self.groups)]
            spectrum = replace(spectrum, stderr=_jackknife_spectrum(leave_out))
        elif norm2 > 0 and spectrum.truncation < -ROUNDOFF * max(1, self.lmax):
            raise AliasingError(
                f"power up to l={self.lmax} exceeds the norm by {-spectrum.truncation:.3e} on the "
                f"grid {self.grid!r} ({self.grid.rule}): the response aliases; raise the degree")
        return spectrum


def _jackknife(estimates: list[float]) -> float:
    n = len(estimates)
    mean = sum(estimates) / n
    return math.sqrt((n - 1) / n * sum((e - mean) ** 2 for e in estimates))


def _jackknife_spectrum(leave_out: list[Spectrum]) -> dict:
    keys = leave_out[0].power.keys()
    out: dict = {k: _jackknife([s.fractions[k] for s in leave_out]) for k in keys}
    out["truncation"] = _jackknife([s.truncation for s in leave_out])
    return out


def symmetry_content(values: torch.Tensor, grid: Grid, lmax: int | None = None, *,
                     centered: bool = False, mean: torch.Tensor | None = None,
                     chunk_size: int = 512) -> Spectrum:
    """Metric B of ``values[q] = u(g_q x)`` (shape (grid.size, *item)) up to ``lmax``.

    ``centered=True`` removes ``mean`` first (default: the orbit mean), so the
    invariant sector holds only |Pi u - mean|^2. Raises :class:`GridError` if
    ``lmax`` exceeds ``grid.moment_degree``.
    """
    values = torch.as_tensor(values)
    if values.shape[0] != grid.size:
        raise GridError(f"values have {values.shape[0]} rows for a grid of {grid.size} elements")
    acc = SpectrumAccumulator(grid, lmax)
    for index in grid.chunks(chunk_size):
        acc.update(values[index], index)
    spectrum = acc.result()
    return spectrum.centered(mean) if centered else spectrum

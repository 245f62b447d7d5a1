"""Real Wigner matrices D^l(R) in two orthonormal real-harmonic bases.

* ``basis="e3nn"``: e3nn's irreps basis (for l = 1 Cartesian x, y, z), computed
  by :meth:`e3nn.o3.Irrep.D_from_matrix`.
* ``basis="spherical"``: the metatensor / sphericart real spherical harmonics
  Y^l_m, m = -l..l (for l = 1: y, z, x), defined by Y(R r) = D^l(R) Y(r).

The two are related by the orthogonal change of basis Q_l = int Y_sph Y_e3nn^T dOmega,
evaluated exactly with a Lebedev rule of order >= 2l.

The mathematics and design: docs/design.md, section 1.3.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import sphericart
import torch
from e3nn import o3
from scipy.integrate import lebedev_rule

from .errors import RepresentationError
from .groups import DTYPE
from .quadrature import lebedev_order

BASES = ("e3nn", "spherical")


@contextmanager
def _float64_default():
    """e3nn builds its generators in the default dtype: force float64 while it does."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _check_basis(basis: str) -> None:
    if basis not in BASES:
        raise RepresentationError(f"unknown harmonic basis {basis!r}; expected one of {BASES}")


@lru_cache(maxsize=None)
def change_of_basis(l: int) -> torch.Tensor:
    """Q_l (2l+1, 2l+1) with Y_spherical(r) = Q_l Y_e3nn(r) for unit r."""
    nodes, weights = lebedev_rule(lebedev_order(max(2 * l, 1)))
    points = np.ascontiguousarray(nodes.T)
    y_sph = sphericart.SphericalHarmonics(l).compute(points)[:, l * l:(l + 1) ** 2]
    with _float64_default():
        y_e3nn = o3.spherical_harmonics(l, torch.from_numpy(points), normalize=True,
                                        normalization="integral").numpy()
    q = np.einsum("k,km,kn->mn", weights, y_sph, y_e3nn)
    return torch.from_numpy(q).to(DTYPE)


def wigner_D(l: int, rotations: torch.Tensor, basis: str = "e3nn") -> torch.Tensor:
    """D^l(R) (N, 2l+1, 2l+1) float64 for proper rotations ``rotations`` (N, 3, 3)."""
    _check_basis(basis)
    rotations = torch.as_tensor(rotations, dtype=DTYPE)
    if l == 0:
        return torch.ones(rotations.shape[0], 1, 1, dtype=DTYPE)
    with _float64_default():
        d = o3.Irrep(l, 1).D_from_matrix(rotations)
    if basis == "spherical":
        q = change_of_basis(l)
        d = q @ d @ q.T
    return d


@lru_cache(maxsize=None)
def _so3_generators(l: int) -> torch.Tensor:
    with _float64_default():
        return o3.so3_generators(l)


def wigner_generator(l: int, generator: torch.Tensor, basis: str = "e3nn") -> torch.Tensor:
    """d/dt D^l(exp(t J)) at t = 0, (2l+1, 2l+1), for an antisymmetric J (3, 3)."""
    _check_basis(basis)
    j = torch.as_tensor(generator, dtype=DTYPE)
    coeffs = torch.stack([j[2, 1], j[0, 2], j[1, 0]])  # J = sum_i c_i L_i
    g = torch.einsum("i,imn->mn", coeffs, _so3_generators(l))
    if basis == "spherical":
        q = change_of_basis(l)
        g = q @ g @ q.T
    return g

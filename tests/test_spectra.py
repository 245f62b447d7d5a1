"""Metric B against known answers (README "Conventions")."""

import numpy as np
import pytest
import sphericart
import torch
from scipy.special import eval_legendre

import symplug
from symplug.quadrature import Grid
from symplug.spectra import sectors

N1 = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, -0.2]), dim=0)
N2 = torch.nn.functional.normalize(torch.tensor([-0.1, 0.7, 0.4]), dim=0)
COEFFS = [0.5, 1.0, -0.7, 0.3, 0.2]


def legendre_orbit(grid, coeffs=COEFFS):
    c = (grid.matrices @ N2) @ N1
    return sum(a * torch.from_numpy(eval_legendre(l, c.numpy())) for l, a in enumerate(coeffs))


def expected_fractions(coeffs=COEFFS):
    p = [a * a / (2 * l + 1) for l, a in enumerate(coeffs)]
    return [x / sum(p) for x in p]


@pytest.mark.parametrize("kind", ["lebedev", "gauss-legendre"])
def test_planted_legendre_lands_in_natural_parity(kind):
    grid = symplug.quadrature("O3", 4, kind=kind)
    u = legendre_orbit(grid)
    spec = symplug.symmetry_content(u, grid, 4)
    for l, frac in enumerate(expected_fractions()):
        assert abs(spec.fractions[(l, 1)] - frac) < 1e-12
        assert abs(spec.fractions[(l, -1)]) < 1e-12
    assert abs(spec.truncation) < 1e-12
    # det(g) u lands in (l, -1)
    det = torch.linalg.det(grid.matrices)
    odd = symplug.symmetry_content(det * u, grid, 4)
    for l, frac in enumerate(expected_fractions()):
        assert abs(odd.fractions[(l, -1)] - frac) < 1e-12
        assert abs(odd.fractions[(l, 1)]) < 1e-12


def test_parseval_and_norm():
    grid = symplug.quadrature("O3", 4)
    u = legendre_orbit(grid)[:, None] * torch.tensor([1.0, -2.0]) + torch.linalg.det(grid.matrices)[:, None]
    spec = symplug.symmetry_content(u, grid, 4)
    haar_mean = float((grid.weights[:, None] * u * u).sum())
    assert abs(spec.norm2 - haar_mean) < 1e-12
    assert abs(sum(spec.power.values()) - haar_mean) < 1e-12 * haar_mean


def test_so3_sectors_and_truncation():
    grid = symplug.quadrature("SO3", 5)
    u = legendre_orbit(grid, COEFFS + [0.4])  # band 5
    spec = symplug.symmetry_content(u, grid, 4)  # resolve only up to l = 4
    full = [a * a / (2 * l + 1) for l, a in enumerate(COEFFS + [0.4])]
    assert list(spec.power) == [(l, 0) for l in range(5)]
    assert abs(spec.truncation - full[5] / sum(full)) < 1e-12  # reported, not hidden


@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_spherical_harmonic_orbit(l):
    """u(g) = Y^l_m(g n) lies wholly in (l, +1); det(g) Y^l_m(g n) in (l, -1)."""
    grid = symplug.quadrature("O3", 3)
    n = torch.nn.functional.normalize(torch.tensor([0.2, -0.9, 0.3]), dim=0)
    pts = np.ascontiguousarray((grid.matrices @ n).numpy())
    y = torch.from_numpy(sphericart.SphericalHarmonics(l).compute(pts))[:, l * l:]
    spec = symplug.symmetry_content(y, grid, 3)
    assert abs(spec.fractions[(l, 1)] - 1) < 1e-12
    det = torch.linalg.det(grid.matrices)
    spec = symplug.symmetry_content(det[:, None] * y, grid, 3)
    assert abs(spec.fractions[(l, -1)] - 1) < 1e-12


def test_invariant_and_centering():
    grid = symplug.quadrature("O3", 2)
    const = torch.full((grid.size, 4), 3.0)
    spec = symplug.symmetry_content(const, grid, 2)
    assert abs(spec.invariant_fraction - 1) < 1e-14
    assert torch.allclose(spec.mean, torch.full((4,), 3.0))
    u = const + legendre_orbit(grid, [0.0, 1.0])[:, None]
    raw = symplug.symmetry_content(u, grid, 2)
    centered = symplug.symmetry_content(u, grid, 2, centered=True)
    assert abs(raw.fractions[(1, 1)] - 4 * (1 / 3) / (4 * 9 + 4 / 3)) < 1e-12
    assert abs(centered.fractions[(1, 1)] - 1) < 1e-12 and centered.power[(0, 1)] < 1e-24
    shifted = symplug.symmetry_content(u, grid, 2, centered=True, mean=torch.full((4,), 2.0))
    assert abs(shifted.power[(0, 1)] - 4.0) < 1e-12


def test_planar_groups():
    axis = (0.0, 0.0, 1.0)
    so2 = symplug.quadrature("SO2", 4, axis=axis)
    phi = torch.atan2(so2.matrices[:, 1, 0], so2.matrices[:, 0, 0])
    u = 1.0 + 2.0 * torch.cos(2 * phi + 0.3) + 0.5 * torch.sin(3 * phi)
    spec = symplug.symmetry_content(u, so2, 4)
    total = 1 + 4 / 2 + 0.25 / 2
    assert abs(spec.fractions[(0, 0)] - 1 / total) < 1e-13
    assert abs(spec.fractions[(2, 0)] - 2 / total) < 1e-13
    assert abs(spec.fractions[(3, 0)] - 0.125 / total) < 1e-13
    o2 = symplug.quadrature("O2", 4, axis=axis)
    det = torch.linalg.det(o2.matrices)
    spec = symplug.symmetry_content(det, o2, 4)
    assert abs(spec.fractions[(0, -1)] - 1) < 1e-13
    x = o2.matrices[:, 0, 0]  # cos(phi) on both cosets: the m = 1 irrep
    spec = symplug.symmetry_content(torch.stack([x, o2.matrices[:, 1, 0]], 1), o2, 4)
    assert abs(spec.fractions[(1, 0)] - 1) < 1e-13
    assert sectors("O2", 2) == [(0, 1), (0, -1), (1, 0), (2, 0)]


def test_monte_carlo_has_standard_errors():
    grid = symplug.quadrature("O3", kind="haar", n=4000, seed=0)
    spec = symplug.symmetry_content(legendre_orbit(grid), grid, 4)
    for l, frac in enumerate(expected_fractions()):
        se = spec.stderr[(l, 1)]
        assert 0 < se < 0.05
        assert abs(spec.fractions[(l, 1)] - frac) < 5 * se + 1e-3


def test_errors():
    grid = symplug.quadrature("O3", 2)
    with pytest.raises(symplug.GridError, match="exceeds the degree 2"):
        symplug.symmetry_content(torch.zeros(grid.size), grid, 3)
    with pytest.raises(symplug.GridError, match="rows for a grid"):
        symplug.symmetry_content(torch.zeros(5), grid, 2)


def test_aliasing_is_an_error_not_a_zero():
    """Lebedev order 13 has negative weights: a response peaked on them aliases."""
    from scipy.integrate import lebedev_rule

    nodes, w = lebedev_rule(13)
    rot = torch.from_numpy(np.stack([np.eye(3)] * w.size))  # one element per node, weights as given
    grid = Grid("SO3", "lebedev", 2, 4, rot, torch.from_numpy(w / w.sum()), rule="Lebedev 13 raw")
    peaked = (grid.weights < 0).to(torch.float64)
    with pytest.raises(symplug.AliasingError, match="Lebedev 13 raw"):
        symplug.equivariance_error(peaked, grid, "0e")

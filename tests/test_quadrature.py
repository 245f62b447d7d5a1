"""Quadrature exactness: products of Wigner-D functions integrate exactly up to the
stated degree and visibly fail one step beyond."""

import math

import pytest
import torch

import symplug
from symplug.groups import Group, SO2
from symplug.quadrature import LEBEDEV_ORDERS, lebedev_order
from symplug.wigner import wigner_D


def gram_error(grid, l1, l2):
    """max |sum_q w D^l1_mn D^l2_m'n' - delta/(2l+1)| over all entries (proper rotations)."""
    _, rot = grid.group.proper_part(grid.matrices)
    d1 = wigner_D(l1, rot).reshape(grid.size, -1)
    d2 = wigner_D(l2, rot).reshape(grid.size, -1)
    gram = torch.einsum("q,qa,qb->ab", grid.weights, d1, d2)
    expected = torch.eye(d1.shape[1]) / (2 * l1 + 1) if l1 == l2 else torch.zeros_like(gram)
    return float((gram - expected).abs().max())


@pytest.mark.parametrize("kind", ["lebedev", "gauss-legendre"])
@pytest.mark.parametrize("group", ["SO3", "O3"])
@pytest.mark.parametrize("degree", [1, 2, 3, 5])
def test_wigner_products_exact_to_degree_and_not_beyond(kind, group, degree):
    grid = symplug.quadrature(group, degree, kind=kind)
    for l1 in range(degree + 1):
        for l2 in range(l1, degree + 1):
            assert gram_error(grid, l1, l2) < 1e-12, (l1, l2)
    # one step beyond: band 2L+1 aliases through the 2L+1 in-plane angles
    assert gram_error(grid, degree + 1, degree) > 1e-3


@pytest.mark.parametrize("group", ["SO2", "O2"])
@pytest.mark.parametrize("degree", [1, 3, 6])
def test_planar_fourier_products_exact_to_degree_and_not_beyond(group, degree):
    axis = (1.0, 2.0, -0.5)
    grid = symplug.quadrature(group, degree, axis=axis)
    _, rot = Group.parse(group, axis).proper_part(grid.matrices)
    phi = SO2(axis).angles(rot)
    modes = [torch.ones_like(phi)] + [f(m * phi) for m in range(1, degree + 2)
                                      for f in (torch.cos, torch.sin)]
    basis = torch.stack(modes, 1)
    gram = torch.einsum("q,qa,qb->ab", grid.weights, basis, basis)
    expected = torch.diag(torch.tensor([1.0] + [0.5] * (2 * degree + 2)))
    n_ok = 2 * degree + 1
    assert float((gram[:n_ok, :n_ok] - expected[:n_ok, :n_ok]).abs().max()) < 1e-13
    assert float((gram - expected).abs().max()) > 0.1  # cos((L+1)phi) cos(L phi) aliases


@pytest.mark.parametrize("group,kind", [("O3", "lebedev"), ("SO3", "gauss-legendre"),
                                        ("O2", "lebedev"), ("SO2", "lebedev"), ("O3", "haar")])
def test_grid_records(group, kind):
    grid = symplug.quadrature(group, None if kind == "haar" else 3, kind=kind, n=50, seed=1)
    assert grid.matrices.dtype == torch.float64 and grid.matrices.shape == (grid.size, 3, 3)
    assert abs(float(grid.weights.sum()) - 1.0) < 1e-14
    eye = torch.eye(3).expand(grid.size, 3, 3)
    assert float((grid.matrices @ grid.matrices.transpose(1, 2) - eye).abs().max()) < 1e-13
    det = torch.linalg.det(grid.matrices)
    if group in ("O3", "O2"):
        assert (det < 0).any() and (det > 0).any()
        if kind != "haar":
            assert abs(float(grid.weights[det < 0].sum()) - 0.5) < 1e-14
    else:
        assert (det > 0).all()
    record = grid.describe()
    planar = group in ("SO2", "O2") and kind != "haar"  # K equispaced angles whatever the kind
    assert record["size"] == grid.size and record["kind"] == ("equispaced" if planar else kind)


def test_smallest_grids():
    # degree L: Lebedev order >= 2L (positive weights only) times 2L+1 gamma
    assert symplug.quadrature("SO3", 4).size == 38 * 9  # order 9: 38 nodes
    assert symplug.quadrature("O3", 4).size == 2 * 38 * 9
    assert symplug.quadrature("SO3", 3, kind="gauss-legendre").size == 7 * 4 * 7
    assert symplug.quadrature("SO2", 5).size == 11
    assert symplug.quadrature("O3", 0).size == 2
    assert lebedev_order(12) == 15  # order 13 has negative weights and is skipped
    assert 13 not in LEBEDEV_ORDERS


def test_haar_reproducible_and_uniform():
    a = symplug.haar("SO3", 20000, seed=3)
    assert torch.equal(a, symplug.haar("SO3", 20000, seed=3))
    # Haar mean of each matrix entry is 0, of its square 1/3
    assert float(a.mean(0).abs().max()) < 0.02
    assert float(((a ** 2).mean(0) - 1 / 3).abs().max()) < 0.02
    o2 = symplug.haar("O2", 100, seed=0, axis=(0, 1, 0))
    assert torch.allclose(o2 @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]).expand(100, 3))


def test_generators_exponentiate_to_rotations():
    gens = symplug.generators("SO3")
    assert list(gens) == ["Lx", "Ly", "Lz"]
    rz = torch.linalg.matrix_exp(0.3 * gens["Lz"])
    expected = torch.tensor([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0],
                             [0, 0, 1.0]])
    assert torch.allclose(rz, expected, atol=1e-15)
    axis = torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2)
    (j,) = symplug.generators("SO2", axis=axis).values()
    assert torch.allclose(torch.linalg.matrix_exp(0.7 * j) @ axis, axis, atol=1e-15)


@pytest.mark.parametrize("kwargs,match", [
    ({"group": "SU2", "degree": 2}, "unknown group"),
    ({"group": "O3", "degree": -1}, "non-negative"),
    ({"group": "O3", "degree": 2, "kind": "grid"}, "unknown quadrature kind"),
    ({"group": "O3", "degree": 70}, "no Lebedev rule"),
    ({"group": "O3", "kind": "haar"}, "n >= 2"),
    ({"group": "SO2", "degree": 2, "axis": (0, 0, 0)}, "non-zero"),
])
def test_bad_quadrature_requests(kwargs, match):
    with pytest.raises(symplug.GridError, match=match):
        symplug.quadrature(**kwargs)

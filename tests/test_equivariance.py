"""Metric A against analytic values, the bias-variance split and aggregation."""

import pytest
import torch

import symplug


@pytest.mark.parametrize("group", ["O3", "SO3"])
def test_planted_vector_breaking(group):
    grid = symplug.quadrature(group, 3)
    v, w, eps = torch.tensor([0.3, -1.2, 0.7]), torch.tensor([1.0, 2.0, -0.5]), 1e-3
    y = grid.matrices @ v + eps * w  # y(g x) = g v + eps w
    err = symplug.equivariance_error(y, grid, "1o")
    assert abs(err.variance - eps ** 2 * float(w @ w) / 3) < 1e-12 * eps ** 2
    assert torch.allclose(err.mean, v, atol=1e-14)
    assert abs(err.relative - eps * float(w.norm()) / float((v @ v + eps ** 2 * w @ w).sqrt())) < 1e-10


def test_invariant_output_has_zero_error():
    grid = symplug.quadrature("O3", 4)
    y = torch.full((grid.size, 5), 2.5)
    err = symplug.equivariance_error(y, grid, "0e")
    assert err.variance <= 1e-24 and err.rmse <= 1e-12


def test_cartesian2_analytic():
    grid = symplug.quadrature("O3", 2)
    t0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0)).double()
    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(1)).double()
    eps = 0.01
    y = grid.matrices @ t0 @ grid.matrices.transpose(1, 2) + eps * w
    err = symplug.equivariance_error(y, grid, "cartesian2")
    # Pi = T0 + eps tr(W)/3 I, A^2 = eps^2 (|W|^2 - tr(W)^2 / 3)
    expected = eps ** 2 * (float((w * w).sum()) - float(torch.trace(w)) ** 2 / 3) / 9
    assert abs(err.variance - expected) < 1e-12 * expected
    assert torch.allclose(err.mean.reshape(3, 3), t0 + eps * torch.trace(w) / 3 * torch.eye(3), atol=1e-14)


def test_per_atom_forces_and_bias_variance():
    grid = symplug.quadrature("O3", 2)
    gen = torch.Generator().manual_seed(3)
    errors, refs, direct = [], [], []
    for _ in range(3):
        f0 = torch.randn(4, 3, generator=gen).double()   # equivariant part (per atom)
        ref = f0 + 0.1 * torch.randn(4, 3, generator=gen).double()
        w = torch.randn(4, 3, generator=gen).double()
        y = torch.einsum("qij,aj->qai", grid.matrices, f0) + 0.05 * w
        err = symplug.equivariance_error(y, grid, "1o")
        z = torch.einsum("qji,qaj->qai", grid.matrices, y)
        direct.append(float((grid.weights[:, None, None] * (z - ref) ** 2).sum()) / 12)
        errors.append(err)
        refs.append(ref)
    split = symplug.bias_variance(errors, refs)
    assert abs(split.total_rmse ** 2 - sum(direct) / 3) < 1e-13
    assert abs(split.total_rmse ** 2 - split.symmetrized_rmse ** 2 - split.equivariance_rmse ** 2) < 1e-14
    agg = symplug.aggregate_errors(errors)
    assert abs(agg.rmse - split.equivariance_rmse) < 1e-15


def test_chunking_does_not_change_results():
    grid = symplug.quadrature("O3", 3)
    y = grid.matrices @ torch.tensor([1.0, 0.0, 0.0]) + torch.sin(grid.matrices[:, 0, :])
    a = symplug.equivariance_error(y, grid, "1o", chunk_size=7)
    b = symplug.equivariance_error(y, grid, "1o", chunk_size=10_000)
    assert abs(a.variance - b.variance) < 1e-15
    sa = symplug.symmetry_content(y, grid, 3, chunk_size=5)
    sb = symplug.symmetry_content(y, grid, 3)
    assert max(abs(sa.power[k] - sb.power[k]) for k in sa.power) < 1e-14


def test_monte_carlo_standard_error():
    grid = symplug.quadrature("SO3", kind="haar", n=3000, seed=1)
    w, eps = torch.tensor([1.0, 2.0, -0.5]), 0.1
    err = symplug.equivariance_error(grid.matrices @ torch.ones(3) + eps * w, grid, "1o")
    exact = eps ** 2 * float(w @ w) / 3
    assert err.stderr is not None and err.stderr > 0
    assert abs(err.variance - exact) < 5 * err.stderr


def test_shape_errors_name_the_size():
    grid = symplug.quadrature("O3", 1)
    with pytest.raises(symplug.RepresentationError, match="size 3"):
        symplug.equivariance_error(torch.zeros(grid.size, 4), grid, "1o", name="forces")

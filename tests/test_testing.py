"""The pytest plugin: assert_equivariant passes, or fails with a readable report."""

import pytest
import torch

import symplug
from symplug.testing import assert_equivariant, rotate_points

from helpers import CoordinateMLP, DistanceModel


def test_passes_for_invariant_and_equivariant():
    pts = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    errors = assert_equivariant(DistanceModel(), pts, rep="0e", max_rmse=1e-10, degree=2)
    assert errors["energy"].rmse < 1e-10
    grid = symplug.quadrature("O3", 2)
    values = rotate_points(torch.tensor([1.0, 2.0, 3.0]), grid.matrices)
    assert_equivariant(values, rep="1o", grid=grid, max_rmse=1e-12)


def test_fails_with_worst_sectors():
    pts = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError) as info:
        assert_equivariant(CoordinateMLP(points=4), pts, rep={"energy": "0e", "dipole": "1o"},
                           max_rmse=1e-6, degree=3)
    report = str(info.value)
    assert "FAIL energy [0e]" in report and "FAIL dipole [1o]" in report
    assert "worst sectors" in report and "(1,+1)" in report and "lebedev" in report


def test_planted_breaking_sector():
    """y(g x) = g v + eps w: the back-transformed response carries eps g^T w, all in (1,+1)."""
    grid = symplug.quadrature("O3", 2)
    values = grid.matrices @ torch.tensor([1.0, 0.0, 0.0]) + 1e-3 * torch.tensor([0.0, 1.0, 0.0])
    with pytest.raises(AssertionError, match=r"worst sectors of rho\(g\)\^-1 y\(g x\): \(1,\+1\)"):
        assert_equivariant(values, rep="1o", grid=grid, max_rmse=1e-6)


def test_fixture_in_a_user_suite(pytester):
    pytester.makepyfile("""
        import torch

        def test_invariant(assert_equivariant):
            model = lambda x: (x ** 2).sum((-1, -2))
            assert_equivariant(model, torch.randn(3, 3, dtype=torch.float64), max_rmse=1e-10)

        def test_broken(assert_equivariant):
            model = lambda x: x[..., 0].sum(-1)
            assert_equivariant(model, torch.randn(3, 3, dtype=torch.float64), max_rmse=1e-10)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL output ?0e?: equivariance RMSE*", "*worst sectors*"])

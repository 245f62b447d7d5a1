"""Representations: homomorphism, conventions (Cartesian, parity, spherical basis), errors."""

import numpy as np
import pytest
import sphericart
import torch

import symplug
from symplug.representations import representation

SPECS = ["0e", "0o", "1o", "1e", "2e", "3o", "cartesian2", "2,+1", "3,-1", "0e+1o", "2x1o+2e+1,-1"]


@pytest.mark.parametrize("spec", SPECS)
def test_homomorphism_and_generator(spec):
    rep = representation(spec)
    g = symplug.haar("O3", 6, seed=5)
    m = rep.matrices(g)
    assert m.shape == (6, rep.dim, rep.dim)
    prod = rep.matrices(g[:3] @ g[3:])
    assert float((m[:3] @ m[3:] - prod).abs().max()) < 1e-13
    eye = torch.eye(rep.dim).expand(6, -1, -1)
    assert float((m @ m.transpose(1, 2) - eye).abs().max()) < 1e-13
    j = sum(c * gen for c, gen in zip((0.3, -0.2, 0.5), symplug.generators("SO3").values()))
    expm = torch.linalg.matrix_exp(rep.generator(j))
    assert float((expm - rep.matrices(torch.linalg.matrix_exp(j))[0]).abs().max()) < 1e-13


def test_cartesian_conventions():
    g = symplug.haar("O3", 8, seed=2)
    det = torch.linalg.det(g)
    assert torch.allclose(representation("1o").matrices(g), g, atol=1e-15)
    assert torch.allclose(representation("1e").matrices(g), det[:, None, None] * g, atol=1e-15)
    assert torch.allclose(representation("0o").matrices(g)[:, 0, 0], det)
    t = torch.randn(3, 3)
    rotated = representation("cartesian2").matrices(g) @ t.reshape(9)
    assert torch.allclose(rotated.reshape(8, 3, 3), g @ t @ g.transpose(1, 2), atol=1e-14)
    assert representation("cartesian2").sectors == ((0, 1), (1, -1), (2, 1))


@pytest.mark.parametrize("l", [1, 2, 4])
@pytest.mark.parametrize("sigma", [1, -1])
def test_spherical_blocks_follow_sphericart(l, sigma):
    """Y(g r) = rho(g) Y(r) up to the parity factor, in sphericart's real basis."""
    g = symplug.haar("O3", 5, seed=l)
    rho = representation(f"{l},{sigma:+d}").matrices(g)
    r = torch.nn.functional.normalize(torch.randn(7, 3), dim=1)
    sh = sphericart.SphericalHarmonics(l)
    y = torch.from_numpy(sh.compute(r.numpy()))[:, l * l:]
    for q in range(5):
        y_rot = torch.from_numpy(sh.compute(np.ascontiguousarray((r @ g[q].T).numpy())))[:, l * l:]
        det = float(torch.linalg.det(g[q]))
        # Y(-r) = (-1)^l Y(r): a (l, sigma) block picks up sigma (-1)^l under inversion
        factor = 1.0 if det > 0 else sigma * (-1) ** l * (-1) ** l
        assert torch.allclose(factor * y_rot, y @ rho[q].T, atol=1e-13)


def test_parse_errors_and_shapes():
    with pytest.raises(symplug.RepresentationError, match="cannot parse"):
        representation("1x")
    with pytest.raises(symplug.RepresentationError, match="empty"):
        representation("  ")
    rep = representation("0e+1o")
    assert rep.dim == 4
    with pytest.raises(symplug.RepresentationError, match="trailing dimension of size 4"):
        rep.flatten(torch.zeros(10, 3), 1, "dipole")
    assert representation("cartesian2").flatten(torch.zeros(5, 2, 3, 3), 1).shape == (5, 2, 9)
    assert representation("2x1o").sectors == ((1, 1), (1, 1))

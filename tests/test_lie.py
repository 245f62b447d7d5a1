"""Lie derivatives: zero for equivariant outputs, analytic for planted terms."""

import math

import pytest
import torch

import symplug
from symplug.testing import rotate_points

from helpers import CoordinateMLP, DistanceModel, load_example

example = load_example("e3nn_equivariance")


class PlantedLinear(torch.nn.Module):
    """y(x) = sum of points (an equivariant 1o) + eps * w (breaking)."""

    def __init__(self, eps, w):
        super().__init__()
        self.eps, self.w = eps, w

    def forward(self, pos):
        return {"dipole": pos.sum(1) + self.eps * self.w, "energy": (pos ** 2).sum((1, 2))}


@pytest.mark.parametrize("method", ["forward", "central"])
def test_planted_lie_derivative(method):
    eps, w = 1e-2, torch.tensor([1.0, 2.0, -0.5])
    pts = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    lie = symplug.lie_derivatives(PlantedLinear(eps, w), pts, rotate_points,
                                  outputs={"dipole": "1o", "energy": "0e"}, method=method)
    tol = 1e-14 if method == "forward" else 1e-10
    for name, j in symplug.generators("SO3").items():
        expected = eps * float((j @ w).norm()) / math.sqrt(3)  # L_J y = -eps J w
        assert abs(lie["dipole"][name].rms - expected) < tol
        assert lie["energy"][name].rms < tol
        assert lie["dipole"][name].method == method


def test_e3nn_network_falls_back_and_vanishes():
    net = example.E3nnPointNet()
    pts = example.make_clouds(1, points=5)[0]
    lie = symplug.lie_derivatives(net, pts, rotate_points,
                                  outputs={k: v.rep for k, v in example.OUTPUTS.items()})
    for gens in lie.values():
        for d in gens.values():
            assert d.method == "central" and d.rms < 1e-9


def test_layers_and_planar_generator():
    pts = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    lie = symplug.lie_derivatives(DistanceModel(), pts, rotate_points, outputs={"energy": "0e"},
                                  layers=["pair"], group="SO2")
    assert list(lie["pair"]) == ["L_axis"] and lie["pair"]["L_axis"].rms < 1e-10  # cdist: central
    lie = symplug.lie_derivatives(CoordinateMLP(points=4), pts, rotate_points,
                                  outputs={"energy": "0e"}, layers=["embed"])
    assert lie["energy"]["Lz"].rms > 1e-4 and lie["embed"]["Lx"].rms > 1e-3

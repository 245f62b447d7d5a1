"""A and B of an exactly equivariant e3nn network, and of the same network with
planted symmetry-breaking terms, through symplug's public API.

Run: ``python examples/e3nn_equivariance.py [--degree 4] [--json out.json]``

The network maps a point cloud (B, P, 3) to an energy ``0e``, a dipole ``1o``
and a quadrupole ``2e`` (e3nn basis). The broken variant adds eps * w to the
dipole (A^2/3 = eps^2 |w|^2 / 3 exactly) and eps * e.x_0 to the energy
(A^2 = eps^2 |x_0|^2 / 3 for a unit e), so the printed errors can be checked by hand.
"""

from __future__ import annotations

import argparse
import math

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from e3nn.math import soft_one_hot_linspace

import symplug
from symplug.cli import summary_table
from symplug.result import write_json
from symplug.testing import rotate_points

OUTPUTS = {"energy": symplug.Output("0e", "a.u."), "dipole": symplug.Output("1o", "a.u."),
           "quadrupole": symplug.Output("2e", "a.u.")}


class E3nnPointNet(torch.nn.Module):
    """Complete-graph point convolution: spherical harmonics of r_ij (l <= 2), radial
    weights from |r_ij|, a tensor product (layer ``conv``), a quadratic tensor
    product of the point features with themselves (``mix``) and a per-point
    linear readout summed over points."""

    def __init__(self, n_basis: int = 8, cutoff: float = 4.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.n_basis, self.cutoff = n_basis, cutoff
        self.irreps_sh = o3.Irreps.spherical_harmonics(2)
        hidden = o3.Irreps("4x0e+4x1o+4x2e")
        self.conv = o3.FullyConnectedTensorProduct("1x0e", self.irreps_sh, hidden,
                                                   shared_weights=False)
        self.radial = e3nn_nn.FullyConnectedNet([n_basis, 16, self.conv.weight_numel], torch.tanh)
        self.mix = o3.FullyConnectedTensorProduct(hidden, hidden, hidden)
        self.readout = o3.Linear(hidden, "0e+1o+2e")

    def forward(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        b, p, _ = pos.shape
        i, j = torch.triu_indices(p, p, 1)
        i, j = torch.cat([i, j]), torch.cat([j, i])
        rel = pos[:, j] - pos[:, i]  # (B, E, 3)
        sh = o3.spherical_harmonics(self.irreps_sh, rel, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(rel.norm(dim=-1), 0.0, self.cutoff, self.n_basis,
                                      basis="smooth_finite", cutoff=True) * self.n_basis ** 0.5
        msg = self.conv(torch.ones_like(sh[..., :1]), sh, self.radial(basis))  # (B, E, hidden)
        node = torch.zeros(b, p, msg.shape[-1], dtype=msg.dtype).index_add_(1, i, msg)
        out = self.readout(self.mix(node, node)).sum(1) / p
        return {"energy": out[:, :1], "dipole": out[:, 1:4], "quadrupole": out[:, 4:9]}


class PlantedBreaking(torch.nn.Module):
    """``net`` plus eps * w on the dipole and eps * e.x_0 on the energy (analytic A)."""

    def __init__(self, net: torch.nn.Module, eps: float, w: torch.Tensor, e: torch.Tensor):
        super().__init__()
        self.net, self.eps = net, eps
        self.register_buffer("w", w)
        self.register_buffer("e", e)

    def forward(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.net(pos))
        out["dipole"] = out["dipole"] + self.eps * self.w
        out["energy"] = out["energy"] + self.eps * (pos[:, 0] @ self.e)[:, None]
        return out


def point_domain() -> symplug.Domain:
    """Point clouds (P, 3) acted on by O(3) about the origin."""
    return symplug.Domain(name="points", act=rotate_points, outputs=OUTPUTS,
                          groups=("O3", "SO3"), description="3D point clouds")


def make_clouds(n: int, points: int = 6, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(points, 3, generator=gen, dtype=torch.float64) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--json", help="write the broken network's result here")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)

    net = E3nnPointNet()
    w, e = torch.tensor([1.0, 2.0, -0.5]), torch.tensor([0.0, 0.0, 1.0])
    broken = PlantedBreaking(net, args.eps, w, e)
    clouds = make_clouds(args.samples)
    domain = point_domain()
    for title, model, prefix in (("e3nn network (exactly equivariant)", net, ""),
                                 (f"with planted breaking, eps = {args.eps}", broken, "net.")):
        print(f"\n## {title}")
        result = symplug.diagnose(model, clouds, domain, degree=args.degree,
                                  layers=[prefix + "conv", prefix + "mix"], progress=False)
        print(summary_table(result))
    expected_dipole = args.eps * float(w.norm()) / math.sqrt(3)
    expected_energy = args.eps * math.sqrt(sum(float(c[0] @ c[0]) / 3 for c in clouds) / len(clouds))
    print(f"\nanalytic: dipole A = {expected_dipole:.6e}, energy A = {expected_energy:.6e}")
    lie = symplug.lie_derivatives(broken, clouds[0], rotate_points,
                                  outputs={k: v.rep for k, v in OUTPUTS.items()}, layers=["net.mix"])
    print("Lie derivatives (RMS per generator): " + "; ".join(
        f"{name}: " + ", ".join(f"{g} {d.rms:.2e}" for g, d in gens.items())
        for name, gens in lie.items()))
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()

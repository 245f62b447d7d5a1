"""A metatomic model with planted symmetry breaking, exported to a file for the tests.

Energy: sum over half-list pairs of 0.2 (|d| - 2.55)^2 + eps (d . w)^2 (invariant to
translations and wrapping, not to rotations). Direct (non-conservative) forces:
f_i = eps ((r_i - r_mean) . w) w + c, with the net force N c fixed in the lab frame.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput,
                             NeighborListOptions, System)

EPS = 1e-2
W = [0.3, -0.5, 0.8]
NET = [0.04, 0.01, -0.02]  # c (eV/A): a constant per-atom force in the lab frame
NET_DIPOLE = [0.05, -0.02, 0.04]  # e A, fixed in the lab frame
DIPOLE = "mtt::dipole"  # sum_i q_i (r_i - r_mean) + NET_DIPOLE, q_i = +-0.1 (even/odd i)
CUTOFF = 3.0


class PlantedPairModel(torch.nn.Module):
    def __init__(self, force_name: str = "non_conservative_force"):
        super().__init__()
        self.register_buffer("w", torch.tensor(W, dtype=torch.float64))
        self.register_buffer("net", torch.tensor(NET, dtype=torch.float64))
        self.register_buffer("net_dipole", torch.tensor(NET_DIPOLE, dtype=torch.float64))
        self.eps = EPS
        self.force_name = force_name
        self.nl = NeighborListOptions(cutoff=CUTOFF, full_list=False, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.nl]

    def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:
        energies: List[torch.Tensor] = []
        forces: List[torch.Tensor] = []
        samples: List[torch.Tensor] = []
        dipoles: List[torch.Tensor] = []
        for i, system in enumerate(systems):
            d = system.get_neighbor_list(self.nl).values.reshape(-1, 3)
            r = torch.linalg.vector_norm(d, dim=1)
            proj = d @ self.w
            energies.append((0.2 * (r - 2.55) ** 2).sum() + self.eps * (proj * proj).sum())
            rel = system.positions - system.positions.mean(dim=0)
            forces.append(self.eps * (rel @ self.w)[:, None] * self.w[None, :] + self.net)
            n = len(system)
            samples.append(torch.stack([torch.full((n,), i), torch.arange(n)], dim=1))
            q = 0.1 - 0.2 * (torch.arange(n) % 2).to(torch.float64)
            dipoles.append(q @ rel + self.net_dipole)
        result: Dict[str, TensorMap] = {}
        keys = Labels("_", torch.tensor([[0]]))
        if "energy" in outputs:
            block = TensorBlock(values=torch.stack(energies).reshape(-1, 1),
                                samples=Labels("system", torch.arange(len(systems)).reshape(-1, 1)),
                                components=[], properties=Labels("energy", torch.tensor([[0]])))
            result["energy"] = TensorMap(keys, [block])
        if self.force_name in outputs:
            block = TensorBlock(values=torch.cat(forces).reshape(-1, 3, 1),
                                samples=Labels(["system", "atom"], torch.cat(samples)),
                                components=[Labels("xyz", torch.tensor([[0], [1], [2]]))],
                                properties=Labels(self.force_name, torch.tensor([[0]])))
            result[self.force_name] = TensorMap(keys, [block])
        if "mtt::dipole" in outputs:
            block = TensorBlock(values=torch.stack(dipoles).reshape(-1, 3, 1),
                                samples=Labels("system", torch.arange(len(systems)).reshape(-1, 1)),
                                components=[Labels("xyz", torch.tensor([[0], [1], [2]]))],
                                properties=Labels("dipole", torch.tensor([[0]])))
            result["mtt::dipole"] = TensorMap(keys, [block])
        return result


def export(path, force_name: str = "non_conservative_force") -> str:
    outputs = {"energy": ModelOutput(quantity="energy", unit="eV", sample_kind="system"),
               force_name: ModelOutput(quantity="force", unit="eV/Angstrom", sample_kind="atom"),
               DIPOLE: ModelOutput(unit="", sample_kind="system")}
    capabilities = ModelCapabilities(outputs=outputs, atomic_types=[29], interaction_range=CUTOFF,
                                     length_unit="Angstrom", supported_devices=["cpu"],
                                     dtype="float64")
    model = AtomisticModel(PlantedPairModel(force_name).eval(), ModelMetadata(), capabilities)
    model.save(str(path))
    return str(path)

"""A PointNet-style jet tagger on raw constituent 4-momenta: the paper's model class.

Each constituent enters through numbers computed component by component from the
lab-frame 4-momenta, none of them invariant under rotations or boosts:

* its 4-momentum over the jet energy, (E, px, py, pz) / E_jet (4 numbers);
* its lab-frame Cartesian offset from the jet direction, p/|p| - P/|P| (3 numbers;
  P the summed 3-momentum of the jet);
* log(E / E_jet).

The tagger reads the leading ``length`` constituents in pT (64, as it was trained).
A shared per-particle MLP (layer ``phi``, d channels per particle), a symmetric
pooling over the particles (layer ``pool``: the masked sum and the masked maximum,
2d channels) and an MLP head give two logits (QCD, Top); the score is the softmax
probability of Top. Nothing in the architecture knows about rotations: the score is
invariant under permutations of the constituents by construction and under nothing
else. How much rotational invariance it has is learned, from the data or from
augmentation by random rotations about the beam (``train_tagger --arch pointnet
--augment SO2``).
"""

from __future__ import annotations

import torch
from torch import nn

from .constituents import leading

N_INPUTS = 8


def raw_inputs(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, P, 8) per-constituent inputs of (N, P, 4) constituents (E, px, py, pz) in
    GeV (see the module docstring), zero where masked."""
    m = mask.to(p4.dtype)[..., None]
    jet = (p4 * m).sum(dim=1)  # (N, 4)
    e_jet = jet[:, :1].clamp_min(1e-8)[:, None]  # (N, 1, 1)
    p = p4[..., 1:]
    direction = p / torch.linalg.vector_norm(p, dim=-1, keepdim=True).clamp_min(1e-8)
    axis = jet[:, 1:] / torch.linalg.vector_norm(jet[:, 1:], dim=-1, keepdim=True).clamp_min(1e-8)
    log_e = torch.log(p4[..., :1].clamp_min(1e-8) / e_jet)
    feats = torch.cat([p4 / e_jet, direction - axis[:, None], log_e], dim=-1)
    return feats * m


class PointNetTagger(nn.Module):
    """Logits (N, 2) for jets given as (p4 (N, P, 4) GeV, mask (N, P))."""

    def __init__(self, d: int = 128, hidden: int = 128, length: int = 64):
        super().__init__()
        self.config = {"arch": "pointnet", "d": d, "hidden": hidden, "length": length}
        self.length = int(length)
        self.register_buffer("shift", torch.zeros(N_INPUTS))
        self.register_buffer("scale", torch.ones(N_INPUTS))
        self.phi = nn.Sequential(nn.Linear(N_INPUTS, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.pool = SymmetricPool()
        self.head = nn.Sequential(nn.Linear(2 * d, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                  nn.GELU(), nn.Linear(hidden, 2))

    def features(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The standardised per-particle inputs of ``phi``, (N, P, 8)."""
        return (raw_inputs(p4, mask) - self.shift) / self.scale

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p4, mask = leading(p4, mask.bool(), self.length)
        x = self.phi(self.features(p4, mask)) * mask[..., None]
        return self.head(self.pool(x, mask))

    def score(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Top probability (N,)."""
        return torch.softmax(self.forward(p4, mask), dim=-1)[:, 1]

    def layer_names(self) -> tuple[str, ...]:
        """The hidden layers symplug tracks, input to output."""
        return ("phi", "pool")


class SymmetricPool(nn.Module):
    """(N, 2d): the masked sum and the masked maximum of (N, P, d) particle channels
    (a jet without particles pools to 0)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = (x * mask[..., None]).sum(dim=1)
        fill = torch.finfo(x.dtype).min
        largest = x.masked_fill(~mask[..., None], fill).amax(dim=1)
        largest = torch.where(mask.any(dim=1, keepdim=True), largest, torch.zeros_like(largest))
        return torch.cat([total, largest], dim=-1)

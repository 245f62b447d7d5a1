"""The reference unconstrained jet tagger: a small particle transformer.

Per-particle features derived from the raw 4-momenta after any transformation:
log pT, log E, log(pT/pT_jet), log(E/E_jet), delta eta, delta phi, delta R to the jet
axis and the Cartesian (px, py, pz)/E_jet (these last three carry no built-in
symmetry). An MLP embeds them (layer ``embed``), particle self-attention layers with
a padding mask follow (``blocks.0``, ``blocks.1``), a learned class token attends to
the particles (``pool``), and a head gives two logits (QCD, Top). The score is the
softmax probability of Top. Symmetry is learned only from the data (jets arrive at
all azimuths, so rotations about the beam are a data symmetry).
"""

from __future__ import annotations

import torch
from torch import nn

N_FEATURES = 10


def particle_features(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, P, 10) features of (N, P, 4) constituents (E, px, py, pz), zero where masked."""
    m = mask.to(p4.dtype)[..., None]
    jet = (p4 * m).sum(dim=1)
    e, px, py, pz = p4.unbind(-1)
    pt = torch.hypot(px, py).clamp_min(1e-8)
    jet_pt = torch.hypot(jet[:, 1], jet[:, 2]).clamp_min(1e-8)
    eta = torch.asinh(pz / pt)
    phi = torch.atan2(py, px)
    jet_eta = torch.asinh(jet[:, 3] / jet_pt)
    jet_phi = torch.atan2(jet[:, 2], jet[:, 1])
    deta = eta - jet_eta[:, None]
    dphi = torch.remainder(phi - jet_phi[:, None] + torch.pi, 2 * torch.pi) - torch.pi
    feats = torch.stack([
        torch.log(pt), torch.log(e.clamp_min(1e-8)), torch.log(pt / jet_pt[:, None]),
        torch.log(e.clamp_min(1e-8) / jet[:, :1]), deta, dphi, torch.hypot(deta, dphi),
        px / jet[:, :1], py / jet[:, :1], pz / jet[:, :1]], dim=-1)
    return feats * m


class ParticleTransformerTagger(nn.Module):
    """Scores (N, 2) logits for jets given as (p4, mask)."""

    def __init__(self, d: int = 32, heads: int = 4, n_blocks: int = 2):
        super().__init__()
        self.config = {"d": d, "heads": heads, "n_blocks": n_blocks}
        self.register_buffer("shift", torch.zeros(N_FEATURES))
        self.register_buffer("scale", torch.ones(N_FEATURES))
        self.embed = nn.Sequential(nn.Linear(N_FEATURES, d), nn.GELU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0,
                                                               batch_first=True, norm_first=True)
                                    for _ in range(n_blocks))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pool = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2))

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        x = (particle_features(p4, mask) - self.shift) / self.scale
        x = self.embed(x) * mask[..., None]
        for block in self.blocks:
            x = block(x, src_key_padding_mask=~mask) * mask[..., None]
        pooled, _ = self.pool(self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x, x,
                              key_padding_mask=~mask)
        return self.head(pooled[:, 0])

    def score(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Top probability (N,)."""
        return torch.softmax(self.forward(p4, mask), dim=-1)[:, 1]

"""The reference unconstrained jet tagger: a small particle transformer.

Per-particle features derived from the raw 4-momenta after any transformation:
log pT, log E, log(pT/pT_jet), log(E/E_jet), delta eta, delta phi, delta R to the jet
axis and the Cartesian (px, py, pz)/E_jet (these last three carry no built-in
symmetry). An MLP embeds them (layer ``embed``), particle self-attention layers with
a padding mask follow (``blocks.0``, ``blocks.1``), a learned class token attends to
the particles (``pool``), and a head gives two logits (QCD, Top). The score is the
softmax probability of Top. Symmetry is learned only from the data (jets arrive at
all azimuths, so rotations about the beam are a data symmetry).

Two optional minimal inductive biases (defaults: the shipped architecture, which
loads and evaluates exactly as before):

* ``sh_lmax=L`` (band-limited particle directions): the three lab-frame Cartesian
  features are dropped; instead each particle's direction in its jet's local frame
  (e_theta, e_phi, n_jet: the spherical unit vectors at the jet axis) enters through
  real spherical harmonics Y_lm, l <= L (e3nn, component normalisation), linearly,
  through the layer ``direction`` added to the ``embed`` output. Guaranteed: every
  input feature, and so the whole tagger, is exactly invariant under rotations about
  the beam (the local frame turns with the jet); the ``direction`` output is
  band-limited to |m| <= L under rotations about each jet's axis. Not guaranteed:
  invariance about the jet axis (log pT, log E, delta eta, delta phi are not), any
  SO(3) property in the lab, or boost invariance; the trunk is unconstrained.
* ``readout="lorentz"`` (an invariant readout): the class-token pool and head are
  replaced by ``readout``: K channels of per-particle weights w_ik = sigmoid(.) read
  from the last particle tokens, the weighted 4-momenta P_k = sum_i w_ik p_i, and an
  MLP on the Minkowski products log(1 + P_k.P_l / (10 GeV)^2), k <= l. Guaranteed: for
  weights that do not change, the score is exactly invariant under every Lorentz
  transformation of the constituents (rotations in any frame, boosts). Not
  guaranteed: the weights come from the unconstrained trunk, so the score still
  changes with orientation through them.
"""

from __future__ import annotations

import torch
from torch import nn

N_FEATURES = 10
N_KINEMATIC = 7  # the features before the three Cartesian ones
READOUTS = ("class_token", "lorentz")


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


def local_directions(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, P, 3) unit 3-momentum directions of the constituents in their jet's local frame
    (e_theta, e_phi, n) at the jet axis n, (0, 0, 1) where masked. The frame turns with
    the jet under rotations about the beam (z), so these directions are invariant
    under them; a rotation about the jet axis turns them about the local z axis."""
    m = mask.to(p4.dtype)[..., None]
    jet = (p4[..., 1:] * m).sum(dim=1)
    pt = torch.hypot(jet[:, 0], jet[:, 1]).clamp_min(1e-12)
    p = torch.linalg.vector_norm(jet, dim=-1).clamp_min(1e-12)
    cos_phi, sin_phi = jet[:, 0] / pt, jet[:, 1] / pt
    cos_theta, sin_theta = jet[:, 2] / p, pt / p
    e_theta = torch.stack([cos_theta * cos_phi, cos_theta * sin_phi, -sin_theta], dim=-1)
    e_phi = torch.stack([-sin_phi, cos_phi, torch.zeros_like(cos_phi)], dim=-1)
    frame = torch.stack([e_theta, e_phi, jet / p[:, None]], dim=1)  # rows: local axes
    local = torch.einsum("nab,npb->npa", frame, p4[..., 1:])
    pole = torch.tensor([0.0, 0.0, 1.0], dtype=p4.dtype)
    return torch.where(mask[..., None].bool(), local, pole)


class LorentzReadout(nn.Module):
    """Logits (N, 2) from Minkowski products of ``channels`` trunk-weighted sums of the
    constituent 4-momenta (see the module docstring)."""

    def __init__(self, d: int, channels: int = 8):
        super().__init__()
        self.channels = channels
        self.weights = nn.Linear(d, channels)
        rows, cols = torch.triu_indices(channels, channels)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.head = nn.Sequential(nn.Linear(len(rows), d), nn.GELU(), nn.Linear(d, 2))

    def forward(self, x: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, P, d) particle tokens, p4 (N, P, 4) (E, px, py, pz) GeV, mask (N, P)."""
        w = torch.sigmoid(self.weights(x)) * mask.to(x.dtype)[..., None]  # (N, P, K)
        total = torch.einsum("npk,npa->nka", w, p4.to(x.dtype))  # (N, K, 4)
        metric = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=x.dtype)
        gram = torch.einsum("nka,nla,a->nkl", total, total, metric)
        products = gram[:, self.rows, self.cols].clamp_min(0.0) / 100.0  # (10 GeV)^2
        return self.head(torch.log1p(products))


class ParticleTransformerTagger(nn.Module):
    """Scores (N, 2) logits for jets given as (p4, mask)."""

    def __init__(self, d: int = 32, heads: int = 4, n_blocks: int = 2,
                 sh_lmax: int | None = None, readout: str = "class_token"):
        super().__init__()
        if sh_lmax is not None and (isinstance(sh_lmax, bool) or not isinstance(sh_lmax, int)
                                    or sh_lmax < 0):
            raise ValueError(f"sh_lmax must be None (lab Cartesian features) or an integer "
                             f">= 0, got {sh_lmax!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.config = {"d": d, "heads": heads, "n_blocks": n_blocks, "sh_lmax": sh_lmax,
                       "readout": readout}
        self.sh_lmax, self.readout_kind = sh_lmax, readout
        n_in = N_FEATURES if sh_lmax is None else N_KINEMATIC
        self.register_buffer("shift", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))
        self.embed = nn.Sequential(nn.Linear(n_in, d), nn.GELU(), nn.Linear(d, d))
        if sh_lmax is not None:
            self.direction = nn.Linear((sh_lmax + 1) ** 2, d)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0,
                                                               batch_first=True, norm_first=True)
                                    for _ in range(n_blocks))
        if readout == "class_token":
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            self.pool = nn.MultiheadAttention(d, heads, batch_first=True)
            self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(),
                                      nn.Linear(d, 2))
        else:
            self.readout = LorentzReadout(d)

    def features(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The standardised per-particle inputs of ``embed``, (N, P, 10 or 7)."""
        feats = particle_features(p4, mask)
        if self.sh_lmax is not None:
            feats = feats[..., :N_KINEMATIC]
        return (feats - self.shift) / self.scale

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        x = self.embed(self.features(p4, mask))
        if self.sh_lmax is not None:
            from e3nn.o3 import spherical_harmonics

            y = spherical_harmonics(list(range(self.sh_lmax + 1)), local_directions(p4, mask),
                                    normalize=True, normalization="component")
            x = x + self.direction(y)
        x = x * mask[..., None]
        for block in self.blocks:
            x = block(x, src_key_padding_mask=~mask) * mask[..., None]
        if self.readout_kind == "lorentz":
            return self.readout(x, p4, mask)
        pooled, _ = self.pool(self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x, x,
                              key_padding_mask=~mask)
        return self.head(pooled[:, 0])

    def score(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Top probability (N,)."""
        return torch.softmax(self.forward(p4, mask), dim=-1)[:, 1]

    def layer_names(self) -> tuple[str, ...]:
        """The hidden layers symplug tracks, input to output."""
        pooled = "pool" if self.readout_kind == "class_token" else "readout.weights"
        return ("embed", *(f"blocks.{k}" for k in range(len(self.blocks))), pooled)

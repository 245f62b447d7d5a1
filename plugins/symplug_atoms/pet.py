"""The reference unconstrained model: a small point-edge transformer in the spirit of PET.

Edge tokens are embedded from the raw Cartesian r_ij (no rotational constraint)
and a Bessel radial basis of |r_ij| that vanishes smoothly at the cutoff, plus the
species of both atoms. Each layer adds the message from the
reverse edge j -> i, then runs self-attention within each atom's neighbourhood,
with attention weights multiplied by a smooth cutoff f_c(|r_ij|) and renormalised,
and a feed-forward block. After every layer a head maps the cutoff-weighted sum of
an atom's edge tokens to an atomic energy; the energy is the sum of all heads plus
a per-species offset. Forces (and stress) come from autograd. Symmetry is only
learned, from random O(3) augmentation (see :mod:`symplug_atoms.train`).

Named layers for symplug: ``embedding`` and ``layers.0``, ``layers.1``, ... (edge
tokens, (atoms, M, d)), ``heads.0``, ... (atomic energies).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .graph import BatchGraph


def smooth_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """1 below cutoff - width, 0 above cutoff, cosine in between (C^1)."""
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


class PETLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.message = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, reverse_tokens: torch.Tensor, log_fc: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """x (A, M, d) edge tokens, reverse_tokens (A, M, d), log_fc (A, M), mask (A, M)."""
        a, m, d = x.shape
        x = x + self.message(reverse_tokens)
        q, k, v = self.qkv(self.norm1(x)).reshape(a, m, 3, self.heads, d // self.heads).unbind(2)
        logits = torch.einsum("amhc,anhc->ahmn", q, k) / math.sqrt(d // self.heads)
        logits = logits + log_fc[:, None, None, :]
        weights = torch.softmax(logits, dim=-1)
        attended = torch.einsum("ahmn,anhc->amhc", weights, v).reshape(a, m, d)
        x = x + self.out(attended)
        x = x + self.ffn(self.norm2(x))
        return x * mask[..., None]


class PointEdgeTransformer(nn.Module):
    """Energy of a batch of structures from their edge vectors (see the module docstring)."""

    def __init__(self, species: tuple[int, ...] = (29,), d: int = 32, heads: int = 4,
                 n_layers: int = 2, cutoff: float = 4.0, cutoff_width: float = 0.5,
                 n_radial: int = 8, neighbor_scale: float = 30.0):
        super().__init__()
        self.config = {"species": list(species), "d": d, "heads": heads, "n_layers": n_layers,
                       "cutoff": cutoff, "cutoff_width": cutoff_width, "n_radial": n_radial,
                       "neighbor_scale": neighbor_scale}
        self.pool_scale = 1.0 / math.sqrt(neighbor_scale)
        self.cutoff, self.cutoff_width = cutoff, cutoff_width
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", table, persistent=False)
        self.center_embedding = nn.Embedding(len(species), d)
        self.neighbor_embedding = nn.Embedding(len(species), d)
        self.n_radial = n_radial
        self.embedding = nn.Sequential(nn.Linear(3 + n_radial, d), nn.SiLU(), nn.Linear(d, d))
        self.layers = nn.ModuleList(PETLayer(d, heads) for _ in range(n_layers))
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(),
                                                 nn.Linear(d, 1))
                                   for _ in range(n_layers))
        self.offsets = nn.Parameter(torch.zeros(len(species)))

    def species_of(self, numbers: torch.Tensor) -> torch.Tensor:
        idx = self.species_index[numbers]
        if bool((idx < 0).any()):
            unknown = sorted(set(numbers[idx < 0].tolist()))
            raise ValueError(f"the model knows species {self.config['species']}, not {unknown}")
        return idx

    def forward(self, graph: BatchGraph, vectors: torch.Tensor) -> torch.Tensor:
        """Atomic energies (sum N,) for edge vectors (sum E, 3) in A."""
        n_atoms, m = graph.species.shape[0], graph.max_neighbors
        species = self.species_of(graph.species)
        r = vectors.norm(dim=-1, keepdim=True)
        fc = smooth_cutoff(r[:, 0], self.cutoff, self.cutoff_width)
        n = torch.arange(1, self.n_radial + 1, dtype=r.dtype)
        radial = torch.sin(n * math.pi * r / self.cutoff) / r * fc[:, None]  # Bessel basis
        edge = (self.embedding(torch.cat([vectors / self.cutoff, radial], dim=-1))
                + self.center_embedding(species[graph.centers])
                + self.neighbor_embedding(species[graph.neighbors]))
        d = edge.shape[-1]
        flat = graph.centers * m + graph.slot  # flat slot of each edge
        tokens = edge.new_zeros(n_atoms * m, d).index_copy(0, flat, edge).reshape(n_atoms, m, d)
        mask = edge.new_zeros(n_atoms * m).index_fill(0, flat, 1.0).reshape(n_atoms, m)
        weight = edge.new_zeros(n_atoms * m).index_copy(0, flat, fc).reshape(n_atoms, m)
        log_fc = torch.log(weight.clamp_min(1e-30))
        reverse_flat = flat[graph.reverse]  # slot of the reverse edge, per edge
        energy = self.offsets[species]
        x = tokens
        for layer, head in zip(self.layers, self.heads):
            rev = x.reshape(n_atoms * m, d).new_zeros(n_atoms * m, d).index_copy(
                0, flat, x.reshape(n_atoms * m, d)[reverse_flat]).reshape(n_atoms, m, d)
            x = layer(x, rev, log_fc, mask)
            pooled = (x * weight[..., None]).sum(1) * self.pool_scale
            energy = energy + head(pooled)[:, 0]
        return energy

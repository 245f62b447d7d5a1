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

Two optional minimal inductive biases (defaults: the shipped architecture, which
loads and evaluates exactly as before):

* ``sh_lmax=L`` (a band-limited direction embedding): the edge token becomes
  ``embedding(v) = MLP(R(r), species) + W [Y_lm(v/r) R_n(r)]_{l <= L, n}``, real
  spherical harmonics (e3nn, component normalisation) of the edge direction times
  the Bessel radial basis, entering *linearly*. Guaranteed: the ``embedding`` output
  is a band-limited function of the edge directions, all its power in sectors
  (l, +1) with l <= L (exactly, to round-off), so no breaking power above L enters
  at the input; with ``L = 0`` the whole model is exactly O(3) invariant (a
  distance-only transformer). Not guaranteed: the attention layers and heads are
  unconstrained nonlinear functions, so hidden layers and outputs do have power
  above L and are not equivariant for L >= 1. Note that the raw Cartesian input is
  itself band-limited at l = 1 *before* its MLP; the difference is that here the
  direction enters after the nonlinearity.
* ``forces="pair"`` (an equivariant force head): direct forces
  ``F_i = sum_j w_ij r_ij`` along the edges, with scalar weights
  ``w_ij = (s_ij + s_ji) / 2 * f_c(r_ij)`` read from the last layer's edge tokens by
  the head ``force_head``. The returned atomic energies are computed from detached
  edge vectors plus a term whose value is zero and whose gradient is the pair force,
  so ``-dE/dx`` by autograd (as :class:`~symplug_atoms.torch_model.TorchAtomsModel`
  and :mod:`symplug_atoms.train` take it) *is* the direct force, and the strain
  derivative is the pair virial. Guaranteed for any trunk: zero net force and zero
  net torque (central, pairwise-antisymmetric forces; an isolated cluster conserves
  momentum and angular momentum exactly); forces exactly O(3)-equivariant whenever
  the weights are invariant (e.g. with ``sh_lmax=0``). Not guaranteed: the weights
  come from the unconstrained trunk, so A(forces) is not zero in general; the forces
  are not the gradient of the energy (no energy conservation in NVE), and the
  energy still depends on orientation through the trunk.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .graph import BatchGraph

FORCE_MODES = ("conservative", "pair")


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
                 n_radial: int = 8, neighbor_scale: float = 30.0, sh_lmax: int | None = None,
                 forces: str = "conservative"):
        super().__init__()
        if sh_lmax is not None and (isinstance(sh_lmax, bool) or not isinstance(sh_lmax, int)
                                    or sh_lmax < 0):
            raise ValueError(f"sh_lmax must be None (raw Cartesian input) or an integer >= 0, "
                             f"got {sh_lmax!r}")
        if forces not in FORCE_MODES:
            raise ValueError(f"forces must be one of {FORCE_MODES}, got {forces!r}")
        self.config = {"species": list(species), "d": d, "heads": heads, "n_layers": n_layers,
                       "cutoff": cutoff, "cutoff_width": cutoff_width, "n_radial": n_radial,
                       "neighbor_scale": neighbor_scale, "sh_lmax": sh_lmax, "forces": forces}
        self.sh_lmax, self.forces = sh_lmax, forces
        self.pool_scale = 1.0 / math.sqrt(neighbor_scale)
        self.cutoff, self.cutoff_width = cutoff, cutoff_width
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", table, persistent=False)
        self.center_embedding = nn.Embedding(len(species), d)
        self.neighbor_embedding = nn.Embedding(len(species), d)
        self.n_radial = n_radial
        if sh_lmax is None:
            self.embedding = nn.Sequential(nn.Linear(3 + n_radial, d), nn.SiLU(), nn.Linear(d, d))
        else:
            self.embedding = SphericalEdgeEmbedding(n_radial, d, sh_lmax)
        self.layers = nn.ModuleList(PETLayer(d, heads) for _ in range(n_layers))
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(),
                                                 nn.Linear(d, 1))
                                   for _ in range(n_layers))
        self.offsets = nn.Parameter(torch.zeros(len(species)))
        if forces == "pair":
            self.force_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(),
                                            nn.Linear(d, 1))

    def species_of(self, numbers: torch.Tensor) -> torch.Tensor:
        idx = self.species_index[numbers]
        if bool((idx < 0).any()):
            unknown = sorted(set(numbers[idx < 0].tolist()))
            raise ValueError(f"the model knows species {self.config['species']}, not {unknown}")
        return idx

    def readout(self, edge: torch.Tensor, fc: torch.Tensor, flat: torch.Tensor,
                reverse_flat: torch.Tensor, species: torch.Tensor, n_atoms: int,
                m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer on edge tokens ``edge`` (E, d) with cutoff weights ``fc``
        (E,), padded into (N, m) neighbourhoods at the flat slots ``flat`` (E,), each
        edge's reverse at ``reverse_flat``: atomic energies (N,) (per-species offsets
        plus every layer's head) and the last layer's tokens (N, m, d). TorchScript-ready
        (the metatomic export, :mod:`symplug_atoms.export`, calls it too)."""
        d = edge.shape[-1]
        tokens = edge.new_zeros(n_atoms * m, d).index_copy(0, flat, edge).reshape(n_atoms, m, d)
        mask = edge.new_zeros(n_atoms * m).index_fill(0, flat, 1.0).reshape(n_atoms, m)
        weight = edge.new_zeros(n_atoms * m).index_copy(0, flat, fc).reshape(n_atoms, m)
        log_fc = torch.log(weight.clamp_min(1e-30))
        energy = self.offsets[species]
        x = tokens
        for layer, head in zip(self.layers, self.heads):
            rev = x.reshape(n_atoms * m, d).new_zeros(n_atoms * m, d).index_copy(
                0, flat, x.reshape(n_atoms * m, d)[reverse_flat]).reshape(n_atoms, m, d)
            x = layer(x, rev, log_fc, mask)
            pooled = (x * weight[..., None]).sum(1) * self.pool_scale
            energy = energy + head(pooled)[:, 0]
        return energy, x

    def layer_names(self) -> list[str]:
        """The named layers symplug tracks, input first."""
        return (["embedding"] + [f"layers.{i}" for i in range(len(self.layers))]
                + [f"heads.{i}" for i in range(len(self.heads))])

    @torch.jit.unused
    def forward(self, graph: BatchGraph, vectors: torch.Tensor) -> torch.Tensor:
        """Atomic energies (sum N,) for edge vectors (sum E, 3) in A."""
        n_atoms, m = graph.species.shape[0], graph.max_neighbors
        species = self.species_of(graph.species)
        full_vectors = vectors
        if self.forces == "pair":  # the energy does not depend on positions; see below
            vectors = vectors.detach()
        r = vectors.norm(dim=-1, keepdim=True)
        fc = smooth_cutoff(r[:, 0], self.cutoff, self.cutoff_width)
        n = torch.arange(1, self.n_radial + 1, dtype=r.dtype)
        radial = torch.sin(n * math.pi * r / self.cutoff) / r * fc[:, None]  # Bessel basis
        if self.sh_lmax is None:
            embedded = self.embedding(torch.cat([vectors / self.cutoff, radial], dim=-1))
        else:
            embedded = self.embedding(vectors, radial)
        edge = (embedded + self.center_embedding(species[graph.centers])
                + self.neighbor_embedding(species[graph.neighbors]))
        flat = graph.centers * m + graph.slot  # flat slot of each edge
        energy, x = self.readout(edge, fc, flat, flat[graph.reverse], species, n_atoms, m)
        if self.forces == "pair":
            s = self.force_head(x).reshape(n_atoms * m)[flat]  # scalar per edge
            w = 0.5 * (s + s[graph.reverse]) * fc  # symmetric: w_ij = w_ji
            half = 0.5 * w[:, None] * vectors  # c_e = w_ij r_ij / 2
            # value 0, gradient c_e with respect to the edge vector: -dE/dx_i = sum_j w_ij r_ij
            energy = energy.index_add(0, graph.centers,
                                      (half * (full_vectors - vectors)).sum(-1))
        return energy


class SphericalEdgeEmbedding(nn.Module):
    """Edge embedding ``MLP(R(r)) + W vec(Y_l(r_hat) R(r))`` with l <= ``lmax``: the edge
    direction enters linearly through real spherical harmonics (e3nn), so the output is
    band-limited to ``lmax`` in the direction (see the module docstring)."""

    def __init__(self, n_radial: int, d: int, lmax: int):
        super().__init__()
        self.lmax = lmax
        self.radial = nn.Sequential(nn.Linear(n_radial, d), nn.SiLU(), nn.Linear(d, d))
        self.angular = nn.Linear((lmax + 1) ** 2 * n_radial, d)

    def forward(self, vectors: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
        """(E, d) tokens of edge vectors (E, 3) in A with their radial basis (E, n_radial)."""
        from e3nn.o3 import spherical_harmonics

        y = spherical_harmonics(list(range(self.lmax + 1)), vectors, normalize=True,
                                normalization="component")
        return self.radial(radial) + self.angular((y[:, :, None] * radial[:, None, :]).flatten(1))

"""Neighbour graphs built once per structure, in the padded per-atom layout the
reference model attends over.

For a structure with N atoms, the edges (i -> j, periodic shift S) within the
cutoff are grouped by centre atom i and padded to M = the largest neighbour
count: slot (i, s) holds edge ``edge[i, s]`` or is masked. ``reverse[i, s]`` is
the flat slot of the reverse edge j -> i (shift -S), along which messages pass.
Rotating a structure does not change its graph, so every copy of an orbit shares
it and tokens (atoms, edges) correspond across copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase
import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list

from symplug import SymplugError


@dataclass(frozen=True)
class Graph:
    species: torch.Tensor    # (N,) atomic numbers
    centers: torch.Tensor    # (E,) i
    neighbors: torch.Tensor  # (E,) j
    shifts: torch.Tensor     # (E, 3) integer cell shifts S (r_ij = x_j - x_i + S cell)
    slot: torch.Tensor       # (E,) position of the edge in its centre's neighbourhood
    reverse: torch.Tensor    # (E,) index of the reverse edge
    max_neighbors: int       # M

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.centers.shape[0])


def build_graph(atoms: ase.Atoms, cutoff: float) -> Graph:
    """The neighbour graph of ``atoms`` within ``cutoff`` (A), built with ase."""
    cell = atoms.cell.array if atoms.get_pbc().any() else np.eye(3) * 1.0
    i, j, shifts = primitive_neighbor_list("ijS", atoms.get_pbc(), cell, atoms.positions,
                                           cutoff, self_interaction=False)
    if len(i) == 0:
        raise SymplugError(f"structure {atoms.get_chemical_formula()} has no neighbour pair "
                           f"within the cutoff {cutoff} A")
    order = np.lexsort((j, i))
    i, j, shifts = i[order], j[order], shifts[order]
    counts = np.bincount(i, minlength=len(atoms))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(i)) - starts[i]
    lookup = {(a, b, *s): e for e, (a, b, s) in enumerate(zip(i, j, map(tuple, shifts)))}
    reverse = np.array([lookup[(b, a, *(-np.asarray(s)))] for a, b, s in
                        zip(i, j, map(tuple, shifts))])
    return Graph(torch.from_numpy(atoms.numbers.astype(np.int64)), torch.from_numpy(i),
                 torch.from_numpy(j), torch.from_numpy(shifts.astype(np.float64)),
                 torch.from_numpy(slot), torch.from_numpy(reverse), int(counts.max()))


@dataclass(frozen=True)
class BatchGraph:
    """Several graphs (or copies of one) concatenated, atoms offset per member."""

    species: torch.Tensor    # (sum N,)
    centers: torch.Tensor    # (sum E,)
    neighbors: torch.Tensor
    slot: torch.Tensor
    reverse: torch.Tensor
    max_neighbors: int
    members: int

    @classmethod
    def of(cls, graphs: list[Graph]) -> "BatchGraph":
        atom_off = np.cumsum([0] + [g.n_atoms for g in graphs[:-1]])
        edge_off = np.cumsum([0] + [g.n_edges for g in graphs[:-1]])
        return cls(torch.cat([g.species for g in graphs]),
                   torch.cat([g.centers + int(a) for g, a in zip(graphs, atom_off)]),
                   torch.cat([g.neighbors + int(a) for g, a in zip(graphs, atom_off)]),
                   torch.cat([g.slot for g in graphs]),
                   torch.cat([g.reverse + int(e) for g, e in zip(graphs, edge_off)]),
                   max(g.max_neighbors for g in graphs), len(graphs))

"""Export the reference :class:`~symplug_atoms.pet.PointEdgeTransformer` as a metatomic
(TorchScript) model, so that it runs under metatomic-ase's ``MetatomicCalculator`` and
``SymmetrizedCalculator`` like any other metatomic model.

The exported module asks metatomic for one full, strict neighbour list with the model's
cutoff and turns it into exactly the graph :func:`symplug_atoms.graph.build_graph` builds:
edges sorted by centre, neighbour and cell shift, padded per centre atom to the largest
neighbour count, and the reverse edge (j -> i, shift -S) of every edge. It then runs the
same layers as the PyTorch model (in float64) and returns the per-structure energy in eV
(or the atomic energies, when asked for per-atom energies);
forces and stress come from autograd through metatomic's differentiable distance vectors.

Only the shipped architecture is exported: raw Cartesian edge embedding (``sh_lmax=None``)
and conservative forces. :meth:`MetatomicPET.atomic_energies` builds the edge tokens as
``PointEdgeTransformer.forward`` does and runs the same
:meth:`~symplug_atoms.pet.PointEdgeTransformer.readout` (tests/test_atoms_metatomic.py
checks that the two agree). Importing this module imports metatomic.

    from symplug_atoms.export import export_metatomic
    export_metatomic(symplug_atoms.load_model("pet-cu"), "pet-cu.pt")
"""

import copy
import math
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput,
                             NeighborListOptions, System)

from symplug import SymplugError

from .pet import PointEdgeTransformer, smooth_cutoff


class MetatomicPET(nn.Module):
    """A PointEdgeTransformer (default architecture) behind the metatomic model interface."""

    def __init__(self, pet: PointEdgeTransformer):
        super().__init__()
        self.pet = copy.deepcopy(pet).to(torch.float64).eval()
        self.cutoff = float(pet.cutoff)
        self.cutoff_width = float(pet.cutoff_width)
        self.n_radial = int(pet.n_radial)
        self.nl = NeighborListOptions(cutoff=self.cutoff, full_list=True, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.nl]

    def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:
        result: Dict[str, TensorMap] = {}
        if "energy" not in outputs:
            return result
        per_atom = outputs["energy"].sample_kind == "atom"
        energies: List[torch.Tensor] = []
        samples: List[torch.Tensor] = []
        for i, system in enumerate(systems):
            nl = system.get_neighbor_list(self.nl)
            atomic = self.atomic_energies(system.types, nl.samples.values,
                                          nl.values.reshape(-1, 3))
            atoms = torch.arange(atomic.shape[0], device=atomic.device)
            if selected_atoms is not None:
                chosen = selected_atoms.values
                atoms = chosen[chosen[:, 0] == i][:, 1].to(torch.long)
                atomic = atomic[atoms]
            if per_atom:
                energies.append(atomic)
                samples.append(torch.stack([torch.full_like(atoms, i), atoms], dim=1))
            else:
                energies.append(atomic.sum().reshape(1))
        device = systems[0].positions.device if len(systems) > 0 else torch.device("cpu")
        if per_atom:
            labels = Labels(["system", "atom"], torch.cat(samples).to(torch.int32)
                            if len(samples) > 0 else torch.zeros((0, 2), dtype=torch.int32))
        else:
            labels = Labels("system", torch.arange(len(systems), device=device).reshape(-1, 1))
        block = TensorBlock(values=torch.cat(energies).reshape(-1, 1), samples=labels,
                            components=[],
                            properties=Labels("energy", torch.tensor([[0]], device=device)))
        result["energy"] = TensorMap(Labels("_", torch.tensor([[0]], device=device)), [block])
        return result

    def atomic_energies(self, types: torch.Tensor, pairs: torch.Tensor,
                        vectors: torch.Tensor) -> torch.Tensor:
        """Atomic energies (N,) in eV of one structure: atomic numbers ``types`` (N,),
        neighbour-list samples ``pairs`` (E, 5: i, j, cell shift) and distance vectors
        ``vectors`` (E, 3) in A, r_ij = x_j - x_i + S cell."""
        n_atoms = types.shape[0]
        species = self.pet.species_index[types.to(torch.long)]
        if bool((species < 0).any()):
            raise ValueError("the structure holds atomic types the model does not know")
        pairs = pairs.to(torch.long)
        centers, neighbors, shifts = pairs[:, 0], pairs[:, 1], pairs[:, 2:5]
        n_edges = centers.shape[0]
        if n_edges == 0:
            raise ValueError("the structure has no neighbour pair within the cutoff")
        # the graph of graph.build_graph: edges sorted by (i, j, S), one unique key per edge
        smax = int(shifts.abs().max()) + 1
        base = 2 * smax + 1
        s = shifts + smax
        key = (((centers * n_atoms + neighbors) * base + s[:, 0]) * base + s[:, 1]) * base + s[:, 2]
        rs = -shifts + smax
        reverse_key = (((neighbors * n_atoms + centers) * base + rs[:, 0]) * base
                       + rs[:, 1]) * base + rs[:, 2]
        order = torch.argsort(key)
        centers, neighbors = centers[order], neighbors[order]
        vectors = vectors[order]
        sorted_key = key[order]
        reverse = torch.searchsorted(sorted_key, reverse_key[order])
        if bool((reverse >= n_edges).any()) or bool((sorted_key[reverse.clamp_max(n_edges - 1)]
                                                     != reverse_key[order]).any()):
            raise ValueError("the neighbour list is not symmetric (a full list is needed)")
        counts = torch.bincount(centers, minlength=n_atoms)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n_edges, device=centers.device) - starts[centers]
        m = int(counts.max())

        # PointEdgeTransformer.forward (sh_lmax=None, forces="conservative")
        r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        fc = smooth_cutoff(r[:, 0], self.cutoff, self.cutoff_width)
        n = torch.arange(1, self.n_radial + 1, dtype=r.dtype, device=r.device)
        radial = torch.sin(n * math.pi * r / self.cutoff) / r * fc[:, None]
        embedded = self.pet.embedding(torch.cat([vectors / self.cutoff, radial], dim=-1))
        edge = (embedded + self.pet.center_embedding(species[centers])
                + self.pet.neighbor_embedding(species[neighbors]))
        flat = centers * m + slot
        energy, _ = self.pet.readout(edge, fc, flat, flat[reverse], species, n_atoms, m)
        return energy


def export_metatomic(model_or_module, path: str | Path) -> Path:
    """Save a PointEdgeTransformer (or a :class:`~symplug_atoms.torch_model.TorchAtomsModel`
    around one, e.g. ``load_model("pet-cu")``) as a metatomic model file at ``path``."""
    pet = getattr(model_or_module, "module", model_or_module)
    if not isinstance(pet, PointEdgeTransformer):
        raise SymplugError(f"only a PointEdgeTransformer (or a TorchAtomsModel around one) can "
                           f"be exported, not {type(pet).__name__}")
    if pet.sh_lmax is not None or pet.forces != "conservative":
        raise SymplugError(f"only the default PointEdgeTransformer (raw Cartesian embedding, "
                           f"conservative forces) can be exported; this one has "
                           f"sh_lmax={pet.sh_lmax!r}, forces={pet.forces!r}")
    module = MetatomicPET(pet)
    outputs = {"energy": ModelOutput(unit="eV", sample_kind="atom")}  # per atom or summed
    capabilities = ModelCapabilities(outputs=outputs,
                                     atomic_types=[int(z) for z in pet.config["species"]],
                                     interaction_range=float(pet.cutoff),
                                     length_unit="angstrom", supported_devices=["cpu"],
                                     dtype="float64")
    metadata = ModelMetadata(name="symplug PointEdgeTransformer",
                             description="symplug's reference point-edge transformer "
                                         "(unconstrained, learned symmetry)")
    path = Path(path)
    AtomisticModel(module.eval(), metadata, capabilities).save(str(path))
    return path

"""Torch models in the atoms domain, with hidden layers captured by name.

:class:`TorchAtomsModel` wraps a module ``module(graph, vectors) -> atomic energies``
(the reference :class:`~symplug_atoms.pet.PointEdgeTransformer`, or any module with
that signature). For an orbit it builds the neighbour graph once, rotates positions
(about the centre of mass) and cell for every copy, and evaluates all copies of a
chunk in one batch, so atoms and edges are tokens that correspond across copies.
Outputs in reporting units: energy (meV/atom), atomic energies ``energies`` (meV),
forces (meV/A, autograd), stress (GPa, derivative with respect to a symmetric strain;
periodic structures).
"""

from __future__ import annotations

from pathlib import Path

import ase
import numpy as np
import torch
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from symplug import SymplugError
from symplug.result import load_weights

from .action import RotatedCopies
from .graph import BatchGraph, Graph, build_graph
from .pet import PointEdgeTransformer

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
SHIPPED = {"pet-cu": "pet_cu.pt"}


class TorchAtomsModel:
    """A torch atomic-energy model as a symplug model on :class:`RotatedCopies`.

    ``module`` holds the layers (``.module`` is what symplug hooks); ``cutoff`` is
    the neighbour-list radius in A; ``dtype`` the evaluation precision. A module whose
    floating-point parameters and buffers are already in ``dtype`` is used as it is
    (shared, no copy); otherwise ``.module`` is a converted copy and the caller's module
    keeps its dtype and weights (see :func:`in_dtype`). Either way ``.module`` is put
    in eval mode.
    """

    def __init__(self, module: torch.nn.Module, cutoff: float, dtype=torch.float64,
                 properties=("energy", "energies", "forces", "stress")):
        self.module = in_dtype(module, dtype).eval()
        self.cutoff, self.dtype, self.properties = float(cutoff), dtype, tuple(properties)
        self._graph: tuple[tuple, Graph] | None = None

    def graph(self, atoms: ase.Atoms) -> Graph:
        """The graph of ``atoms``, kept while the same structure (same object, positions,
        cell and periodicity) is evaluated, as for all chunks of one orbit."""
        key = (id(atoms), atoms.positions.tobytes(), atoms.cell.array.tobytes(),
               atoms.get_pbc().tobytes(), atoms.numbers.tobytes())
        if self._graph is None or self._graph[0] != key:
            self._graph = (key, build_graph(atoms, self.cutoff))
        return self._graph[1]

    def energies(self, atoms: ase.Atoms, matrices: torch.Tensor, stress: bool = False):
        """Atomic energies (B, N) in eV, rotated positions (B, N, 3) and strain (B, 3, 3)."""
        graph = self.graph(atoms)
        b, n = matrices.shape[0], len(atoms)
        mats = matrices.to(self.dtype)
        com = torch.as_tensor(atoms.get_center_of_mass(), dtype=self.dtype)
        pos0 = torch.as_tensor(atoms.positions, dtype=self.dtype) - com
        pos = torch.einsum("bij,nj->bni", mats, pos0)
        if _has_tangent(mats):
            raise NotImplementedError("forces by autograd under forward-mode AD; symplug's "
                                      "Lie derivatives fall back to central differences")
        pos = pos.detach().requires_grad_()
        cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype)
        # the image shift S.a of an edge is a vector and turns with g (improper ones too)
        shift = torch.einsum("ek,bij,kj->bei", graph.shifts.to(self.dtype), mats, cell)
        vectors = pos[:, graph.neighbors] - pos[:, graph.centers] + shift
        strain = torch.zeros(b, 3, 3, dtype=self.dtype, requires_grad=stress)
        vectors = vectors + torch.einsum("bei,bji->bej", vectors, strain)
        batch = BatchGraph.of([graph] * b)
        atomic = self.module(batch, vectors.reshape(-1, 3)).reshape(b, n)
        return atomic, pos, strain

    def __call__(self, batch: RotatedCopies) -> dict[str, torch.Tensor]:
        if not isinstance(batch, RotatedCopies):
            raise SymplugError("a torch atoms model takes the atoms domain's RotatedCopies")
        atoms, n = batch.atoms, len(batch.atoms)
        periodic = bool(atoms.get_pbc().all())
        want_stress = "stress" in self.properties and periodic
        with torch.enable_grad():
            atomic, pos, strain = self.energies(atoms, batch.matrices, stress=want_stress)
            energy = atomic.sum(1)
            out = {"energy": energy[:, None] * 1000.0 / n, "energies": atomic * 1000.0}
            inputs = [t for t, on in ((pos, "forces" in self.properties), (strain, want_stress))
                      if on and t.requires_grad]
            grads = torch.autograd.grad(energy.sum(), inputs) if inputs else []
        grads = list(grads)
        if "forces" in self.properties:
            out["forces"] = -grads.pop(0) * 1000.0
        if want_stress:
            out["stress"] = stress_gpa(grads.pop(0), atoms)
        return {k: v for k, v in out.items() if k in self.properties}

    def __repr__(self) -> str:
        return f"TorchAtomsModel({type(self.module).__name__}, cutoff={self.cutoff})"


def in_dtype(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module`` itself if all its floating-point parameters and buffers are in ``dtype``,
    otherwise a deep copy with them converted (``Module.to(dtype)`` semantics: integer
    and boolean tensors keep their dtype; ``requires_grad`` is kept).

    ``Module.to`` converts in place, so converting the caller's module would change the
    dtype under every other holder of it (a float64 model sharing it would then fail).
    The copy is made with the converted tensors put into ``copy.deepcopy``'s memo, so
    each original tensor is read once and converted once: memory is the module plus
    its converted copy, never a second full-precision copy as ``deepcopy(m).to(dtype)``
    would make on the way.
    """
    import copy

    tensors = [t for t in [*module.parameters(), *module.buffers()]
               if t.is_floating_point() or t.is_complex()]
    if all(t.dtype == dtype for t in tensors):
        return module
    memo: dict[int, torch.Tensor] = {}
    for t in tensors:
        if id(t) in memo:
            continue
        converted = t.detach().to(dtype)
        if converted.data_ptr() == t.data_ptr():  # .to kept the storage: copy it
            converted = converted.clone()
        if isinstance(t, torch.nn.Parameter):
            converted = torch.nn.Parameter(converted, requires_grad=t.requires_grad)
        memo[id(t)] = converted
    return copy.deepcopy(module, memo)


def evaluate_copies(model: TorchAtomsModel, atoms: ase.Atoms, matrices: np.ndarray) -> dict:
    """ASE-unit results of the copies g x: energy (B,) eV, forces (B, N, 3) eV/A and,
    for periodic structures, stress (B, 3, 3) eV/A^3, in one batch on one graph."""
    out = model(RotatedCopies(atoms, torch.as_tensor(matrices, dtype=torch.float64)))
    n = len(atoms)
    res = {"energy": out["energy"][:, 0].detach().numpy() * n / 1000.0,
           "forces": out["forces"].detach().numpy() / 1000.0}
    if "stress" in out:
        res["stress"] = out["stress"].detach().numpy() * units.GPa
    return res


class TorchAtomsCalculator(Calculator):
    """An ASE calculator around a :class:`TorchAtomsModel` (for MD and for
    :class:`~symplug_atoms.symmetrize.SymmetrizedCalculator`, which then evaluates
    its rotated copies in batches on one neighbour graph)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: TorchAtomsModel, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        res = evaluate_copies(self.model, self.atoms, np.eye(3)[None])
        self.results["energy"] = self.results["free_energy"] = float(res["energy"][0])
        self.results["forces"] = res["forces"][0]
        if "stress" in res:
            self.results["stress"] = full_3x3_to_voigt_6_stress(res["stress"][0])


def stress_gpa(virial: torch.Tensor, atoms: ase.Atoms) -> torch.Tensor:
    """Stress (B, 3, 3) in GPa from dE/d(strain) (B, 3, 3) in eV: a symmetric strain
    sees only the symmetric part of the virial."""
    volume = abs(float(atoms.get_volume()))
    return (virial + virial.transpose(1, 2)) / 2 / volume / units.GPa


def _has_tangent(t: torch.Tensor) -> bool:
    import torch.autograd.forward_ad as fwAD

    return fwAD.unpack_dual(t).tangent is not None


def load_reference(path: str | Path | None = None) -> TorchAtomsModel:
    """The shipped reference model (``pet-cu``) or a checkpoint written by
    :mod:`symplug_atoms.train`, loaded safely (``weights_only=True``)."""
    path = Path(path) if path else SHIPPED_DIR / SHIPPED["pet-cu"]
    if not path.exists():
        raise SymplugError(f"{path}: no such model file")
    try:
        saved = load_weights(path, "atoms model checkpoint")
        if not isinstance(saved, dict):
            raise TypeError(f"it holds a {type(saved).__name__}, not a dictionary")
        module = PointEdgeTransformer(**{k: (tuple(v) if k == "species" else v)
                                         for k, v in saved["config"].items()})
        module.load_state_dict(saved["state_dict"])
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise SymplugError(f"{path}: not a symplug atoms model checkpoint "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    return TorchAtomsModel(module.double(), cutoff=module.cutoff)  # ours: convert in place

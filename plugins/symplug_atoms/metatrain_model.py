"""metatrain checkpoints (e.g. PET) as symplug models with hidden layers.

The exported ``.pt`` of a metatrain model is a metatomic model
(:class:`~symplug_atoms.metatomic.MetatomicModel`); its ``.ckpt`` checkpoint gives
the torch module whose layers symplug hooks. For an orbit, the neighbour list of
the structure is computed once with metatrain's own options and the distance
vectors of every copy are rebuilt from the rotated positions (differentiable, for
forces) in the same order, so atoms and edges correspond across copies.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from symplug import SymplugError

from .action import RotatedCopies
from .metatrain_variants import band_limited_pet, sh_lmax_of
from .torch_model import stress_gpa

ENERGY = "energy"


class MetatrainModel:
    """A metatrain checkpoint (``.ckpt``): energy (meV/atom), forces (meV/A, autograd)
    and, for periodic structures, stress (GPa, symmetric strain derivative).

    metatrain unpickles a checkpoint with ``torch.load(weights_only=False)``, which runs
    any code the file holds: it is loaded only with ``trusted=True`` (``--trust-model``).

    ``weights``: ``"best"`` (default, as ``mtt export``: the epoch of best validation
    error so far) or ``"last"`` (the weights the training had when it wrote the file, as
    ``mtt train --restart``). ``epoch``: the number of completed epochs those weights
    are from (metatrain counts from 0), or None if the file does not say.
    """

    def __init__(self, path: str | Path, dtype=torch.float64, trusted: bool = False,
                 weights: str = "best"):
        path = Path(path)
        if weights not in ("best", "last"):
            raise SymplugError(f"weights must be 'best' or 'last', got {weights!r}")
        if not trusted:
            from symplug.plugins import refuse_untrusted

            refuse_untrusted(str(path), "a metatrain checkpoint is unpickled "
                             "(torch.load weights_only=False), which can run any code it holds")
        try:
            from metatrain.utils.io import model_from_checkpoint
            from metatrain.utils.neighbor_lists import get_requested_neighbor_lists
        except ImportError as exc:
            raise SymplugError("metatrain checkpoints need metatrain: "
                               "pip install 'symplug[metatrain]'") from exc
        if not path.exists():
            raise SymplugError(f"{path}: no such metatrain checkpoint")
        try:
            checkpoint = torch.load(path, weights_only=False, map_location="cpu")
            epoch = checkpoint.get("epoch" if weights == "last" else "best_epoch")
            context = "restart" if weights == "last" else "export"
            with band_limited_pet(sh_lmax_of(checkpoint)):
                module = model_from_checkpoint(checkpoint, context=context)
            self.module = module.to(dtype).eval()
        except Exception as exc:
            raise SymplugError(f"{path}: metatrain cannot load it ({type(exc).__name__}: "
                               f"{exc})") from exc
        self.path, self.dtype, self.weights = path, dtype, weights
        self.epoch = None if epoch is None else int(epoch) + 1
        self.options = get_requested_neighbor_lists(self.module)
        self.properties = ("energy", "forces", "stress")
        self._pairs: tuple[tuple, list] | None = None

    def _neighbor_samples(self, atoms):
        """Per requested list: the samples block of the base structure (computed once)."""
        key = (id(atoms), atoms.positions.tobytes(), atoms.cell.array.tobytes())
        if self._pairs is None or self._pairs[0] != key:
            self._pairs = (key, neighbor_blocks(atoms, self.options, self.dtype))
        return self._pairs[1]

    def __call__(self, batch: RotatedCopies) -> dict[str, torch.Tensor]:
        from metatomic.torch import ModelOutput

        if not isinstance(batch, RotatedCopies):
            raise SymplugError("a metatrain model takes the atoms domain's RotatedCopies")
        atoms = batch.atoms
        blocks = self._neighbor_samples(atoms)
        types = torch.as_tensor(atoms.numbers, dtype=torch.int32)
        com = torch.as_tensor(atoms.get_center_of_mass(), dtype=self.dtype)
        pos0 = torch.as_tensor(atoms.positions, dtype=self.dtype) - com
        pbc = torch.as_tensor(atoms.get_pbc())
        # a System's cell vector is zero along a non-periodic direction (e.g. a slab's normal)
        cell0 = torch.as_tensor(atoms.cell.array, dtype=self.dtype) * pbc[:, None]
        periodic = bool(atoms.get_pbc().all())
        systems, positions, strains = [], [], []
        for g in torch.as_tensor(batch.matrices, dtype=self.dtype).detach():
            pos = (pos0 @ g.T).requires_grad_()
            strain = torch.zeros(3, 3, dtype=self.dtype, requires_grad=periodic)
            deform = torch.eye(3, dtype=self.dtype) + strain
            strained = pos @ deform.T
            cell = cell0 @ g.T @ deform.T  # image shifts turn with g
            systems.append(system_with_neighbors(types, strained, cell, pbc, self.options,
                                                 blocks))
            positions.append(pos)
            strains.append(strain)
        with torch.enable_grad():
            out = self.module(systems, {ENERGY: ModelOutput(unit="eV", sample_kind="system")})
            energy = out[ENERGY].block().values.reshape(-1)
            grads = torch.autograd.grad(energy.sum(), positions + (strains if periodic else []))
        n = len(atoms)
        result = {"energy": energy.detach()[:, None] * 1000.0 / n,
                  "forces": -torch.stack(grads[:len(positions)]) * 1000.0}
        if periodic:
            result["stress"] = stress_gpa(torch.stack(grads[len(positions):]), atoms)
        return result

    def with_module(self, module: torch.nn.Module, dtype=torch.float64) -> "MetatrainModel":
        """This checkpoint's model running ``module`` (e.g. a copy of a fine-tuning's),
        which is moved to ``dtype`` and evaluation mode in place."""
        other = copy.copy(self)
        other.module, other.dtype, other._pairs = module.to(dtype).eval(), dtype, None
        return other

    def as_trained(self) -> "MetatrainModel":
        """The checkpoint's last weights (``symplug track`` follows the training itself,
        not the best model so far)."""
        return self if self.weights == "last" else MetatrainModel(self.path, self.dtype,
                                                                   trusted=True, weights="last")

    def calculator(self):
        """An ASE calculator of the checkpoint's model (for MD): metatomic-ase's
        ``MetatomicCalculator`` on the model exported in memory, in this model's dtype."""
        from metatomic_ase import MetatomicCalculator

        return MetatomicCalculator(self.module.export())

    def __repr__(self) -> str:
        return f"MetatrainModel({self.path.name})"


def neighbor_blocks(atoms, options, dtype: torch.dtype) -> list:
    """The neighbour-list blocks (pairs, cell shifts and vectors) of ``atoms`` for each of
    metatrain's requested ``options``, by metatrain's own neighbour search. A cell vector
    along a non-periodic direction (a slab's normal, a cluster's box) is zero, as
    metatomic requires (set here, so metatomic does not warn per structure)."""
    from metatomic.torch import System
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    pbc = torch.as_tensor(atoms.get_pbc())
    system = System(torch.as_tensor(atoms.numbers, dtype=torch.int32),
                    torch.as_tensor(atoms.positions, dtype=dtype),
                    torch.as_tensor(atoms.cell.array, dtype=dtype) * pbc[:, None], pbc)
    base = get_system_with_neighbor_lists(system, options)
    return [base.get_neighbor_list(o) for o in options]


def system_with_neighbors(types: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                          pbc: torch.Tensor, options, blocks):
    """A metatomic ``System`` of ``positions`` (N, 3) A and ``cell`` (3, 3) rows with the
    neighbour lists ``blocks`` of the same structure (:func:`neighbor_blocks`, e.g. before
    a rotation or strain: pairs and cell shifts do not change), their vectors rebuilt
    from these positions and cell, differentiably and in the same pair order."""
    from metatensor.torch import TensorBlock
    from metatomic.torch import System

    system = System(types, positions, cell, pbc)
    for option, block in zip(options, blocks):
        s = block.samples.values
        vectors = (positions[s[:, 1]] - positions[s[:, 0]]
                   + s[:, 2:5].to(positions.dtype) @ cell).reshape(-1, 3, 1)
        system.add_neighbor_list(option, TensorBlock(vectors, block.samples, block.components,
                                                     block.properties))
    return system


def is_checkpoint(spec: str) -> bool:
    return str(spec).endswith(".ckpt")



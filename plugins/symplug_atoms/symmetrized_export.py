"""A metatomic model averaged over an O(3) quadrature, for MD engines (chunked, flat memory).

:func:`symmetrize_metatomic` wraps any metatomic model (an ``AtomisticModel``, or the path
of a saved one) whose ``energy`` output it averages over a quadrature grid {g_q, w_q}
(a :class:`symplug.Grid`: orthogonal 3x3 matrices, improper ones with det -1, weights
summing to 1)::

    E_avg(x) = sum_q w_q E(g_q x)

where g acts on the positions (x_i -> g x_i, about the origin) and on the cell. A periodic
cell turns with the proper part R = det(g) g of g (cell rows a_k -> R a_k, so it stays
right-handed and spans the same lattice as g a_k); the cell shifts S of the neighbour list
then become det(g) S, and every pair vector is exactly g r_ij. The neighbour list the
engine computed for the wrapped model's own ``requested_neighbor_lists()`` serves every
copy: a rigid rotation does not change which pairs are neighbours.

The result is a TorchScript ``AtomisticModel`` (``.save(path)``) that metatomic-ase's
``MetatomicCalculator``, LAMMPS and i-PI run like any other model: forces (-dE_avg/dx)
and stress/virial (the cell or strain derivative) come from their ordinary backward pass
through ``system.positions`` and ``system.cell``, and are exactly those of E_avg.

Memory does not grow with the grid: copies are evaluated ``chunk_size`` at a time, each
chunk from detached leaf copies of positions and cell, and differentiated right away
(``torch.autograd.grad``), which frees its graph before the next chunk. The model returns
the surrogate

    E_out = E_avg + sum((x - x.detach()) * G_x) + sum((h - h.detach()) * G_h)

with G_x = dE_avg/dx and G_h = dE_avg/dh accumulated in float64: its value is E_avg and its
first derivatives with respect to positions and cell (and anything they depend on, such
as a strain) are exact. It has no second derivatives (no Hessians, no force training
through it). Without gradients (positions and cell not requiring grad, or grad mode off)
each chunk runs under ``torch.no_grad()``.

Gradients reach the caller through ``system.positions`` and ``system.cell`` only: of the
engine's neighbour lists only the pairs and cell shifts are read (the copies' pair vectors
are rebuilt from the leaves), so an engine must differentiate with respect to positions
and cell, as metatomic-ase does (positions and cell multiplied by a strain that requires
grad) and as metatomic's ``register_autograd_neighbors`` arranges for the others. The
average is invariant only under what the grid integrates exactly (a finite group: exactly
under that group), so its strain derivative need not be symmetric; metatomic-ase reports
the symmetric part as the stress.

Extra outputs, weighted orientational standard deviations over the grid (per call):
``symplug::energy_rot_std`` (per structure, energy unit), ``symplug::forces_rot_std`` (per
atom and component, energy/length) and ``symplug::stress_rot_std`` (per structure, 3x3,
energy/length^3; fully periodic structures only), the copies' forces and stresses taken
in the input frame; asking for the forces or stress spread computes per-copy gradients
even under ``torch.no_grad()`` (grad mode is switched on for each chunk; not possible
under ``torch.inference_mode()``). Per-atom energies and ``selected_atoms`` are refused,
and extra inputs the wrapped model requests are passed to every copy unchanged, so only
scalar ones (no ``xyz`` components) are accepted.
"""

# no "from __future__ import annotations": AtomisticModel checks forward's annotations
import json
from pathlib import Path
from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput,
                             NeighborListOptions, System, is_atomistic_model,
                             load_atomistic_model)

import symplug
from symplug import SymplugError
from symplug.groups import O3

ENERGY_STD = "symplug::energy_rot_std"
FORCES_STD = "symplug::forces_rot_std"
STRESS_STD = "symplug::stress_rot_std"


class SymmetrizedEnergy(torch.nn.Module):
    """The metatomic module behind :func:`symmetrize_metatomic` (see the module docstring).

    ``module`` is the wrapped model's inner module (``AtomisticModel.module``), which
    receives batches of ``chunk_size`` rotated copies of each system; ``matrices`` (N, 3, 3)
    and ``weights`` (N,) are the grid, ``neighbor_lists`` the wrapped model's requested
    neighbour lists and ``inputs`` its requested extra inputs (scalar data only).
    """

    _requested_neighbor_lists: List[NeighborListOptions]
    _requested_inputs: Dict[str, ModelOutput]

    def __init__(self, module: torch.nn.Module, matrices: torch.Tensor, weights: torch.Tensor,
                 chunk_size: int, neighbor_lists: List[NeighborListOptions],
                 inputs: Dict[str, ModelOutput], energy_unit: str, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.chunk_size = int(chunk_size)
        self.n_grid = int(weights.shape[0])
        self.register_buffer("matrices", matrices.to(dtype).contiguous())
        # g = s R, s = det(g) (the proper part in O(3), whatever the grid's group): the cell
        # turns with R = s g
        self.register_buffer("signs", O3().proper_part(matrices)[0].to(dtype))
        self.register_buffer("weights", weights.to(torch.float64))
        self._requested_neighbor_lists = []
        for options in neighbor_lists:  # copies: AtomisticModel() adds requestors to them
            copied = NeighborListOptions(options.cutoff, options.full_list, options.strict)
            for requestor in options.requestors():
                copied.add_requestor(requestor)
            self._requested_neighbor_lists.append(copied)
        self._requested_inputs = {name: value for name, value in inputs.items()}
        self._inner_outputs = {"energy": ModelOutput(unit=energy_unit, sample_kind="system")}
        # output names as attributes: TorchScript cannot read module-level strings
        self.energy_std_name = ENERGY_STD
        self.forces_std_name = FORCES_STD
        self.stress_std_name = STRESS_STD

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return self._requested_neighbor_lists

    def requested_inputs(self) -> Dict[str, ModelOutput]:
        return self._requested_inputs

    def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:
        if selected_atoms is not None:
            raise ValueError("the symmetrised model does not support selected_atoms")
        for name, output in outputs.items():
            if name != "energy" and name != self.energy_std_name \
                    and name != self.forces_std_name and name != self.stress_std_name:
                raise ValueError("the symmetrised model has no output '" + name + "'")
            if name != self.forces_std_name and output.sample_kind != "system":
                raise ValueError("the symmetrised model gives '" + name + "' per structure "
                                 "only (sample_kind 'system'), not per atom")
        want_forces_std = self.forces_std_name in outputs
        want_stress_std = self.stress_std_name in outputs
        energies: List[torch.Tensor] = []
        energy_std: List[torch.Tensor] = []
        forces_std: List[torch.Tensor] = []
        stress_std: List[torch.Tensor] = []
        for system in systems:
            if want_stress_std and not bool(system.pbc.all()):
                raise ValueError(self.stress_std_name + " needs a structure periodic in all "
                                 "directions")
            parts = self._average(system, want_forces_std or want_stress_std, want_stress_std)
            energies.append(parts[0].reshape(1))
            energy_std.append(parts[1].reshape(1))
            forces_std.append(parts[2])
            stress_std.append(parts[3].reshape(1, 3, 3))

        device = self.matrices.device
        dtype = self.matrices.dtype
        keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
        per_system = Labels("system", torch.arange(len(systems), dtype=torch.int32,
                                                   device=device).reshape(-1, 1))
        xyz = Labels("xyz", torch.arange(3, dtype=torch.int32, device=device).reshape(-1, 1))
        result: Dict[str, TensorMap] = {}
        if "energy" in outputs:
            result["energy"] = TensorMap(keys, [TensorBlock(
                values=_cat(energies, [0], dtype, device).reshape(-1, 1), samples=per_system,
                components=[], properties=_one("energy", device))])
        if self.energy_std_name in outputs:
            result[self.energy_std_name] = TensorMap(keys, [TensorBlock(
                values=_cat(energy_std, [0], dtype, device).reshape(-1, 1),
                samples=per_system, components=[], properties=_one("energy", device))])
        if want_forces_std:
            atom_samples: List[torch.Tensor] = []
            for i, system in enumerate(systems):
                n = len(system)
                atom_samples.append(torch.stack([torch.full((n,), i, dtype=torch.int32,
                                                            device=device),
                                                 torch.arange(n, dtype=torch.int32,
                                                              device=device)], dim=1))
            samples = Labels(["system", "atom"], _cat(atom_samples, [0, 2], torch.int32, device))
            result[self.forces_std_name] = TensorMap(keys, [TensorBlock(
                values=_cat(forces_std, [0, 3], dtype, device).reshape(-1, 3, 1),
                samples=samples, components=[xyz], properties=_one("force", device))])
        if want_stress_std:
            result[self.stress_std_name] = TensorMap(keys, [TensorBlock(
                values=_cat(stress_std, [0, 3, 3], dtype, device).reshape(-1, 3, 3, 1),
                samples=per_system,
                components=[Labels("xyz_1", xyz.values), Labels("xyz_2", xyz.values)],
                properties=_one("stress", device))])
        return result

    def _average(self, system: System, copy_gradients: bool, want_stress: bool
                 ) -> List[torch.Tensor]:
        """[surrogate energy, energy std, forces std (N, 3), stress std (3, 3)] of one
        system; the std entries are zeros unless asked for (``copy_gradients``)."""
        positions, cell = system.positions, system.cell
        dtype, device = positions.dtype, positions.device
        n_atoms = positions.shape[0]
        grad_mode = torch.is_grad_enabled()
        track = grad_mode and (positions.requires_grad or cell.requires_grad)
        gradients = track or copy_gradients
        x0, h0 = positions.detach(), cell.detach()
        volume = torch.abs(torch.linalg.det(h0.to(torch.float64)))

        f64 = torch.float64
        energy = torch.zeros((), dtype=f64, device=device)
        grad_x = torch.zeros((n_atoms, 3), dtype=f64, device=device)
        grad_h = torch.zeros((3, 3), dtype=f64, device=device)
        # weighted moments about the first copy's value, so that the variance keeps its
        # digits when the spread is small: var = E[(v - v_0)^2] - E[v - v_0]^2
        e_ref = torch.zeros((), dtype=f64, device=device)
        e_m1 = torch.zeros((), dtype=f64, device=device)
        e_m2 = torch.zeros((), dtype=f64, device=device)
        f_ref = torch.zeros((n_atoms, 3), dtype=f64, device=device)
        f_m1 = torch.zeros((n_atoms, 3), dtype=f64, device=device)
        f_m2 = torch.zeros((n_atoms, 3), dtype=f64, device=device)
        s_ref = torch.zeros((3, 3), dtype=f64, device=device)
        s_m1 = torch.zeros((3, 3), dtype=f64, device=device)
        s_m2 = torch.zeros((3, 3), dtype=f64, device=device)

        for start in range(0, self.n_grid, self.chunk_size):
            stop = min(start + self.chunk_size, self.n_grid)
            n = stop - start
            w = self.weights[start:stop]
            if gradients:
                torch.set_grad_enabled(True)
                xs = x0.unsqueeze(0).repeat(n, 1, 1).requires_grad_(True)  # one leaf per copy
                hs = h0.unsqueeze(0).repeat(n, 1, 1).requires_grad_(True)
                e = self._energies(system, xs, hs, start, stop)
                found = torch.autograd.grad([e.sum()], [xs, hs], allow_unused=True)
                torch.set_grad_enabled(grad_mode)
                gx = found[0]
                gh = found[1]
                # dE(g_q x)/dx and dE(g_q x)/dh of each copy, in the input frame
                gx = torch.zeros_like(xs) if gx is None else gx
                gh = torch.zeros_like(hs) if gh is None else gh
                gx, gh = gx.to(f64), gh.to(f64)
                e = e.detach().to(f64)
            else:
                with torch.no_grad():
                    e = self._energies(system, x0.unsqueeze(0).expand(n, n_atoms, 3),
                                       h0.unsqueeze(0).expand(n, 3, 3), start, stop).to(f64)
                gx = torch.zeros((n, n_atoms, 3), dtype=f64, device=device)
                gh = torch.zeros((n, 3, 3), dtype=f64, device=device)

            if start == 0:
                e_ref = e[0]
            energy += (w * e).sum()
            e_m1 += (w * (e - e_ref)).sum()
            e_m2 += (w * (e - e_ref) ** 2).sum()
            wg = w.reshape(-1, 1, 1)
            if gradients:
                grad_x += (wg * gx).sum(0)
                grad_h += (wg * gh).sum(0)
            if copy_gradients:
                forces = -gx
                if start == 0:
                    f_ref = forces[0]
                f_m1 += (wg * (forces - f_ref)).sum(0)
                f_m2 += (wg * (forces - f_ref) ** 2).sum(0)
                if want_stress:
                    # the strain derivative (x^T dE/dx + h^T dE/dh) / V, as ASE signs it
                    stress = (torch.einsum("ak,qal->qkl", x0.to(f64), gx)
                              + torch.einsum("rk,qrl->qkl", h0.to(f64), gh)) / volume
                    if start == 0:
                        s_ref = stress[0]
                    s_m1 += (wg * (stress - s_ref)).sum(0)
                    s_m2 += (wg * (stress - s_ref) ** 2).sum(0)

        out = energy.to(dtype)
        if track:  # value E_avg, first derivatives G_x and G_h
            out = out + ((positions - x0) * grad_x.to(dtype)).sum() \
                + ((cell - h0) * grad_h.to(dtype)).sum()
        return [out,
                torch.sqrt(torch.clamp(e_m2 - e_m1 ** 2, min=0.0)).to(dtype),
                torch.sqrt(torch.clamp(f_m2 - f_m1 ** 2, min=0.0)).to(dtype),
                torch.sqrt(torch.clamp(s_m2 - s_m1 ** 2, min=0.0)).to(dtype)]

    def _energies(self, system: System, xs: torch.Tensor, hs: torch.Tensor, start: int,
                  stop: int) -> torch.Tensor:
        """Energies (n,) of the copies g_q x, q in [start, stop), from positions ``xs``
        (n, N, 3) and cells ``hs`` (n, 3, 3) in the input frame."""
        mats = self.matrices[start:stop]
        signs = self.signs[start:stop]
        n = stop - start
        positions = torch.bmm(xs, mats.transpose(1, 2))  # rows x_i g^T
        turned = torch.bmm(hs, mats.transpose(1, 2))  # rows a_k g^T
        cells = signs.reshape(-1, 1, 1) * turned  # the proper part: right-handed
        copies: List[System] = []
        for q in range(n):
            copy = System(system.types, positions[q], cells[q], system.pbc)
            for options in self._requested_neighbor_lists:
                nl = system.get_neighbor_list(options)
                pairs = nl.samples.values
                first, second = pairs[:, 0].to(torch.long), pairs[:, 1].to(torch.long)
                shifts = pairs[:, 2:5]
                # g r_ij = g x_j - g x_i + S (h g^T) = ... + (det(g) S) (cell of the copy)
                vectors = (positions[q][second] - positions[q][first]
                           + shifts.to(turned.dtype) @ turned[q])
                samples = nl.samples
                if bool(signs[q] < 0):
                    samples = Labels(samples.names,
                                     torch.cat([pairs[:, 0:2], -shifts], dim=1))
                copy.add_neighbor_list(options, TensorBlock(
                    values=vectors.reshape(-1, 3, 1), samples=samples,
                    components=nl.components, properties=nl.properties))
            for name in system.known_data():
                data = system.get_data(name)
                for block in data.blocks():
                    if len(block.components) != 0:
                        raise ValueError("input '" + name + "' has components: the "
                                         "symmetrised model cannot rotate vector inputs")
                copy.add_data(name, data)
            copies.append(copy)
        result = self.module(copies, self._inner_outputs, None)
        block = result["energy"].block()
        index = block.samples.column("system").to(torch.long)
        return torch.zeros(n, dtype=block.values.dtype, device=block.values.device) \
            .index_add(0, index, block.values.reshape(-1))


def _one(name: str, device: torch.device) -> Labels:
    return Labels(name, torch.zeros((1, 1), dtype=torch.int32, device=device))


def _cat(parts: List[torch.Tensor], empty_shape: List[int], dtype: torch.dtype,
         device: torch.device) -> torch.Tensor:
    if len(parts) == 0:
        return torch.zeros(empty_shape, dtype=dtype, device=device)
    return torch.cat(parts)


def _as_atomistic(model) -> AtomisticModel:
    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise SymplugError(f"no metatomic model file at {str(model)!r}")
        return load_atomistic_model(str(model))
    if isinstance(model, torch.nn.Module) and is_atomistic_model(model):
        if isinstance(model, AtomisticModel):
            return model
        return AtomisticModel(model, model.metadata(), model.capabilities())  # scripted
    raise SymplugError(f"expected a metatomic AtomisticModel or the path of a saved one, "
                       f"got {type(model).__name__}")


def _check_grid(grid) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(grid, symplug.Grid):
        raise SymplugError(f"grid must be a symplug.Grid (e.g. symplug.quadrature('O3', 2)), "
                           f"got {type(grid).__name__}")
    mats = torch.as_tensor(grid.matrices, dtype=torch.float64).detach().cpu()
    weights = torch.as_tensor(grid.weights, dtype=torch.float64).detach().cpu().reshape(-1)
    if mats.ndim != 3 or mats.shape[1:] != (3, 3) or mats.shape[0] != weights.shape[0] \
            or mats.shape[0] == 0:
        raise SymplugError(f"grid matrices must be (N, 3, 3) with N = len(weights) >= 1, got "
                           f"{tuple(mats.shape)} and {tuple(weights.shape)}")
    defect = (mats @ mats.transpose(1, 2) - torch.eye(3, dtype=torch.float64)).abs().max()
    if not float(defect) < 1e-8:
        raise SymplugError(f"grid matrices must be orthogonal (|g g^T - 1| = {float(defect):.3g})")
    if not (torch.isfinite(weights).all() and abs(float(weights.sum()) - 1.0) < 1e-9):
        raise SymplugError(f"grid weights must sum to 1, got {float(weights.sum())!r}")
    return mats, weights / weights.sum()


def symmetrize_metatomic(model, grid, *, chunk_size: int = 8) -> AtomisticModel:
    """A metatomic model whose ``energy`` is ``model``'s averaged over ``grid``.

    ``model``: an ``AtomisticModel`` (or the path of a saved one) with an ``energy``
    output; ``grid``: a :class:`symplug.Grid` on O(3) or a subgroup (only its
    ``matrices`` and ``weights`` are used); ``chunk_size``: copies per batched call of the
    wrapped model, which bounds the memory. Units, dtype, devices, atomic types and
    interaction range are the wrapped model's; the grid's description goes into the
    metadata (``description`` and ``extra["symplug::grid"]``). Outputs: ``energy``
    (per structure) and the ``symplug::*_rot_std`` diagnostics (module docstring).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise SymplugError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    mats, weights = _check_grid(grid)
    model = _as_atomistic(model)
    capabilities = model.capabilities()
    if "energy" not in capabilities.outputs:
        raise SymplugError(f"the model has no 'energy' output to symmetrise (outputs: "
                           f"{sorted(capabilities.outputs)})")
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    dtype = dtypes[capabilities.dtype]
    energy_unit = capabilities.outputs["energy"].unit
    length_unit = capabilities.length_unit
    module = SymmetrizedEnergy(model.module, mats, weights, chunk_size,
                               model.requested_neighbor_lists(),
                               model.requested_inputs(use_new_names=True), energy_unit, dtype)

    grid_text = json.dumps(grid.describe(), default=str, sort_keys=True)
    force_unit = f"{energy_unit}/{length_unit}" if energy_unit and length_unit else ""
    stress_unit = f"{energy_unit}/{length_unit}^3" if energy_unit and length_unit else ""
    outputs = {
        "energy": ModelOutput(unit=energy_unit, sample_kind="system",
                              description="group average of the wrapped model's energy "
                                          f"over a {len(weights)}-element grid"),
        ENERGY_STD: ModelOutput(unit=energy_unit, sample_kind="system",
                                description="weighted orientational standard deviation "
                                            "of the energy over the grid"),
        FORCES_STD: ModelOutput(unit=force_unit, sample_kind="atom",
                                description="weighted orientational standard deviation "
                                            "of the forces (input frame), per component"),
        STRESS_STD: ModelOutput(unit=stress_unit, sample_kind="system",
                                description="weighted orientational standard deviation "
                                            "of the stress (input frame), per component"),
    }
    new_capabilities = ModelCapabilities(
        outputs=outputs, atomic_types=capabilities.atomic_types,
        interaction_range=capabilities.interaction_range, length_unit=length_unit,
        supported_devices=capabilities.supported_devices, dtype=capabilities.dtype)
    meta = model.metadata()
    extra = dict(meta.extra)
    extra["symplug::grid"] = grid_text
    metadata = ModelMetadata(
        name=(meta.name + " " if meta.name else "") + "(O(3)-symmetrised by symplug)",
        description=(meta.description + "\n\n" if meta.description else "")
        + "Energy averaged over a quadrature grid of O(3) in chunks of "
        f"{chunk_size} copies; forces and stress are those of the average. Grid: {grid_text}",
        authors=list(meta.authors), references=dict(meta.references), extra=extra)
    return AtomisticModel(module.eval(), metadata, new_capabilities)


def export_symmetrized(model, grid, path, *, chunk_size: int = 8) -> Path:
    """:func:`symmetrize_metatomic` saved as a metatomic model file at ``path``."""
    path = Path(path)
    symmetrize_metatomic(model, grid, chunk_size=chunk_size).save(str(path))
    return path


__all__ = ["ENERGY_STD", "FORCES_STD", "STRESS_STD", "SymmetrizedEnergy",
           "export_symmetrized", "symmetrize_metatomic"]

"""metatomic's ``SymmetrizedModel`` and symplug on the same footing.

:func:`metatomic_grid` is the quadrature of a ``SymmetrizedModel`` as a
:class:`symplug.Grid`, so that :func:`symplug_atoms.diagnose` (``grid=...``) measures on
the same rotations. :func:`to_metatomic` writes an atoms diagnosis as the
``o3::variance::<name>`` and ``o3::character_projection::<name>`` TensorMaps of
metatomic (names and units of metatomic: ``energy`` in eV per structure,
``non_conservative_force`` in eV/A, ``non_conservative_stress`` in eV/A^3);
:func:`from_metatomic` reads a ``SymmetrizedModel``'s outputs (metatensor-torch or
metatensor-core TensorMaps) into symplug's result form, in symplug's reporting units
(meV/atom, meV/A, GPa). Layout and conventions: :mod:`symplug.symmetry_tensormaps`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import ase
import torch

import symplug
from symplug import symmetry_tensormaps
from symplug.groups import O3

from .calculator import to_reporting_units

# symplug atoms output -> the metatomic output that holds it
NAMES = {"energy": "energy", "forces": "non_conservative_force",
         "stress": "non_conservative_stress"}
METATOMIC_UNITS = {"energy": "eV", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}


def metatomic_grid(model: torch.nn.Module) -> symplug.Grid:
    """The O(3) quadrature of a metatomic ``SymmetrizedModel`` (or of the
    ``AtomisticModel`` that :meth:`SymmetrizedModel.wrap` returns) as a symplug grid:
    its rotations R_q, then the improper copies -R_q, each with half of R_q's weight
    (the model evaluates both cosets with its SO(3) weights and halves them).
    ``degree`` is half the model's ``max_angular_momentum_grid``, the band the rule
    integrates exactly."""
    model = getattr(model, "module", model)
    rotations = torch.cat([batch.matrices for batch in model._batches]).to("cpu", torch.float64)
    weights = model._rotation_weights.to("cpu", torch.float64)
    band = int(model.max_angular_momentum_grid)
    return symplug.Grid(
        group=O3(), kind="metatomic", degree=band // 2, exact_degree=band,
        matrices=torch.cat([rotations, -rotations]).contiguous(),
        weights=torch.cat([weights, weights]) / 2,
        rule=f"metatomic SymmetrizedModel quadrature ({rotations.shape[0]} rotations, "
             f"max_angular_momentum_grid={band}); plus improper copies (-R), weights halved")


def unit_scale(frames: Sequence[ase.Atoms]) -> dict[str, list[float]]:
    """Per output, per structure: (symplug reporting unit / metatomic unit)^2, the factor
    of every variance and power (eV -> meV/atom for the energy of an n-atom structure:
    (1000 / n)^2)."""
    return {name: [float(to_reporting_units(name, 1.0, len(f)).reshape(-1)[0]) ** 2
                   for f in frames] for name in NAMES}


def to_metatomic(result: dict, frames: Sequence[ase.Atoms]) -> dict:
    """metatensor-core TensorMaps ``o3::variance::<name>`` and
    ``o3::character_projection::<name>`` of an O3 atoms diagnosis of ``frames`` (the
    structures diagnosed, in order), with metatomic's output names and units."""
    units = {name: METATOMIC_UNITS[name] for name in result["outputs"] if name in NAMES}
    return symmetry_tensormaps.to_tensormaps(result, NAMES, unit_scale(frames), units)


def from_metatomic(outputs: Mapping[str, object], frames: Sequence[ase.Atoms]) -> dict:
    """symplug's ``{"outputs": ...}`` form (:func:`symplug.symmetry_tensormaps.from_tensormaps`)
    of a ``SymmetrizedModel``'s outputs on ``frames`` (in order: ``system`` i is
    ``frames[i]``), in symplug's names and reporting units. Pass the O(3) averages
    too (e.g. ``energy``) for the spectrum fractions and relative errors."""
    return symmetry_tensormaps.from_tensormaps({k: to_core(v) for k, v in outputs.items()},
                                               NAMES, unit_scale(frames))


def to_core(tensor):
    """A metatensor-torch TensorMap as a metatensor-core one (a core one as it is)."""
    import metatensor

    if isinstance(tensor, metatensor.TensorMap):
        return tensor
    import metatensor.torch

    buffer = metatensor.torch.save_buffer(tensor.to("cpu"))
    return metatensor.io.load_buffer(buffer.numpy().tobytes())

"""Diagnosis of an atomistic model on structures: A in meV/atom, meV/A and GPa,
B of every output, the bias-variance split against labels the frames carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import ase
import ase.io
import numpy as np
import torch
from ase.calculators.calculator import BaseCalculator

import symplug
from symplug import SymplugError

from .action import check_frame
from .calculator import CalculatorModel, to_reporting_units
from .models import calculator_model
from .record import atoms_domain


SOURCE = "symplug_source"  # atoms.info key: the file and frame a structure was read from


def reference_labels(atoms: ase.Atoms) -> dict[str, torch.Tensor] | None:
    """Labels stored with the structure (e.g. read from extxyz), in reporting units."""
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    labels = {}
    if "energy" in results:
        labels["energy"] = results["energy"]
    if "forces" in results:
        labels["forces"] = results["forces"]
    if "stress" in results and atoms.get_pbc().all():
        stress = np.asarray(results["stress"], dtype=np.float64)
        if stress.shape == (6,):
            xx, yy, zz, yz, xz, xy = stress
            stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        labels["stress"] = stress
    if not labels:
        return None
    return {k: torch.from_numpy(to_reporting_units(k, v, len(atoms))) for k, v in labels.items()}


def default_outputs(frames: Sequence[ase.Atoms]) -> list[str]:
    """energy and forces; stress too when some structure is periodic."""
    names = ["energy", "forces"]
    if any(f.get_pbc().all() for f in frames):
        names.append("stress")
    return names


def excluded_outputs(atoms: ase.Atoms) -> tuple[str, ...]:
    """Stress exists for periodic structures only: its A and B are taken over those."""
    return () if atoms.get_pbc().all() else ("stress",)


def structure_rows(frames: Sequence[ase.Atoms], *_) -> list[dict]:
    """Formula, atom count and periodicity of each structure, in order."""
    return [{"formula": f.get_chemical_formula(), "n_atoms": len(f),
             "periodic": bool(f.get_pbc().all())} for f in frames]


def all_structure_rows(parts: list[list[dict]], context) -> dict:
    return {"structures": [row for part in parts for row in part]}


def check_labels(atoms: ase.Atoms, where: str = "structure") -> None:
    """Refuse labels the structure carries (``atoms.calc.results``: energy, per-atom
    energies, forces, stress) that are not finite or have the wrong shape: energy one
    number, energies (N,), forces (N, 3), stress (6,) Voigt or (3, 3)."""
    results = getattr(atoms.calc, "results", None) or {}
    shapes = {"energy": [(), (1,)], "free_energy": [(), (1,)], "energies": [(len(atoms),)],
              "forces": [(len(atoms), 3)], "stress": [(6,), (3, 3)]}
    for name, allowed in shapes.items():
        if name not in results:
            continue
        try:
            value = np.asarray(results[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise SymplugError(f"{where}: label {name!r} is not numeric") from None
        if value.shape not in allowed:
            raise SymplugError(f"{where}: label {name!r} has shape {value.shape}; expected "
                               f"{' or '.join(str(a) for a in allowed)} for {len(atoms)} atoms")
        if not np.isfinite(value).all():
            bad = value.reshape(-1)[~np.isfinite(value.reshape(-1))]
            raise SymplugError(f"{where}: label {name!r} holds {int(bad.size)} non-finite "
                               f"value(s) ({bad[0]}); labels must be finite")


def check_structure(atoms: ase.Atoms, name: str = "structure") -> None:
    """:func:`~symplug_atoms.action.check_frame` and :func:`check_labels`, naming the
    structure by its file and frame when :func:`read_frames` read it, else by ``name``."""
    where = atoms.info.get(SOURCE, name) if isinstance(atoms, ase.Atoms) else name
    check_frame(atoms, where)
    check_labels(atoms, where)


def frame_partitions(paths: Sequence[str | Path], size: int | None = 16) -> symplug.Partitions:
    """The structures of many files as lazy partitions of ``size`` frames (None: 16); a
    file's frames are counted here, and each partition reads its own slice where it is
    computed, for ``symplug.diagnose(..., client=...)``."""
    import dask

    size = size or 16
    parts = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise SymplugError(f"{path}: no such file")
        try:
            count = sum(1 for _ in ase.io.iread(path, index=":"))
        except Exception as exc:
            raise SymplugError(f"{path}: ase.io cannot read it ({type(exc).__name__}: {exc})") from exc
        parts += [dask.delayed(read_frames)(path, f"{start}:{min(start + size, count)}", False)
                  for start in range(0, count, int(size))]
    return symplug.Partitions(parts)


def read_frames(path: str | Path, index: str = ":", check: bool = True) -> list[ase.Atoms]:
    """Structures from any file ase.io reads (extxyz, traj, ...), each checked unless
    ``check=False`` (the diagnosis checks every structure itself and, with
    ``skip_failures``, flags a bad one instead of stopping); errors name the frame by its
    position in the file (also for a slice ``"a:b"``), kept in ``atoms.info["symplug_source"]``."""
    path = Path(path)
    if not path.exists():
        raise SymplugError(f"{path}: no such file")
    if path.is_dir():
        raise SymplugError(f"{path}: a folder, not a structure file (give the files in it)")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as exc:
        raise SymplugError(f"{path}: ase.io cannot read it ({type(exc).__name__}: {exc})") from exc
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise SymplugError(f"{path}: no structures")
    first = int(index.split(":")[0] or 0) if isinstance(index, str) and ":" in index else 0
    for i, frame in enumerate(frames):
        frame.info[SOURCE] = f"{path} frame {first + i}"
        if check:
            check_structure(frame)
    return frames


def diagnose(model: Any, frames: Sequence[ase.Atoms], outputs: Sequence[str] | None = None,
             layers: Sequence[str] = (), group: str = "O3", degree: int = 2,
             declare: Mapping[str, str] | None = None, **kwargs) -> dict:
    """A and B of ``model`` (an ASE calculator, :class:`CalculatorModel` or
    :class:`~symplug_atoms.torch_model.TorchAtomsModel`, whose ``layers`` can be
    captured by name) on ``frames``. ``declare`` adds outputs beyond energy, per-atom
    ``energies``, forces, stress and dipole with their representations, e.g.
    ``{"mtt::dipole": "1o"}`` (diagnosed in the model's units).

    Structures whose evaluation fails are flagged under ``"skipped"`` and counted;
    the others are kept. Further keyword arguments go to :func:`symplug.diagnose`.
    """
    if isinstance(model, BaseCalculator):
        model = calculator_model(model)
    if layers and isinstance(model, CalculatorModel):
        raise SymplugError("hidden layers need a torch model (e.g. TorchAtomsModel); "
                           "ASE calculators expose outputs only")
    kwargs.setdefault("skip_failures", True)
    domain = atoms_domain().declare(declare) if declare else atoms_domain()
    return symplug.diagnose(model, list(frames), domain, outputs=outputs, layers=layers,
                            group=group, degree=degree, **kwargs)

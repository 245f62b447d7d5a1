"""metatomic models through metatomic-ase's MetatomicCalculator.

The rotated copies of a structure are evaluated in one batched call. Energy,
per-atom energies, forces and stress come from ``MetatomicCalculator.compute_energy``;
any other output the model declares (a dipole, a spherical target ``l,sigma``; declare
its representation with ``symplug diagnose atoms --declare NAME=REP``) from
``run_model``, in the model's units. Models that
expose direct (non-conservative) forces, as ``non_conservative_force`` or the older
plural ``non_conservative_forces``, are diagnosed on those forces as the model returns
them (``forces="direct"``, through ``MetatomicCalculator.run_model(list, outputs)``;
``compute_energy`` would subtract each copy's net force, which hides net-force
symmetry breaking) or on the gradient of their energy (``forces="conservative"``,
through ``MetatomicCalculator.compute_energy(list)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from symplug import SymplugError

from .action import RotatedCopies
from .calculator import CalculatorModel, to_reporting_units

DIRECT_FORCE_NAMES = ("non_conservative_force", "non_conservative_forces")
STANDARD = ("energy", "energies", "forces", "stress")  # through compute_energy


def is_metatomic_file(path: str | Path) -> bool:
    """True for a TorchScript archive saved by metatomic (not a symplug checkpoint)."""
    import zipfile

    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/code/__torch__.py") or "/code/" in name
                   for name in archive.namelist())


class MetatomicModel(CalculatorModel):
    """A metatomic model, from its file or a ``MetatomicCalculator``, as a symplug atoms
    model whose copies are evaluated in batches.

    ``forces``: ``"direct"``, ``"conservative"`` or ``"auto"``: for a file, direct forces
    when the model has them; for a calculator, what it was built for
    (``non_conservative="forces"`` or not).
    """

    def __init__(self, source, forces: str = "auto", properties=None):
        from metatomic_ase import MetatomicCalculator

        if forces not in ("auto", "direct", "conservative"):
            raise SymplugError(f"forces must be auto, direct or conservative, got {forces!r}")
        self.path: Path | None = None
        if isinstance(source, MetatomicCalculator):
            self.name = "MetatomicCalculator"
            if forces == "auto":
                forces = "direct" if source._nc_forces else "conservative"
            # energy and stress come from compute_energy, which must take gradients
            calc = (MetatomicCalculator(source._model) if source._nc_forces or source._nc_stress
                    else source)
        else:
            self.path = Path(source)
            self.name = self.path.name
            if not self.path.exists():
                raise SymplugError(f"{self.path}: no such metatomic model file")
            try:
                calc = MetatomicCalculator(str(self.path))
            except Exception as exc:
                raise SymplugError(f"{self.path}: metatomic cannot load it "
                                   f"({type(exc).__name__}: {exc})") from exc
        capabilities = calc._model.capabilities()
        self.compute_dtype = capabilities.dtype  # StatesPrecision: e.g. "float32"
        outputs = capabilities.outputs
        direct = [name for name in outputs if name.split("/")[0] in DIRECT_FORCE_NAMES]
        if forces == "direct" and not direct:
            raise SymplugError(f"{self.name}: the model has no direct force output "
                               f"({', '.join(DIRECT_FORCE_NAMES)})")
        self.direct_forces = bool(direct) and forces != "conservative"
        # the name metatomic-ase's calculator picks: the plain output before its variants
        self.force_output = min(direct, key=lambda name: ("/" in name, name)) if direct else None
        self.reps: dict[str, str] = {}  # declared representations (for_outputs)
        super().__init__(calc, properties)

    def __copy__(self) -> "MetatomicModel":
        """A shallow copy in this process (``for_outputs``), also of a model made from a
        calculator, which :meth:`__reduce__` cannot send to other processes."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __reduce__(self):
        """Pickled (e.g. for dask workers) as its file, reloaded there."""
        if self.path is None:
            raise SymplugError("a MetatomicModel made from a calculator cannot be sent to "
                               "other processes; make it from the model file instead")
        forces = "direct" if self.direct_forces else "conservative"
        return _reload, (self.path, forces, list(self.properties), dict(self.reps))

    def calculator(self):
        """The ASE calculator for MD: the model's direct forces when diagnosed on them
        (metatomic-ase removes their net force), else the energy gradient."""
        from metatomic_ase import MetatomicCalculator

        if self.direct_forces:
            return MetatomicCalculator(self.calc._model, non_conservative="forces")
        return self.calc

    def for_outputs(self, outputs, optional=()):
        model, names = super().for_outputs(outputs, optional)
        model.reps = {name: outputs[name] for name in names}
        return model, names

    def available(self) -> set[str]:
        """energy, forces, stress, per-atom energies (when the model's energy output is
        per atom) and every other output the model declares (e.g. ``mtt::dipole``)."""
        declared = self.calc._model.capabilities().outputs
        per_atom = "energy" in declared and declared["energy"].sample_kind == "atom"
        return ({"energy", "forces", "stress"} | ({"energies"} if per_atom else set())
                | set(declared))

    def __call__(self, batch: "RotatedCopies | Sequence") -> dict[str, torch.Tensor]:
        copies = batch.structures() if isinstance(batch, RotatedCopies) else list(batch)
        periodic = all(a.get_pbc().all() for a in copies)
        props = [p for p in self.properties if p != "stress" or periodic]
        extra = [p for p in props if p not in STANDARD]
        direct = self.direct_forces and "forces" in props
        try:
            res = {}
            if extra or direct:  # raw model outputs, energy too when nothing else needs it
                res.update(self._run(copies, extra, direct,
                                     energy=direct and not {"stress", "energies"} & set(props)))
            rest = [p for p in props if p not in res]
            if rest:  # energy (and forces, stress from its gradients) in one batch
                computed = self.calc.compute_energy(copies, "stress" in rest or "forces" in rest,
                                                    per_atom="energies" in rest)
                res.update({p: computed[p] for p in rest})
        except SymplugError:
            raise
        except Exception as exc:
            raise SymplugError(f"metatomic model {self.name} failed on "
                               f"{copies[0].get_chemical_formula()}: "
                               f"{type(exc).__name__}: {exc}") from exc
        n = len(copies[0])
        out = {}
        for p in props:
            values = np.asarray(res[p], dtype=np.float64)
            out[p] = torch.from_numpy(np.stack([to_reporting_units(p, v, n) for v in values]))
        return out

    def _run(self, copies: list, names: list[str], direct: bool,
             energy: bool) -> dict[str, np.ndarray]:
        """One ``run_model`` call: the outputs ``names`` as the model returns them, its
        direct forces (B, N, 3) in eV/A if ``direct`` (net force included) and its
        energies (B,) in eV if ``energy``."""
        from metatomic.torch import ModelOutput

        declared = self.calc._model.capabilities().outputs
        request = {name: ModelOutput(unit=declared[name].unit,
                                     sample_kind=declared[name].sample_kind) for name in names}
        if direct:
            request[self.force_output] = ModelOutput(unit="eV/Angstrom", sample_kind="atom")
        if energy:
            request["energy"] = ModelOutput(unit="eV", sample_kind="system")
        result = self.calc.run_model(copies, request)
        n_copies, n_atoms = len(copies), len(copies[0])
        out = {name: self._values(name, result[name], n_copies, n_atoms) for name in names}
        if direct:
            out["forces"] = self._values(self.force_output, result[self.force_output],
                                         n_copies, n_atoms)
        if energy:
            out["energy"] = self._values("energy", result["energy"], n_copies, n_atoms)[:, 0]
        return out

    def _values(self, name: str, tensor_map, n_copies: int, n_atoms: int) -> np.ndarray:
        """A model output as (B, D) per structure or (B, N, D) per atom: the blocks in key
        order, each block's values properties-major (``P x (components)``), which is the
        order of a representation ``"P x rep"`` (e.g. ``"4x2,+1"``). Spherical components
        (``o3_mu``) must be declared as ``l,sigma`` blocks, Cartesian ones (``xyz``) as
        e3nn irreps or ``cartesian2``."""
        parts = []
        for block in tensor_map.blocks():
            _check_basis(name, [c.names for c in block.components], self.reps.get(name))
            values = block.values.detach().to(torch.float64)
            values = values.movedim(-1, 1).reshape(values.shape[0], -1).numpy()
            system = block.samples.column("system").to(torch.long).numpy()
            index = (system, block.samples.column("atom").to(torch.long).numpy()) \
                if "atom" in block.samples.names else (system,)
            shape = (n_copies, n_atoms) if len(index) == 2 else (n_copies,)
            part = np.zeros(shape + (values.shape[1],))
            covered = np.zeros(shape, dtype=bool)
            part[index], covered[index] = values, True
            if not covered.all():
                raise SymplugError(f"metatomic model {self.name}: output {name!r} does not "
                                   f"hold a value for every {'atom' if len(index) == 2 else 'copy'}")
            parts.append(part)
        return np.concatenate(parts, axis=-1)

    def __repr__(self) -> str:
        kind = "direct" if self.direct_forces else "conservative"
        return f"MetatomicModel({self.name}, forces={kind})"


def _reload(path: Path, forces: str, properties: list[str], reps: dict) -> MetatomicModel:
    model = MetatomicModel(path, forces, properties)
    model.reps = reps
    return model


def _check_basis(name: str, components: list[list[str]], rep: str | None) -> None:
    """Raise if a declared representation ``rep`` does not match the basis of the output's
    components (metatensor spherical ``o3_mu`` or Cartesian ``xyz``)."""
    if rep is None or not components:
        return
    from symplug.representations import representation

    spherical = all(block.kind == "spherical" for block in representation(rep).blocks)
    if components == [["o3_mu"]] and not spherical:
        raise SymplugError(f"output {name!r} is in the spherical basis (components o3_mu): "
                           f"declare it as l,sigma blocks (e.g. '1,+1'), not {rep!r}")
    if components[0][0].startswith("xyz") and spherical:
        raise SymplugError(f"output {name!r} is Cartesian (components "
                           f"{', '.join(c[0] for c in components)}): declare it as e3nn "
                           f"irreps (e.g. '1o') or 'cartesian2', not {rep!r}")

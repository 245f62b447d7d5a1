"""metatomic models through metatomic-ase's MetatomicCalculator.

The rotated copies of a structure are evaluated in one batched call. Models that
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
from .models import CalculatorModel, to_reporting_units

DIRECT_FORCE_NAMES = ("non_conservative_force", "non_conservative_forces")


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
    """A metatomic model file as a symplug atoms model.

    ``forces``: ``"auto"`` (direct forces when the model has them), ``"direct"`` or
    ``"conservative"``.
    """

    def __init__(self, path: str | Path, forces: str = "auto", properties=None):
        from metatomic_ase import MetatomicCalculator

        path = Path(path)
        if not path.exists():
            raise SymplugError(f"{path}: no such metatomic model file")
        try:
            probe = MetatomicCalculator(str(path))
        except Exception as exc:
            raise SymplugError(f"{path}: metatomic cannot load it ({type(exc).__name__}: "
                               f"{exc})") from exc
        outputs = probe._model.capabilities().outputs
        direct = [name for name in outputs if name.split("/")[0] in DIRECT_FORCE_NAMES]
        has_direct = bool(direct)
        if forces not in ("auto", "direct", "conservative"):
            raise SymplugError(f"forces must be auto, direct or conservative, got {forces!r}")
        if forces == "direct" and not has_direct:
            raise SymplugError(f"{path}: the model has no direct force output "
                               f"({', '.join(DIRECT_FORCE_NAMES)})")
        self.direct_forces = has_direct and forces != "conservative"
        # the name metatomic-ase's calculator picks: the plain output before its variants
        self.force_output = min(direct, key=lambda name: ("/" in name, name)) if has_direct \
            else None
        calc = (MetatomicCalculator(str(path), non_conservative="forces")
                if self.direct_forces else probe)
        self.path = path
        super().__init__(calc, properties)

    def __call__(self, batch: "RotatedCopies | Sequence") -> dict[str, torch.Tensor]:
        copies = batch.structures() if isinstance(batch, RotatedCopies) else list(batch)
        periodic = all(a.get_pbc().all() for a in copies)
        props = [p for p in self.properties if p != "stress" or periodic]
        try:
            res = {}
            if self.direct_forces and "forces" in props:
                res.update(self._run(copies, energy="stress" not in props))
            rest = [p for p in props if p not in res]
            if rest:  # energy (and stress, from the strain gradient) in one batch
                computed = self.calc.compute_energy(copies, "stress" in rest or "forces" in rest)
                res.update({p: computed[p] for p in rest})
        except Exception as exc:
            raise SymplugError(f"metatomic model {self.path.name} failed on "
                               f"{copies[0].get_chemical_formula()}: "
                               f"{type(exc).__name__}: {exc}") from exc
        n = len(copies[0])
        out = {}
        for p in props:
            values = np.asarray(res[p], dtype=np.float64)
            out[p] = torch.from_numpy(np.stack([to_reporting_units(p, v, n) for v in values]))
        return out

    def _run(self, copies: list, energy: bool) -> dict[str, np.ndarray]:
        """The model's direct forces (B, N, 3) in eV/A as it returns them (net force
        included) and, if ``energy``, the energies (B,) in eV, from one ``run_model``."""
        from metatomic.torch import ModelOutput

        request = {self.force_output: ModelOutput(unit="eV/Angstrom", sample_kind="atom")}
        if energy:
            request["energy"] = ModelOutput(unit="eV", sample_kind="system")
        result = self.calc.run_model(copies, request)
        block = result[self.force_output].block()
        samples = block.samples.values.to(torch.long).numpy()
        forces = np.full((len(copies), len(copies[0]), 3), np.nan)
        forces[samples[:, 0], samples[:, 1]] = block.values.detach().to(torch.float64) \
            .reshape(-1, 3).numpy()
        if np.isnan(forces).any():
            raise SymplugError(f"metatomic model {self.path.name}: output "
                               f"{self.force_output!r} does not hold a force for every atom")
        out = {"forces": forces}
        if energy:
            block = result["energy"].block()
            energies = np.full(len(copies), np.nan)
            energies[block.samples.values[:, 0].to(torch.long).numpy()] = \
                block.values.detach().to(torch.float64).reshape(-1).numpy()
            out["energy"] = energies
        return out

    def __repr__(self) -> str:
        kind = "direct" if self.direct_forces else "conservative"
        return f"MetatomicModel({self.path.name}, forces={kind})"

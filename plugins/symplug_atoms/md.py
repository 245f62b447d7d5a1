"""MD stability tests: NVE runs of raw and symmetrised models side by side.

For each variant (``raw``; ``symmetrized``: full quadrature average every step;
``random``: one random rotation per step; ``mts``: impulse multiple time stepping, the
correction F_avg - F_raw applied k-fold every k steps, r-RESPA with outer step k dt) it
runs velocity-Verlet NVE from the same seeded velocities and reports:

* energy drift (meV/atom/ps), the slope of a linear fit of E_tot = K + E_pot per atom.
  For ``mts`` (any calculator that sets ``results["mts_correction"]``) the fit uses the
  outer (correction) steps only: there the reported E_pot is E_avg and K + E_avg is the
  quantity r-RESPA conserves; in between the reported energy is an estimate and K + E
  is not conserved (``energy_drift_steps`` in the summary says which steps were fitted);
* time to failure (ps) and the fraction of target steps completed, a failure being
  a non-finite energy, a temperature above ``max_temperature_factor`` times the
  initial one, or an atom whose nearest neighbour moved past ``bond_factor`` times
  the largest initial nearest-neighbour distance;
* for isolated structures, the angular momentum L = sum m (r - r_com) x v (amu A^2/fs)
  and the net torque sum (r - r_com) x F (eV; for ``mts``, its mean over each cycle of
  k steps, as the dynamics feels it): zero initial L and a symmetric model
  keep L = 0, so |L(t)| is the direct signature of broken rotational symmetry;
* the RMS difference of the radial distribution function to a reference run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import ase
import numpy as np
from ase import units
from ase.calculators.calculator import BaseCalculator
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from tqdm.auto import tqdm

from symplug import SymplugError

from .action import check_frame

VARIANTS = ("raw", "symmetrized", "rotated", "random", "mts")


@dataclass
class MDRun:
    """Traces and figures of one NVE run (times in ps, energies in eV)."""

    name: str
    n_atoms: int
    target_steps: int
    timestep_fs: float
    time_ps: list[float] = field(default_factory=list)
    total_energy: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    angular_momentum: list[list[float]] = field(default_factory=list)
    torque: list[list[float]] = field(default_factory=list)
    failure: str | None = None
    rdf: list[float] = field(default_factory=list)
    seconds: float = 0.0
    outer_step: list[bool] = field(default_factory=list)  # MTS: correction step or not

    def drift_mask(self) -> np.ndarray:
        """The recorded frames the drift fit uses: all, or for MTS runs the outer steps."""
        if self.outer_step and len(self.outer_step) == len(self.total_energy):
            return np.asarray(self.outer_step, dtype=bool)
        return np.ones(len(self.total_energy), dtype=bool)

    def effective_torque(self) -> np.ndarray:
        """The net torques (eV) the dynamics feels: per step, or for MTS runs the mean
        over each complete cycle (outer step to outer step), since the correction's
        k-fold kick on outer steps stands for k steps of F_avg - F_raw."""
        tau = np.asarray(self.torque)
        outer = self.drift_mask()
        if len(tau) != len(outer) or outer.all():
            return tau
        starts = np.flatnonzero(outer)
        return np.array([tau[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:])])

    @property
    def steps_done(self) -> int:
        return max(len(self.time_ps) - 1, 0)

    def summary(self) -> dict:
        t = np.asarray(self.time_ps)
        e = np.asarray(self.total_energy) / self.n_atoms * 1000.0  # meV/atom
        finite = np.isfinite(e) & self.drift_mask()
        drift = float(np.polyfit(t[finite], e[finite], 1)[0]) if finite.sum() > 2 else math.nan
        L = np.asarray(self.angular_momentum)
        tau = self.effective_torque()
        return {"energy_drift_meV_per_atom_per_ps": drift,
                "energy_drift_steps": "all" if self.drift_mask().all() else "outer",
                "completed_fraction": self.steps_done / self.target_steps,
                "time_to_failure_ps": (float(t[-1]) if self.failure else None),
                "failure": self.failure,
                "angular_momentum_final": float(np.linalg.norm(L[-1])) if len(L) else None,
                "angular_momentum_max": float(np.linalg.norm(L, axis=1).max()) if len(L) else None,
                "torque_rms_eV": float(np.sqrt((tau ** 2).sum(1).mean())) if len(tau) else None,
                "temperature_mean_K": float(np.nanmean(self.temperature)),
                "seconds": self.seconds}


def nearest_neighbor_distances(atoms: ase.Atoms) -> np.ndarray:
    d = atoms.get_all_distances(mic=atoms.get_pbc().any())
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def rdf(atoms: ase.Atoms, r_max: float = 6.0, bins: int = 60) -> np.ndarray:
    """Pair-distance histogram per atom and shell volume (unnormalised g(r) shape)."""
    d = atoms.get_all_distances(mic=atoms.get_pbc().any())
    iu = np.triu_indices(len(atoms), 1)
    hist, edges = np.histogram(d[iu], bins=bins, range=(0.0, r_max))
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return hist / shell / len(atoms)


def run_nve(atoms: ase.Atoms, calc: BaseCalculator, steps: int, timestep_fs: float,
            temperature_K: float, seed: int, name: str = "run",
            max_temperature_factor: float = 5.0, bond_factor: float = 1.8,
            progress: bool = True) -> MDRun:
    """One velocity-Verlet NVE run from seeded Maxwell-Boltzmann velocities with zero
    total momentum (and zero angular momentum for isolated structures)."""
    import time

    check_frame(atoms, name)
    atoms = atoms.copy()
    atoms.calc = calc
    isolated = not atoms.get_pbc().any()
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if isolated:
        ZeroRotation(atoms)
    run = MDRun(name, len(atoms), steps, timestep_fs)
    nn0 = nearest_neighbor_distances(atoms).max()
    t0 = temperature_K if temperature_K > 0 else 300.0
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    rdf_sum, rdf_count = None, 0
    start = time.perf_counter()

    def record() -> None:
        nonlocal rdf_sum, rdf_count
        epot = atoms.get_potential_energy()
        outer = getattr(atoms.calc, "results", {}).get("mts_correction")
        if outer is not None:
            run.outer_step.append(bool(outer))
        run.time_ps.append(dyn.nsteps * timestep_fs / 1000.0)
        run.total_energy.append(float(epot + atoms.get_kinetic_energy()))
        run.temperature.append(float(atoms.get_temperature()))
        com = atoms.get_center_of_mass()
        rel = atoms.positions - com
        if isolated:
            mom = atoms.get_momenta() * units.fs  # amu A / fs
            run.angular_momentum.append(np.cross(rel, mom).sum(0).tolist())
            run.torque.append(np.cross(rel, atoms.get_forces()).sum(0).tolist())
        g = rdf(atoms)
        rdf_sum = g if rdf_sum is None else rdf_sum + g
        rdf_count += 1

    record()
    bar = tqdm(total=steps, desc=name, unit="step", disable=not progress, leave=False)
    try:
        for _ in range(steps):
            try:
                dyn.run(1)
            except Exception as exc:  # the model broke down: a failure, not a crash
                run.failure = f"{type(exc).__name__}: {exc}"
                break
            bar.update(1)
            record()
            if not math.isfinite(run.total_energy[-1]):
                run.failure = "non-finite energy"
            elif run.temperature[-1] > max_temperature_factor * t0:
                run.failure = f"temperature {run.temperature[-1]:.0f} K > {max_temperature_factor} x {t0:.0f} K"
            elif nearest_neighbor_distances(atoms).max() > bond_factor * nn0:
                run.failure = f"an atom's nearest neighbour moved past {bond_factor} x {nn0:.2f} A"
            if run.failure:
                break
    finally:
        bar.close()
    run.seconds = time.perf_counter() - start
    run.rdf = (rdf_sum / max(rdf_count, 1)).tolist()
    return run


def compare(atoms: ase.Atoms, calculators: dict[str, BaseCalculator], steps: int,
            timestep_fs: float, temperature_K: float, seed: int = 0,
            reference: BaseCalculator | None = None, progress: bool = True) -> dict:
    """NVE runs of every calculator (and the reference) from the same velocities."""
    runs = {name: run_nve(atoms, calc, steps, timestep_fs, temperature_K, seed, name,
                          progress=progress)
            for name, calc in calculators.items()}
    ref = (run_nve(atoms, reference, steps, timestep_fs, temperature_K, seed, "reference",
                   progress=progress) if reference is not None else None)
    table = {}
    for name, run in runs.items():
        row = run.summary()
        if ref is not None:
            row["rdf_rms_difference"] = float(np.sqrt(np.mean(
                (np.asarray(run.rdf) - np.asarray(ref.rdf)) ** 2)))
        table[name] = row
    if ref is not None:
        table["reference"] = ref.summary()
    return {"kind": "md", "domain": "atoms",
            "structure": atoms.get_chemical_formula(), "n_atoms": len(atoms),
            "periodic": bool(atoms.get_pbc().any()), "steps": steps, "timestep_fs": timestep_fs,
            "temperature_K": temperature_K, "seed": seed, "table": table,
            "runs": {name: asdict(run) for name, run in {**runs, **({"reference": ref} if ref else {})}.items()}}


def plot(result: dict, path: str | Path | BinaryIO) -> str | Path | BinaryIO:
    """Energy, temperature and |L| traces of every run, one PNG figure written to
    ``path`` (a file name or a binary file object). MTS energies are drawn at the outer
    (correction) steps only, where K + E_avg is the conserved quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    isolated = not result["periodic"]
    fig, axes = plt.subplots(1, 3 if isolated else 2, figsize=(13 if isolated else 9, 3.6))
    for name, run in result["runs"].items():
        t = np.asarray(run["time_ps"])
        e = (np.asarray(run["total_energy"]) - run["total_energy"][0]) / run["n_atoms"] * 1000
        outer = np.asarray(run.get("outer_step") or [], dtype=bool)
        if outer.size == t.size and not outer.all():
            axes[0].plot(t[outer], e[outer], label=f"{name} (outer steps)")
        else:
            axes[0].plot(t, e, label=name)
        axes[1].plot(t, run["temperature"], label=name)
        if isolated:
            axes[2].plot(t, np.linalg.norm(np.asarray(run["angular_momentum"]), axis=1), label=name)
    axes[0].set(xlabel="time (ps)", ylabel="E_tot - E_tot(0) (meV/atom)", title="NVE energy")
    axes[1].set(xlabel="time (ps)", ylabel="T (K)", title="temperature")
    if isolated:
        axes[2].set(xlabel="time (ps)", ylabel="|L| (amu A^2/fs)", title="angular momentum")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path) if isinstance(path, str) else path
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def variants(model_calc: BaseCalculator, names: list[str], degree: int, interval: int,
             seed: int) -> dict[str, BaseCalculator]:
    """The calculators to compare: the raw model and its symmetrised forms."""
    from .symmetrize import SymmetrizedCalculator

    made: dict[str, Callable[[], BaseCalculator]] = {
        "raw": lambda: model_calc,
        "symmetrized": lambda: SymmetrizedCalculator(model_calc, degree=degree),
        "rotated": lambda: SymmetrizedCalculator(model_calc, degree=degree, mode="rotated",
                                                 seed=seed),
        "random": lambda: SymmetrizedCalculator(model_calc, mode="random", seed=seed),
        "mts": lambda: SymmetrizedCalculator(model_calc, degree=degree, mode="mts",
                                             interval=interval),
    }
    unknown = [n for n in names if n not in made]
    if unknown:
        raise SymplugError(f"unknown MD variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return {n: made[n]() for n in names}


def structure_named(spec: str) -> ase.Atoms:
    """A shipped test structure (``ico13``, ``to38``, ``ico55``, ``bulk32``) or the
    first frame of a file ase reads."""
    from ase.build import bulk
    from ase.cluster import Icosahedron, Octahedron

    shipped = {"ico13": lambda: Icosahedron("Cu", 2), "to38": lambda: Octahedron("Cu", 4, cutoff=1),
               "ico55": lambda: Icosahedron("Cu", 3),
               "bulk32": lambda: bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)}
    if spec in shipped:
        return shipped[spec]()
    from .domain import read_frames

    return read_frames(spec, index="0")[0]


def as_calculator(model) -> BaseCalculator:
    """An ASE calculator for a loaded atoms model."""
    from .models import CalculatorModel
    from .torch_model import TorchAtomsCalculator, TorchAtomsModel

    if isinstance(model, BaseCalculator):
        return model
    if callable(getattr(model, "calculator", None)):  # metatomic models, metatrain checkpoints
        return model.calculator()
    if isinstance(model, CalculatorModel):
        return model.calc
    if isinstance(model, TorchAtomsModel):
        return TorchAtomsCalculator(model)
    raise SymplugError(f"cannot run MD with {type(model).__name__}")


def run_md_command(options: dict) -> dict:
    """``symplug md atoms``: compare variants, write the figure, return the result."""
    from .models import load_model

    atoms = structure_named(options["structure"])
    calc = as_calculator(load_model(options["model"]))
    calcs = variants(calc, list(options["variants"]), int(options["degree"]),
                     int(options["interval"]), int(options["seed"]))
    reference = (as_calculator(load_model(options["reference"]))
                 if options.get("reference") else None)
    result = compare(atoms, calcs, int(options["steps"]), float(options["timestep_fs"]),
                     float(options["temperature_K"]), int(options["seed"]), reference,
                     progress=bool(options.get("progress", True)))
    result["model"] = options["model"]
    result["degree"] = int(options["degree"])
    if options.get("out"):
        result["figure"] = str(plot(result, Path(options["out"]) / "md.png"))
    return result

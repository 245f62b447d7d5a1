"""MD stability tests: NVE runs of raw and symmetrised models side by side.

For each variant (``raw``; ``symmetrized``: full quadrature average every step;
``random``: one random rotation per step; ``mts``: impulse multiple time stepping, the
correction F_avg - F_raw applied k-fold every k steps, r-RESPA with outer step k dt;
``projected``: the raw forces without their net force and net torque,
:mod:`symplug_atoms.rigid`) it
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

Next to these, the MD stability figures three MLIP benchmarks report, computed from the
same recorded arrays (:func:`community_metrics`; definitions and sources in
``docs/atoms.md``):

* MLIPAudit's NVE energy-drift ratio r = |slope of E_tot(t)| * T_run / sigma_KE and its
  score (1 for r < 1, exp(-3 (r - 1)) above; 0 for a run that did not complete);
* mlip-arena's fraction of the target steps completed (last step with a finite energy
  over the target) and centre-of-mass drift |r_com(t) - r_com(0)| (A);
* Fu et al.'s time to failure: the first recorded time at
  which a bond of the initial structure deviates by more than 0.5 A from its reference
  length, the temperature KE / (1.5 N k_B) leaves [0.1, 1e5] K, or (periodic structures
  with a reference run) the RDF over a 1 ps window deviates from the reference RDF by
  more than the threshold; the criterion that fired first is reported with its time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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
from .limits import MAX_TIMESTEP_FS

VARIANTS = ("raw", "symmetrized", "rotated", "random", "mts", "projected")

# MLIPAudit (nve_energy_conservation): score 1 below the threshold on r, exp decay above
MLIPAUDIT_RATIO_THRESHOLD = 1.0
MLIPAUDIT_ALPHA = 3.0
# Fu et al.'s stability criteria
FU_BOND_DEVIATION_A = 0.5  # MD17 and alanine dipeptide
FU_TEMPERATURE_RANGE_K = (0.1, 1.0e5)  # K: their runs stop outside it
FU_RDF_WINDOW_PS = 1.0
FU_RDF_THRESHOLD = 1.0  # LiPS, their periodic material (3.0 for water)
FU_RDF_BINS = np.linspace(1e-6, 6.0, 501)  # A; the error is mean |g - g_ref| * 6 A


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
    seconds: float = 0.0  # wall time of the run
    cpu_seconds: float = 0.0  # its process's CPU time: the cost, also beside other jobs
    outer_step: list[bool] = field(default_factory=list)  # MTS: correction step or not
    kinetic_energy: list[float] = field(default_factory=list)  # eV
    center_of_mass: list[list[float]] = field(default_factory=list)  # A
    numbers: list[int] = field(default_factory=list)
    cell: list[list[float]] = field(default_factory=list)
    pbc: list[bool] = field(default_factory=list)
    # every recorded frame (N, 3) in A, for Fu et al.'s bond and RDF criteria: kept in
    # memory (F N 24 bytes), not written to the result JSON (``as_dict``)
    positions: list[np.ndarray] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """The run's fields for the result JSON, without the positions."""
        return {k: v for k, v in asdict(replace(self, positions=[])).items() if k != "positions"}

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

    def summary(self, reference: MDRun | None = None) -> dict:
        """symplug's figures and the community ones (:func:`community_metrics`; Fu et
        al.'s bond and RDF references come from ``reference`` when given)."""
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
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                **community_metrics(self, reference)}


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


# --------------------------------------------------------------------------- community figures


def mlipaudit_drift_ratio(time_ps, total_energy_eV, kinetic_energy_eV, fit=None) -> dict:
    """MLIPAudit's NVE energy-conservation figure: the linear fit of E_tot(t) - E_tot(0)
    (eV against ps) gives the drift over the run |slope| * (t_last - t_first), divided by
    the standard deviation of the kinetic energy over the run (population std):
    r = |slope| T_run / sigma_KE, dimensionless. ``fit`` (bool mask) selects the frames
    of the fit (all by default; the outer steps of an MTS run); sigma_KE is taken over
    all finite frames. Frames with a non-finite energy are left out (MLIPAudit reports
    no ratio for such a run and scores it 0, see :func:`mlipaudit_score`)."""
    t = np.asarray(time_ps, dtype=float)
    e = np.asarray(total_energy_eV, dtype=float)
    k = np.asarray(kinetic_energy_eV, dtype=float)
    finite = np.isfinite(e) & np.isfinite(k)
    use = finite & (np.ones(len(t), bool) if fit is None else np.asarray(fit, bool))
    sigma = float(np.std(k[finite])) if finite.any() else math.nan
    if use.sum() < 2 or not sigma > 0:
        return {"mlipaudit_drift_ratio": None, "mlipaudit_total_drift_eV": None,
                "kinetic_energy_std_eV": sigma if math.isfinite(sigma) else None}
    slope = float(np.polyfit(t[use], e[use] - e[use][0], 1)[0])  # eV / ps
    total = abs(slope * float(t[use][-1] - t[use][0]))
    return {"mlipaudit_drift_ratio": total / sigma, "mlipaudit_total_drift_eV": total,
            "kinetic_energy_std_eV": sigma}


def mlipaudit_score(ratio: float | None, failed: bool = False,
                    threshold: float = MLIPAUDIT_RATIO_THRESHOLD,
                    alpha: float = MLIPAUDIT_ALPHA) -> float:
    """MLIPAudit's soft threshold on r: 1 for r < threshold, exp(-alpha (r - threshold)
    / threshold) otherwise (threshold 1, alpha 3); 0 for a failed run or no ratio."""
    if failed or ratio is None or not math.isfinite(ratio):
        return 0.0
    return 1.0 if ratio < threshold else math.exp(-alpha * (ratio - threshold) / threshold)


def com_drift(center_of_mass, finite=None) -> dict:
    """mlip-arena's centre-of-mass drift: |r_com(t) - r_com(0)| (A) over the frames with
    a finite energy; the final one (what its leaderboard ranks) and the largest."""
    com = np.asarray(center_of_mass, dtype=float).reshape(-1, 3)
    if not len(com):
        return {"com_drift_final_A": None, "com_drift_max_A": None}
    keep = np.ones(len(com), bool) if finite is None else np.asarray(finite, bool)
    d = np.linalg.norm(com[keep] - com[0], axis=1)
    return {"com_drift_final_A": float(d[-1]) if len(d) else None,
            "com_drift_max_A": float(d.max()) if len(d) else None}


def bonds(atoms: ase.Atoms) -> np.ndarray:
    """The bonded pairs (B, 2), i < j, of a structure as Fu et al. take them: ASE's
    ``NeighborList(natural_cutoffs(atoms), self_interaction=False)`` (default skin)."""
    from ase.neighborlist import NeighborList, natural_cutoffs

    nl = NeighborList(natural_cutoffs(atoms), self_interaction=False)
    nl.update(atoms)
    i, j = np.asarray(nl.get_connectivity_matrix().todense()).nonzero()
    pairs = np.sort(np.stack([i, j], 1), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # an atom bonded to its own image
    return np.unique(pairs, axis=0).reshape(-1, 2)


def bond_lengths(positions, pairs, cell=None, pbc=None) -> np.ndarray:
    """Lengths (F, B) in A of the bonds ``pairs`` in every frame of ``positions`` (F, N, 3),
    minimum image for periodic cells; one vectorised call for all frames."""
    pos = np.asarray(positions, dtype=float)
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    vec = pos[:, pairs[:, 1]] - pos[:, pairs[:, 0]]
    if pbc is not None and np.any(pbc):
        from ase.geometry import find_mic

        vec = find_mic(vec.reshape(-1, 3), np.asarray(cell), pbc)[0].reshape(vec.shape)
    return np.linalg.norm(vec, axis=-1)


def rdf_histograms(positions, cell, pbc, bins=FU_RDF_BINS) -> np.ndarray:
    """Per frame, the histogram (F, bins) of all N x N minimum-image pair distances with
    the zero self-distances removed, as Fu et al. count them for periodic systems."""
    from ase.geometry import get_distances

    pos = np.asarray(positions, dtype=float)
    out = np.empty((len(pos), len(bins) - 1))
    for f, p in enumerate(pos):  # one frame at a time: the N x N distances of a frame
        d = get_distances(p, cell=cell, pbc=pbc)[1].ravel()
        out[f] = np.histogram(d[d != 0], bins)[0]
    return out


def fu_rdf(counts, frames: int, n_atoms: int, volume: float, bins=FU_RDF_BINS) -> np.ndarray:
    """Fu et al.'s periodic g(r) from pair-distance counts (..., bins) summed over
    ``frames`` frames: counts over the pair density F N^2 / V times the shell volume."""
    shell = 4 / 3 * np.pi * (bins[1:] ** 3 - bins[:-1] ** 3)
    return np.asarray(counts, dtype=float) / (frames * n_atoms ** 2 / volume * shell)


def fu_time_to_failure(time_ps, positions, kinetic_energy_eV, pairs, reference_lengths,
                       cell=None, pbc=None, rdf_reference=None,
                       bond_threshold: float = FU_BOND_DEVIATION_A,
                       temperature_range=FU_TEMPERATURE_RANGE_K,
                       rdf_threshold: float = FU_RDF_THRESHOLD,
                       rdf_window_ps: float = FU_RDF_WINDOW_PS) -> dict:
    """Fu et al.'s stability criteria over the recorded frames, each vectorised over the
    trajectory; the first one to fire and its time.

    * bond: max over the bonds ``pairs`` of |b_ij(t) - b_ij^ref| > ``bond_threshold``
      (0.5 A), ``reference_lengths`` (B,) the reference lengths;
    * temperature: KE / (1.5 N k_B) outside ``temperature_range`` ([0.1, 1e5] K), their
      runs' early stop, checked after each step (frames 1 on);
    * rdf (only with ``rdf_reference``, the reference g(r) on :data:`FU_RDF_BINS`, for
      periodic cells): the g(r) of a ``rdf_window_ps`` window of frames starting at
      frame i = 1, 2, ... against the reference, mean |g - g_ref| times 6 A above
      ``rdf_threshold``; the failure time is the window's start.

    Returns ``fu_failure_criterion`` (``"bond"``, ``"temperature"``, ``"rdf"`` or None),
    ``fu_failure`` (a sentence), ``fu_time_to_failure_ps`` (None if none fired),
    ``fu_stable_time_ps`` (that time, or the recorded duration if none fired: Fu et
    al.'s stability figure) and ``fu_max_bond_deviation_A`` (over the frames up to the
    failure, or all)."""
    t = np.asarray(time_ps, dtype=float)
    pos = np.asarray(positions, dtype=float)
    n = pos.shape[1] if pos.ndim == 3 else 0
    first: dict[str, tuple[int, str]] = {}
    deviation = None
    if len(pairs) and len(pos):
        dev = np.abs(bond_lengths(pos, pairs, cell, pbc) - np.asarray(reference_lengths))
        worst = dev.max(axis=1)  # (F,)
        hit = np.flatnonzero(worst > bond_threshold)
        if hit.size:
            f = int(hit[0])
            b = int(dev[f].argmax())
            i, j = (int(x) for x in pairs[b])
            first["bond"] = (f, f"bond {i}-{j} deviates {dev[f, b]:.2f} A from its reference "
                                f"length (> {bond_threshold} A)")
        deviation = worst
    ke = np.asarray(kinetic_energy_eV, dtype=float)
    if len(ke) > 1 and n:
        temp = ke / (1.5 * n * units.kB)
        lo, hi = temperature_range
        out = np.flatnonzero(~((temp[1:] >= lo) & (temp[1:] <= hi))) + 1
        if out.size:
            f = int(out[0])
            first["temperature"] = (f, f"temperature {temp[f]:.3g} K outside [{lo}, {hi:g}] K")
    if rdf_reference is not None and pbc is not None and np.any(pbc) and len(t) > 1:
        step = float(np.median(np.diff(t)))
        w = max(1, int(round(rdf_window_ps / step)))
        starts = np.arange(1, len(t) - w)
        if starts.size:
            h = rdf_histograms(pos, cell, pbc)
            csum = np.concatenate([np.zeros((1, h.shape[1])), np.cumsum(h, 0)])
            windows = csum[starts + w] - csum[starts]  # (W, bins), frames i .. i + w - 1
            g = fu_rdf(windows, w, n, abs(float(np.linalg.det(np.asarray(cell)))))
            err = np.abs(g - np.asarray(rdf_reference)).mean(1) * float(FU_RDF_BINS[-1])
            hit = np.flatnonzero(err > rdf_threshold)
            if hit.size:
                f = int(starts[hit[0]])
                first["rdf"] = (f, f"RDF error {err[hit[0]]:.2f} over the {rdf_window_ps} ps "
                                   f"window from {t[f]:.3g} ps (> {rdf_threshold})")
    if first:
        criterion, (frame, text) = min(first.items(), key=lambda kv: kv[1][0])
        failed_at = float(t[frame])
    else:
        criterion, text, frame, failed_at = None, None, len(t) - 1, None
    return {"fu_failure_criterion": criterion, "fu_failure": text,
            "fu_time_to_failure_ps": failed_at,
            "fu_stable_time_ps": failed_at if criterion else (float(t[-1]) if len(t) else None),
            "fu_max_bond_deviation_A": (float(deviation[:frame + 1].max())
                                        if deviation is not None and len(deviation) else None)}


def community_metrics(run: MDRun, reference: MDRun | None = None) -> dict:
    """MLIPAudit's drift ratio and score, mlip-arena's completed fraction and COM drift
    and Fu et al.'s time to failure of one run (see the module docstring); Fu et al.'s
    bond reference lengths are the mean over ``reference``'s frames when it is given
    (their reference trajectory), else the initial structure's, and their RDF criterion
    needs a periodic cell and ``reference``."""
    t = np.asarray(run.time_ps, dtype=float)
    e = np.asarray(run.total_energy, dtype=float)
    finite = np.isfinite(e)
    out = mlipaudit_drift_ratio(t, e, run.kinetic_energy or np.full(len(t), np.nan),
                                run.drift_mask())
    out["mlipaudit_score"] = mlipaudit_score(out["mlipaudit_drift_ratio"],
                                             failed=run.failure is not None or not finite.all())
    last = np.flatnonzero(finite)
    final_step = round(float(t[last[-1]]) * 1000.0 / run.timestep_fs) if last.size else 0
    out["mlip_arena_completed_fraction"] = final_step / run.target_steps
    out.update(com_drift(run.center_of_mass, finite[:len(run.center_of_mass)]))
    if not run.positions or not run.numbers:
        return out
    pos = np.asarray(run.positions)
    cell, pbc = np.asarray(run.cell), np.asarray(run.pbc, bool)
    pairs = bonds(ase.Atoms(numbers=run.numbers, positions=pos[0], cell=cell, pbc=pbc))
    ref_pos = np.asarray(reference.positions) if reference is not None and reference.positions \
        else None
    lengths = bond_lengths((ref_pos if ref_pos is not None else pos[:1]), pairs, cell, pbc).mean(0)
    rdf_ref = None
    if ref_pos is not None and pbc.any():
        rdf_ref = fu_rdf(rdf_histograms(ref_pos, cell, pbc).sum(0), len(ref_pos), run.n_atoms,
                         abs(float(np.linalg.det(cell))))
    out.update(fu_time_to_failure(t, pos, run.kinetic_energy, pairs, lengths, cell, pbc,
                                  rdf_reference=rdf_ref))
    out["fu_bond_reference"] = "reference run mean" if ref_pos is not None else "initial structure"
    out["fu_n_bonds"] = int(len(pairs))
    return out


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
    run = MDRun(name, len(atoms), steps, timestep_fs, numbers=atoms.numbers.tolist(),
                cell=atoms.cell.array.tolist(), pbc=atoms.get_pbc().tolist())
    nn0 = nearest_neighbor_distances(atoms).max()
    t0 = temperature_K if temperature_K > 0 else 300.0
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    rdf_sum, rdf_count = None, 0
    start, cpu_start = time.perf_counter(), time.process_time()

    def record() -> None:
        nonlocal rdf_sum, rdf_count
        epot = atoms.get_potential_energy()
        outer = getattr(atoms.calc, "results", {}).get("mts_correction")
        if outer is not None:
            run.outer_step.append(bool(outer))
        run.time_ps.append(dyn.nsteps * timestep_fs / 1000.0)
        ekin = atoms.get_kinetic_energy()
        run.total_energy.append(float(epot + ekin))
        run.kinetic_energy.append(float(ekin))
        run.temperature.append(float(atoms.get_temperature()))
        com = atoms.get_center_of_mass()
        run.center_of_mass.append(com.tolist())
        run.positions.append(atoms.positions.copy())
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
                # metatomic-ase computes a stress with every force call, which divides
                # by the zero volume of an isolated cluster; MD never reads it
                with np.errstate(invalid="ignore", divide="ignore"):
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
    run.cpu_seconds = time.process_time() - cpu_start
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
        row = run.summary(ref)
        if ref is not None:
            row["rdf_rms_difference"] = float(np.sqrt(np.mean(
                (np.asarray(run.rdf) - np.asarray(ref.rdf)) ** 2)))
        table[name] = row
    if ref is not None:
        table["reference"] = ref.summary(ref)
    return {"kind": "md", "domain": "atoms",
            "structure": atoms.get_chemical_formula(), "n_atoms": len(atoms),
            "periodic": bool(atoms.get_pbc().any()), "steps": steps, "timestep_fs": timestep_fs,
            "temperature_K": temperature_K, "seed": seed, "table": table,
            "runs": {name: run.as_dict()
                     for name, run in {**runs, **({"reference": ref} if ref else {})}.items()}}


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
    from .rigid import RigidBodyProjectedCalculator
    from .symmetrize import SymmetrizedCalculator

    made: dict[str, Callable[[], BaseCalculator]] = {
        "raw": lambda: model_calc,
        "symmetrized": lambda: SymmetrizedCalculator(model_calc, degree=degree),
        "rotated": lambda: SymmetrizedCalculator(model_calc, degree=degree, mode="rotated",
                                                 seed=seed),
        "random": lambda: SymmetrizedCalculator(model_calc, mode="random", seed=seed),
        "mts": lambda: SymmetrizedCalculator(model_calc, degree=degree, mode="mts",
                                             interval=interval),
        "projected": lambda: RigidBodyProjectedCalculator(model_calc),
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
    from .calculator import CalculatorModel
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


@dataclass(frozen=True)
class MDComparison:
    """One ``symplug md atoms`` comparison: NVE of ``model`` (a model spec) and its
    ``variants`` on ``structure`` (a shipped name or a file), ``steps`` of
    ``timestep_fs`` fs from ``temperature_K`` K; ``degree`` is the band whose mean the
    symmetrised variants average exactly, ``interval`` the MTS interval in steps,
    ``reference`` a model spec for the RDF comparison, ``out`` the folder of the figure,
    ``trusted``: both model specs may run code when loaded (``--trust-model``)."""

    model: str
    structure: str
    steps: int = 500
    timestep_fs: float = 2.0
    temperature_K: float = 600.0
    degree: int = 2
    variants: tuple[str, ...] = ("raw", "symmetrized", "random", "mts")
    interval: int = 4
    reference: str | None = None
    seed: int = 0
    out: str | None = None
    progress: bool = True
    trusted: bool = False

    def check(self) -> None:
        """Refuse settings outside their ranges before anything runs (one line naming
        the setting): steps, interval, degree >= 1; 0 < timestep_fs <=
        :data:`MAX_TIMESTEP_FS`; temperature_K finite and >= 0; variants known, not empty."""
        names = [str(n).strip() for n in self.variants]
        unknown = [n for n in names if n not in VARIANTS]
        if not names or unknown:
            raise SymplugError(f"unknown MD variant {unknown[0] if unknown else ''!r}; choose "
                               f"from {', '.join(VARIANTS)}")
        for key in ("steps", "interval", "degree"):
            if int(getattr(self, key)) < 1:
                raise SymplugError(f"MD {key} must be >= 1, got {getattr(self, key)}")
        dt, temperature = float(self.timestep_fs), float(self.temperature_K)
        if not (math.isfinite(dt) and 0 < dt <= MAX_TIMESTEP_FS):
            raise SymplugError(f"MD timestep must be in (0, {MAX_TIMESTEP_FS:g}] fs, got {dt:g}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise SymplugError(f"MD temperature must be finite and >= 0 K, got {temperature:g}")


def run_md(run: MDComparison) -> dict:
    """``symplug md atoms``: compare the variants, write the figure, return the result."""
    from .models import load_model

    run.check()
    atoms = structure_named(run.structure)
    calc = as_calculator(load_model(run.model, trusted=run.trusted))
    calcs = variants(calc, list(run.variants), run.degree, run.interval, run.seed)
    reference = (as_calculator(load_model(run.reference, trusted=run.trusted))
                 if run.reference else None)
    result = compare(atoms, calcs, run.steps, run.timestep_fs, run.temperature_K, run.seed,
                     reference, progress=run.progress)
    result["model"] = run.model
    result["degree"] = run.degree
    if run.out:
        result["figure"] = str(plot(result, Path(run.out) / "md.png"))
    return result

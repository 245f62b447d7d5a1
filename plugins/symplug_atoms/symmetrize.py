"""An ASE calculator averaged over a group quadrature (inference symmetrisation).

    E = sum_q w_q E(g_q x),  F_i = sum_q w_q g_q^T F_i(g_q x),  S = sum_q w_q g_q^T S(g_q x) g_q

The default grid is the smallest positive-weight rule whose mean is exact for
responses of band ``degree`` L (``symplug.quadrature(group, L, purpose="mean")``: the
rotation groups D2, T, O, I times {E, I} for L = 1, 2, 3, 4-5, a Lebedev x (L + 1) rule
beyond). The averaged model is exactly invariant/equivariant up to that band, and the
forces are those of the averaged energy. The weighted orientational standard
deviations are stored as ``energy_rot_std`` (eV), ``forces_rot_std`` (N, 3, eV/A) and
``stress_rot_std`` (3, 3, eV/A^3), as metatomic-ase names them: a per-call estimate of
the symmetry breaking, exact for responses of band ``rot_std_band`` (half the grid's
exact band; stored in ``results`` too).

Modes for MD:

* ``"average"``: the full quadrature on every call;
* ``"rotated"``: the full quadrature turned by a fresh Haar-random rotation on every
  call (seeded): exact to band L on every step, and unbiased on average beyond it, so
  the residual breaking of a fixed grid does not act as a fixed lab-frame field;
* ``"random"``: one Haar-random group element per call (seeded): unbiased on
  average, cheap, no rot_std;
* ``"mts"``: impulse multiple time stepping (r-RESPA / Verlet-I, as i-PI applies it to
  the symmetrisation correction): the slow force Delta F = F_avg - F_raw is applied only
  on every ``interval``-th new configuration, scaled by k = ``interval``, and not at all
  in between, so only one evaluation in k pays for the grid:

      forces = F_raw(x) + k Delta F(x)   on the configurations 0, k, 2k, ... ("correction calls")
      forces = F_raw(x)                  otherwise

  (stress likewise, as the virial of those forces). Under velocity Verlet with time step
  dt, the configuration x_{mk} receives two half kicks (end of step mk - 1, start of step
  mk) of k dt/2 Delta F(x_{mk}): exactly the outer kicks of r-RESPA with outer step
  k dt around k inner velocity-Verlet steps under the raw model. The integrator is
  symplectic and time-reversible; at the outer steps (x_{mk}, p_{mk}) are the r-RESPA
  states, and K + E_avg is conserved there (bounded fluctuations, no drift), provided
  the raw forces are the gradient of the raw energy. In between, nothing is conserved
  and the reported energy is an estimate.

  Energy: on correction calls E_avg(x), exactly. In between, E_raw(x) + Delta E(x0) -
  Delta F(x0) . (x - x0), where x0 is the last correction call's configuration (a
  first-order Taylor estimate of E_avg(x): Delta F = -grad Delta E; minimum-image
  displacements in periodic directions; if the cell or the atoms changed, the zero-order
  E_raw(x) + Delta E(x0)). ``results["mts_correction"]`` says whether the call was a
  correction call and ``results["mts_step"]`` is the configuration's index in the
  cycle count, so that MD analysis can use the outer steps only.

  Only calls with a new configuration (positions, cell, numbers, pbc) advance the count;
  a repeated evaluation of the last configuration (ASE asking again, a direct
  ``calculate`` on the same atoms) returns the same results. ``reset()`` restarts the
  cycle: the next configuration is a correction call. With ``interval=1`` every call is
  a correction call and the results equal ``"average"`` exactly.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes
from ase.geometry import find_mic
from ase.stress import full_3x3_to_voigt_6_stress

import symplug
from symplug import SymplugError, memory
from symplug.groups import O3, SO3

from .action import check_frame, transform
from .calculator import ase_results, supported_properties
from .torch_model import TorchAtomsCalculator, evaluate_copies

MODES = ("average", "rotated", "random", "mts")


class SymmetrizedCalculator(Calculator):
    """``calc`` averaged over an O(3) (``inversion=True``) or SO(3) quadrature whose mean
    is exact to band ``degree`` (the smallest rule of ``kind``, default ``"auto"``).

    ``grid`` (a :class:`symplug.Grid`) replaces the quadrature, e.g. to match another
    tool's rotations. Copies are evaluated in chunks, in one batch on one neighbour graph
    when ``calc`` is a :class:`~symplug_atoms.torch_model.TorchAtomsCalculator` and in
    one ``compute_energy(list)`` call per chunk for metatomic calculators, one by one
    through ``calc`` otherwise. A chunk holds at most ``chunk_size`` copies and as many
    as the memory budget leaves room for (:func:`symplug.memory.chunks`, measured on the
    first call: a large structure runs in smaller chunks, not out of memory).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, calc: BaseCalculator, degree: int = 2, inversion: bool = True,
                 mode: str = "average", interval: int = 4, seed: int = 0,
                 kind: str = "auto", chunk_size: int = 8, grid=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(calc, BaseCalculator):
            raise SymplugError(f"expected an ASE calculator to symmetrise, got {type(calc).__name__}")
        if mode not in MODES:
            raise SymplugError(f"unknown symmetrisation mode {mode!r}; expected one of {MODES}")
        if int(interval) < 1:
            raise SymplugError(f"interval must be >= 1, got {interval}")
        self.calc, self.mode, self.interval = calc, mode, int(interval)
        self.chunk_size = int(chunk_size)
        self.group = O3() if inversion else SO3()
        self.grid = grid if grid is not None else symplug.quadrature(self.group, degree, kind=kind,
                                                                     purpose="mean")
        if mode == "rotated" and self.grid.monte_carlo:
            raise SymplugError("mode='rotated' turns a fixed rule; a Monte Carlo grid has "
                               "none (use mode='random', or an exact rule)")
        self.rot_std_band = self.grid.moment_degree
        self.rng = np.random.default_rng(seed)
        self.calls = 0  # calculate() calls, every mode
        self.mts_step = 0  # mts: index of the next new configuration in the cycle
        self._mts_last: tuple | None = None  # (configuration, results) of the last one
        self._mts_anchor: tuple | None = None  # (configuration, Delta) of the last correction
        self.implemented_properties = [p for p in self.implemented_properties
                                       if p == "free_energy" or p in supported_properties(calc)]

    def _properties(self, atoms) -> list[str]:
        props = ["energy", "forces"]
        if atoms.get_pbc().all() and "stress" in supported_properties(self.calc):
            props.append("stress")
        return props

    def _copies(self, atoms, matrices: np.ndarray) -> dict[str, np.ndarray]:
        """ASE-unit results of the copies g x, batched for torch and metatomic models (in
        chunks of at most ``chunk_size`` copies, under the memory budget), copy by copy
        for other calculators."""
        props = self._properties(atoms)
        if isinstance(self.calc, TorchAtomsCalculator):
            def evaluate(chunk):
                return evaluate_copies(self.calc.model, atoms, chunk)
        elif hasattr(self.calc, "compute_energy"):  # metatomic: one batched call per chunk
            def evaluate(chunk):
                part = self.calc.compute_energy([transform(atoms, g) for g in chunk], True)
                return {p: np.asarray(part[p], dtype=np.float64).reshape(
                    len(chunk), *np.shape(part[p])[1:]) for p in props}
        else:
            results = [ase_results(self.calc, transform(atoms, g), props) for g in matrices]
            return {p: np.stack([np.asarray(r[p]) for r in results]) for p in props}
        parts = [evaluate(matrices[index]) for index in
                 memory.chunks(len(matrices), self.chunk_size, "rotated copies")]
        return {p: np.concatenate([part[p] for part in parts]) for p in props}

    def _average(self, atoms, matrices: np.ndarray, weights: np.ndarray, std: bool) -> dict:
        res = self._copies(atoms, matrices)
        rows = {"energy": res["energy"],
                "forces": res["forces"] @ matrices}  # rows F_i g = (g^T F_i)^T
        if "stress" in res:
            rows["stress"] = np.swapaxes(matrices, 1, 2) @ res["stress"] @ matrices
        out = {}
        for p, x in rows.items():
            w = weights.reshape((-1,) + (1,) * (x.ndim - 1))
            mean = (w * x).sum(0)
            out[p] = mean
            if std:
                out[f"{p}_rot_std"] = np.sqrt(np.clip((w * (x - mean) ** 2).sum(0), 0.0, None))
        return out

    def _grid_average(self, atoms, grid=None) -> dict:
        grid = self.grid if grid is None else grid
        return self._average(atoms, grid.matrices.numpy(), grid.weights.numpy(), True)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        check_frame(self.atoms, "SymmetrizedCalculator input")
        if self.mode == "average":
            out = self._grid_average(self.atoms)
        elif self.mode == "rotated":
            out = self._grid_average(self.atoms, self.grid.rotated(int(self.rng.integers(2 ** 63))))
        elif self.mode == "random":
            g = self.group.haar(1, seed=int(self.rng.integers(2 ** 63))).numpy()
            out = self._average(self.atoms, g, np.ones(1), False)
        else:
            out = self._mts(self.atoms)
        self.calls += 1
        self.results["energy"] = self.results["free_energy"] = float(out["energy"])
        self.results["forces"] = out["forces"]
        if "stress" in out:  # Voigt form as ASE makes it: off-diagonal pairs averaged
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"])
        for key in ("energy_rot_std", "forces_rot_std", "stress_rot_std"):
            if key in out:
                self.results[key] = out[key] if out[key].ndim else float(out[key])
                self.results["rot_std_band"] = self.rot_std_band
        if self.mode == "mts":
            self.results["mts_correction"] = bool(out["mts_correction"])
            self.results["mts_step"] = int(out["mts_step"])

    def reset(self):
        """Clear the results; in ``"mts"`` mode also restart the cycle (the next new
        configuration is a correction call)."""
        super().reset()
        self.mts_step, self._mts_last, self._mts_anchor = 0, None, None

    def _mts(self, atoms) -> dict:
        """Impulse MTS: F_raw + k Delta F on every k-th new configuration, F_raw otherwise."""
        config = _configuration(atoms)
        if self._mts_last is not None and _same(config, self._mts_last[0]):
            # the same configuration again: the same results, not a new step
            return {p: v.copy() if isinstance(v, np.ndarray) else v
                    for p, v in self._mts_last[1].items()}
        k = self.interval
        raw = self._average(atoms, np.eye(3)[None], np.ones(1), False)
        out: dict = {"mts_step": self.mts_step,
                     "mts_correction": self.mts_step % k == 0}
        if out["mts_correction"]:
            full = self._grid_average(atoms)
            self._mts_anchor = (config, {p: full[p] - raw[p] for p in raw})
            out.update(full)  # energy and rot_std: those of the average
            for p in ("forces", "stress"):
                if p in raw:  # F_raw + k (F_avg - F_raw), exactly F_avg for k = 1
                    out[p] = k * full[p] - (k - 1) * raw[p]
        else:
            out.update(raw)
            out["energy"] = raw["energy"] + self._energy_correction(config)
        self.mts_step += 1
        self._mts_last = (config, out)
        return out

    def _energy_correction(self, config) -> float:
        """Estimate of Delta E(x) from the last correction call at x0: Delta E(x0) -
        Delta F(x0) . (x - x0) (minimum image in periodic directions), or Delta E(x0)
        where the cell, the atoms or the periodicity changed."""
        (positions0, cell0, numbers0, pbc0), delta = self._mts_anchor
        positions, cell, numbers, pbc = config
        if not (np.array_equal(cell, cell0) and np.array_equal(numbers, numbers0)
                and np.array_equal(pbc, pbc0)):
            return float(delta["energy"])
        dx = positions - positions0
        if pbc.any():
            dx = find_mic(dx, cell, pbc)[0]
        return float(delta["energy"] - (delta["forces"] * dx).sum())

    def __repr__(self) -> str:
        return (f"SymmetrizedCalculator({type(self.calc).__name__}, {self.grid!r}, "
                f"mode={self.mode!r})")


def _configuration(atoms) -> tuple:
    return (atoms.get_positions(), atoms.cell.array.copy(), atoms.numbers.copy(),
            atoms.pbc.copy())


def _same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))

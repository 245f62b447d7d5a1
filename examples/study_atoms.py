"""Remedies for learned symmetry compared on an equal budget: the atoms reference model.

    python examples/study_atoms.py --out docs/study/atoms

Trains the point-edge transformer (:mod:`symplug_atoms.pet`) four times on the same
EMT Cu data (``symplug_atoms.data.generate(seed)``, the same 80/10/10 split), with
the same seed, optimiser (Adam + one-cycle), batch, epochs and random O(3)
augmentation (:func:`symplug_atoms.train.train`), varying only the model options:

* ``raw``: the shipped architecture (raw Cartesian r_ij input, conservative forces);
* ``sh1``, ``sh3``: band-limited spherical-harmonic edge embedding, l_max = 1, 3;
* ``pair``: the raw trunk with the direct pair-force head F_i = sum_j w_ij r_ij.

Then it evaluates each model, and the raw model under inference-time remedies
(full O(3) average at ``--sym-degree``, a random rotation per MD step, multiple
time stepping), and writes ``study.json`` (atomically) and ``study.md`` with:
test errors on randomly rotated test frames; A of energy and forces and the
invariant fraction of the hidden layers (``symplug_atoms.diagnose`` on the small
test frames, O(3) degree ``--degree``, with its convergence check); and NVE
stability of the 13-atom icosahedron (energy drift, time to failure, |L|), as in
``symplug md``. All runs use one torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.calculators.emt import EMT

import symplug
import symplug_atoms
from symplug_atoms import md
from symplug_atoms.action import transform
from symplug_atoms.data import generate
from symplug_atoms.models import CalculatorModel
from symplug_atoms.symmetrize import SymmetrizedCalculator
from symplug_atoms.torch_model import TorchAtomsCalculator, load_reference
from symplug_atoms.train import train
from study_common import write_study  # examples/ is the script's folder

VARIANTS = {"raw": {}, "sh1": {"sh_lmax": 1}, "sh3": {"sh_lmax": 3}, "pair": {"forces": "pair"}}
LAYERS = ["embedding", "layers.0", "layers.1"]


def rotated_errors(calc, frames, seed: int = 1) -> dict[str, float]:
    """MAE of energy (meV/atom) and forces (meV/A) of an ASE calculator on ``frames``,
    each rotated by its own Haar-random O(3) element (labels rotated with it)."""
    mats = symplug.haar("O3", len(frames), seed=seed).numpy()
    e_err, f_err = [], []
    for frame, g in zip(frames, mats):
        atoms = transform(frame, g)
        atoms.calc = calc
        e_err.append((atoms.get_potential_energy() - frame.get_potential_energy()) / len(frame))
        f_err.append((atoms.get_forces() - frame.get_forces() @ g.T).ravel())
    f = np.concatenate(f_err)
    return {"energy_mae_meV_per_atom": float(np.abs(e_err).mean() * 1000),
            "forces_mae_meV_per_A": float(np.abs(f).mean() * 1000)}


def diagnosis(model, frames, degree: int, layers, check_convergence: bool = True) -> dict:
    """A of energy and forces and the layers' invariant fractions (raw, centred)."""
    res = symplug_atoms.diagnose(model, frames, outputs=["energy", "forces"], layers=layers,
                                 degree=degree, progress=False,
                                 check_convergence=check_convergence)
    out = {"A_energy_meV_per_atom": res["outputs"]["energy"]["equivariance_rmse"],
           "A_forces_meV_per_A": res["outputs"]["forces"]["equivariance_rmse"],
           "layers": {name: {"invariant_fraction": v["invariant_fraction"],
                             "invariant_fraction_centered": v["invariant_fraction_centered"],
                             "truncation": v["truncation"]}
                      for name, v in res["layers"].items()},
           "grid": res["grid"]}
    if check_convergence:
        out["convergence"] = {k: res["convergence"][k] for k in ("finer_degree", "max_abs_change",
                                                                  "worst_quantity")}
    return out


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = ["| variant | E MAE (meV/atom) | F MAE (meV/A) | A(E) (meV/atom) | A(F) (meV/A) "
             "| inv. fraction embedding / layers.0 / layers.1 (centred) | NVE drift (meV/atom/ps) "
             "| completed (failure at, ps) | max &#124;L&#124; (amu A^2/fs) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(x, fmt="{:.3g}"):
        return "-" if x is None else fmt.format(x)

    for key, row in rows.items():
        name = "EMT (reference)" if key == "reference" else key
        acc, diag, mdr = row.get("accuracy", {}), row.get("diagnosis", {}), row.get("md", {})
        layers = diag.get("layers", {})
        inv = " / ".join(f(layers[n]["invariant_fraction_centered"], "{:.3f}") for n in LAYERS
                         if n in layers) or "-"
        fail = mdr.get("time_to_failure_ps")
        done = f(mdr.get("completed_fraction"), "{:.2f}") + (f" ({fail:.2f})" if fail else "")
        lines.append(f"| {name} | {f(acc.get('energy_mae_meV_per_atom'))} "
                     f"| {f(acc.get('forces_mae_meV_per_A'))} "
                     f"| {f(diag.get('A_energy_meV_per_atom'))} | {f(diag.get('A_forces_meV_per_A'))} "
                     f"| {inv} | {f(mdr.get('energy_drift_meV_per_atom_per_ps'))} | {done} "
                     f"| {f(mdr.get('angular_momentum_max'))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for study.json/.md/md.png")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--degree", type=int, default=2, help="O(3) grid of the diagnosis")
    parser.add_argument("--sym-degree", type=int, default=1, help="inference symmetrisation")
    parser.add_argument("--diag-frames", type=int, default=8,
                        help="test frames with <= 38 atoms diagnosed")
    parser.add_argument("--md-steps", type=int, default=500)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    frames = generate(seed=args.seed)
    budget = {"epochs": args.epochs, "seed": args.seed, "batch": 8, "lr": 2e-3, "d": 32,
              "layers": 2, "cutoff": 4.5, "optimizer": "Adam, one-cycle schedule",
              "augmentation": "Haar O(3) per structure and step", "threads": 1}
    rows: dict[str, dict] = {}
    models, calcs = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.only:
            t0 = time.perf_counter()
            payload = train(Path(work) / f"{name}.pt", args.epochs, args.seed, 8, 2e-3, 32, 2, 4.5,
                            frames=frames, threads=1, **VARIANTS[name])
            models[name] = load_reference(Path(work) / f"{name}.pt")
            rows[name] = {"options": VARIANTS[name], "train_seconds": time.perf_counter() - t0,
                          "test_errors_float32": payload["test_errors"]}
            print(json.dumps({name: rows[name]}), flush=True)
        test = symplug_atoms.read_frames(Path(work) / f"{next(iter(models))}_test.extxyz")
    small = [f for f in test if len(f) <= 38][:args.diag_frames]
    for name, model in models.items():
        t0 = time.perf_counter()
        calcs[name] = TorchAtomsCalculator(model)
        rows[name]["accuracy"] = rotated_errors(calcs[name], test)
        layers = LAYERS + (["force_head"] if name == "pair" else [])
        rows[name]["diagnosis"] = diagnosis(model, small, args.degree, layers)
        rows[name]["eval_seconds"] = time.perf_counter() - t0
        print(json.dumps({name: rows[name]}), flush=True)
    md_calcs = {name: calc for name, calc in calcs.items()}
    if "raw" in calcs:
        remedies = md.variants(calcs["raw"], ["symmetrized", "random", "mts"], args.sym_degree,
                               4, args.seed)
        labels = {"symmetrized": f"raw + average (O3, degree {args.sym_degree})",
                  "random": "raw + random rotation per step", "mts": "raw + MTS (every 4 steps)"}
        t0 = time.perf_counter()
        sym = remedies["symmetrized"]
        rows[labels["symmetrized"]] = {
            "accuracy": rotated_errors(sym, test),
            "diagnosis": diagnosis(CalculatorModel(SymmetrizedCalculator(
                calcs["raw"], degree=args.sym_degree)), small[:4], args.degree, [],
                check_convergence=False),
            "eval_seconds": time.perf_counter() - t0}
        rows[labels["random"]], rows[labels["mts"]] = {}, {}
        md_calcs.update({labels[k]: c for k, c in remedies.items()})
    t0 = time.perf_counter()
    dyn = md.compare(md.structure_named("ico13"), md_calcs, args.md_steps, 2.0, 600.0, args.seed,
                     reference=EMT(), progress=False)
    for name, summary in dyn["table"].items():
        rows.setdefault(name, {})["md"] = summary
    result = {"study": "atoms", "budget": budget, "n_structures": len(frames),
              "n_test": len(test), "diagnosed_frames": [len(f) for f in small],
              "diagnosis_grid": {"group": "O3", "degree": args.degree},
              "symmetrized_diagnosis_note": "first 4 diagnosed frames, no convergence check",
              "md": {k: dyn[k] for k in ("structure", "steps", "timestep_fs", "temperature_K",
                                         "seed")},
              "md_seconds": time.perf_counter() - t0,
              "rows": rows, "seconds": time.perf_counter() - start,
              "command": "python examples/study_atoms.py " + " ".join(argv or [])}
    md.plot(dyn, args.out / "md.png")
    write_study(result, markdown(result), args.out)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A full-size metatrain PET, trained for a few epochs and diagnosed as-is.

    python examples/study_metatrain_pet.py --out /tmp/metatrain_pet

Needs the ``metatrain`` extra (``pip install 'symplug[metatrain]'``). Generates the
EMT Cu data (``symplug_atoms.data.generate(seed)``) and splits it exactly as the
shipped pet-cu was split (:func:`symplug_atoms.train.train`: 80/10/10 by
``default_rng(seed).permutation``; with seed 0 the test frames are those of
``pet_cu_test.extxyz``, checked), writes an ``options.yaml`` with metatrain PET's
default architecture (only ``name: pet``; its default cutoff, 4.5 A, is the data's)
and a few epochs, and trains it with ``mtt train`` in a subprocess. Then:

* parameter count and test errors of the exported model (``pet.pt``, float32, through
  metatomic-ase) on the test frames, each randomly rotated as for pet-cu, and as given;
* A of energy, forces and (periodic cells) stress through the exported metatomic model
  (``symplug_atoms.load_model("pet.pt")``), O(3) degree ``--degree``, with the
  convergence check at ``--finer-degree``, on a few small test clusters and cells;
* the invariant fraction of hidden layers through the checkpoint
  (``symplug_atoms.load_model("pet.ckpt", trusted=True)``, float64) on the same frames.

Writes ``study.json`` (atomically) and ``study.md`` to ``--out``. Resumable: a finished
training (``training.json`` next to ``pet.pt`` / ``pet.ckpt`` in ``--out``) is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np

import symplug
import symplug_atoms
from symplug.result import write_bytes, write_json
from symplug_atoms.action import transform
from symplug_atoms.data import generate, write
from symplug_atoms.train import split
from study_common import write_study  # examples/ is the script's folder

SHIPPED_TEST = Path(symplug_atoms.__file__).parent / "data" / "pet_cu_test.extxyz"
LAYERS = ["backend.gnn_layers.0.edge_embedder", "backend.gnn_layers.0", "backend.gnn_layers.1",
          "backend.node_heads.energy.0", "backend.edge_heads.energy.0"]
TARGETS = "    energy: {key: energy, unit: eV, forces: {key: forces}}\n"


def options(epochs: int, batch: int, lr: float, seed: int) -> str:
    """``mtt train`` options: PET's default architecture, a short training."""
    sets = {name: (f"  systems: {{read_from: data/{name}.extxyz, length_unit: angstrom}}\n"
                   f"  targets:\n{TARGETS}")
            for name in ("train", "val", "test")}
    return (f"seed: {seed}\n"
            "architecture:\n"
            "  name: pet  # default model hyper-parameters (cutoff 4.5 A, d_pet 128, ...)\n"
            f"  training: {{num_epochs: {epochs}, batch_size: {batch}, learning_rate: {lr},\n"
            "             log_interval: 1, checkpoint_interval: 1000}\n"
            f"training_set:\n{sets['train']}validation_set:\n{sets['val']}test_set:\n{sets['test']}")


def same_frames(a, b) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and np.allclose(x.positions, y.positions)
                                    for x, y in zip(a, b))


def train(out: Path, epochs: int, batch: int, lr: float, seed: int) -> dict:
    """Run ``mtt train`` in ``out`` (log in ``train.log``) unless it finished before."""
    done = out / "training.json"
    if done.exists() and (out / "pet.pt").exists() and (out / "pet.ckpt").exists():
        info = json.loads(done.read_text())
        print(f"reusing the trained model in {out} ({info['seconds']:.0f} s)", flush=True)
        return {**info, "reused": True}
    write_bytes(options(epochs, batch, lr, seed).encode(), out / "options.yaml")
    mtt = Path(sys.executable).parent / "mtt"
    t0 = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.run([str(mtt), "train", "options.yaml", "-o", "pet.pt"], cwd=out,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"mtt train failed (exit {proc.returncode}); see {out / 'train.log'}")
    info = {"seconds": time.perf_counter() - t0, "epochs": epochs, "batch_size": batch,
            "learning_rate": lr, "seed": seed, "threads": os.cpu_count(),
            "command": "mtt train options.yaml -o pet.pt"}
    write_json(info, done)
    return info


def test_errors(path: Path, frames, rotate: bool, seed: int = 1) -> dict[str, float]:
    """MAE / RMSE of energy (meV/atom) and forces (meV/A) of the exported model, each
    frame rotated by its own Haar O(3) element (seed 1, as pet-cu's test errors) or not."""
    from metatomic_ase import MetatomicCalculator

    calc = MetatomicCalculator(str(path))
    mats = symplug.haar("O3", len(frames), seed=seed).numpy()
    e_err, f_err = [], []
    for frame, g in zip(frames, mats):
        g = g if rotate else np.eye(3)
        atoms = transform(frame, g)
        atoms.calc = calc
        e_err.append((atoms.get_potential_energy() - frame.get_potential_energy()) / len(frame))
        f_err.append((atoms.get_forces() - frame.get_forces() @ g.T).ravel())
    e, f = np.asarray(e_err) * 1000, np.concatenate(f_err) * 1000
    return {"energy_mae_meV_per_atom": float(np.abs(e).mean()),
            "energy_rmse_meV_per_atom": float(np.sqrt((e ** 2).mean())),
            "forces_mae_meV_per_A": float(np.abs(f).mean()),
            "forces_rmse_meV_per_A": float(np.sqrt((f ** 2).mean()))}


def outputs_of(res: dict) -> dict:
    return {name: {"A": v["equivariance_rmse"], "relative": v["relative_error"],
                   "units": v["units"], "n_samples": v["n_samples"]}
            for name, v in res["outputs"].items()}


def convergence_of(res: dict) -> dict:
    return {k: res["convergence"].get(k) for k in ("finer_degree", "max_abs_change",
                                                   "worst_quantity")}


def markdown(result: dict) -> str:
    tr, acc = result["training"], result["test_errors"]
    lines = [f"metatrain PET (default architecture, {result['n_parameters']:,} parameters), "
             f"{tr['epochs']} epochs of `mtt train` (batch {tr['batch_size']}, learning rate "
             f"{tr['learning_rate']}) in {tr['seconds']:.0f} s; diagnosis "
             f"{result['diagnosis_seconds']:.0f} s (O(3), degree {result['degree']}).", "",
             "| test errors (28 frames) | energy MAE / RMSE (meV/atom) "
             "| forces MAE / RMSE (meV/A) |", "| --- | --- | --- |"]
    for key, label in (("rotated", "each randomly rotated"), ("as_given", "as given")):
        a = acc[key]
        lines.append(f"| {label} | {a['energy_mae_meV_per_atom']:.1f} / "
                     f"{a['energy_rmse_meV_per_atom']:.1f} | {a['forces_mae_meV_per_A']:.1f} / "
                     f"{a['forces_rmse_meV_per_A']:.1f} |")
    lines += ["", "| A (exported model) | frames | energy (meV/atom) | forces (meV/A) "
              "| stress (GPa) | convergence (finer degree: largest change, where) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for key, row in result["exported"].items():
        out = row["outputs"]

        def cell(name):
            return (f"{out[name]['A']:.3g} (rel. {out[name]['relative']:.2g})"
                    if name in out else "-")

        conv = row["convergence"]
        lines.append(f"| {key} | {row['atoms']} | {cell('energy')} | {cell('forces')} "
                     f"| {cell('stress')} | {conv['finer_degree']}: {conv['max_abs_change']:.3g}"
                     f" ({conv['worst_quantity']}) |")
    ck = result["checkpoint"]
    lines += ["", f"Checkpoint (float64) on all {len(ck['atoms'])} frames: A(energy) "
              f"{ck['outputs']['energy']['A']:.3g} meV/atom, A(forces) "
              f"{ck['outputs']['forces']['A']:.3g} meV/A.", "",
              "| layer | invariant fraction (raw) | (data-set centred) | truncation |",
              "| --- | --- | --- | --- |"]
    for name, v in ck["layers"].items():
        lines.append(f"| `{name}` | {v['invariant_fraction']:.3f} "
                     f"| {v['invariant_fraction_centered']:.3f} | {v['truncation']:.2g} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--degree", type=int, default=2, help="O(3) grid of the diagnosis")
    parser.add_argument("--finer-degree", type=int, default=3, help="convergence check grid")
    parser.add_argument("--clusters", type=int, default=2, help="test clusters diagnosed")
    parser.add_argument("--cells", type=int, default=2, help="periodic test cells diagnosed")
    parser.add_argument("--max-atoms", type=int, default=38)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data").mkdir(exist_ok=True)
    start = time.perf_counter()
    frames = generate(seed=args.seed, progress=False)
    train_set, val_set, test_set = ([frames[i] for i in idx]
                                    for idx in split(len(frames), args.seed))
    shipped = same_frames(test_set, ase.io.read(SHIPPED_TEST, ":"))
    for name, part in (("train", train_set), ("val", val_set), ("test", test_set)):
        write(part, args.out / "data" / f"{name}.extxyz")
    training = train(args.out, args.epochs, args.batch, args.lr, args.seed)
    print(json.dumps({"training": training}), flush=True)

    ckpt = symplug_atoms.load_model(str(args.out / "pet.ckpt"), trusted=True)
    n_params = sum(p.numel() for p in ckpt.module.parameters())
    accuracy = {"rotated": test_errors(args.out / "pet.pt", test_set, rotate=True),
                "as_given": test_errors(args.out / "pet.pt", test_set, rotate=False)}
    print(json.dumps({"n_parameters": n_params, "test_errors": accuracy}), flush=True)

    small = [f for f in test_set if len(f) <= args.max_atoms]
    groups = {"clusters": [f for f in small if not f.get_pbc().any()][:args.clusters],
              "periodic cells": [f for f in small if f.get_pbc().all()][:args.cells]}
    t0 = time.perf_counter()
    exported = symplug_atoms.load_model(str(args.out / "pet.pt"))
    rows = {}
    if not any(groups.values()):
        raise SystemExit(f"no test frame with <= {args.max_atoms} atoms to diagnose")
    for key, part in groups.items():  # stress only where every frame is periodic
        if not part:
            continue
        t_group = time.perf_counter()
        res = symplug_atoms.diagnose(exported, part, degree=args.degree,
                                     finer_degree=args.finer_degree, progress=False)
        rows[key] = {"atoms": [len(f) for f in part], "outputs": outputs_of(res),
                     "convergence": convergence_of(res), "grid": res["grid"],
                     "seconds": time.perf_counter() - t_group}
        print(json.dumps({key: rows[key]}), flush=True)
    t1 = time.perf_counter()
    both = groups["clusters"] + groups["periodic cells"]
    res = symplug_atoms.diagnose(ckpt, both, layers=LAYERS, degree=args.degree,
                                 progress=False, check_convergence=False)
    checkpoint = {"atoms": [len(f) for f in both], "outputs": outputs_of(res),
                  "layers": {name: {k: v[k] for k in ("invariant_fraction",
                                                     "invariant_fraction_centered",
                                                     "truncation", "spectrum")}
                             for name, v in res["layers"].items()},
                  "seconds": time.perf_counter() - t1}
    print(json.dumps({"checkpoint": checkpoint}), flush=True)
    result = {"study": "metatrain_pet", "architecture": "metatrain pet, default hypers",
              "n_parameters": n_params, "training": training,
              "n_structures": len(frames), "n_train": len(train_set), "n_val": len(val_set),
              "n_test": len(test_set), "test_set_is_pet_cu_test": shipped,
              "test_errors": accuracy, "group": "O3", "degree": args.degree,
              "exported": rows, "checkpoint": checkpoint,
              "diagnosis_seconds": time.perf_counter() - t0,
              "seconds": time.perf_counter() - start,
              "command": "python examples/study_metatrain_pet.py " + " ".join(argv or [])}
    write_study(result, markdown(result), args.out)


if __name__ == "__main__":
    main(sys.argv[1:])

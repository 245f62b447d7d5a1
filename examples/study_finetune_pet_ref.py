"""Augmented fine-tuning of pet-ref, with and without the equivariance penalty (issue 13,
item 4), judged by A, accuracy and MD.

    python examples/study_finetune_pet_ref.py --train /work/pet_ref/train.extxyz \\
        --out docs/study/finetune_pet_ref --seeds 0,1,2 --max-samples 160 --epochs 2

``--train``: labelled training frames, e.g. the training split that
``examples/train_reference_pet.py`` writes (``OUT/train.extxyz``). For every seed and arm
(``augmented``: random O(3) rotations of every batch; ``penalty``: the same plus the
equivariance penalty, weight ``--penalty``), ``symplug.training.finetune`` trains the
shipped ``pet_ref.ckpt`` (float32, Adam at ``--lr`` decaying to 0) on the first
``--max-samples`` frames (20 % of them, seeded, for validation), then measures the
fine-tuned model (and, once, pet-ref itself as ``raw``):

- A(energy) and A(forces) on the first 6 shipped test frames (O(3) degree 2, float64);
- its test MAE on the 50 shipped test frames, each randomly rotated (seed 1);
- 10 ps NVE (2 fs steps) of a Cu13 icosahedron from 600 K with the seed's velocities
  (the same as ``examples/study_md_remedies.py``'s runs), exported to metatomic and run
  in float32 through metatomic-ase, EMT the reference: final |L|, RMS net torque and
  energy drift.

Each run is written as it completes (``OUT/runs/<arm>_seed<s>.json``; the fine-tuning's
checkpoints in ``OUT/runs/<arm>_seed<s>/``, not shipped), so an interrupted study
resumes; ``OUT/study.json`` and ``OUT/study.md`` hold mean and standard deviation over
the seeds. ``--quick``: 8 training frames (one step), A on one and the MAE on 8 test
frames, 20 MD steps (a smoke test).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
import warnings
from pathlib import Path

import ase.io
import torch
from ase.calculators.emt import EMT

from symplug.plugins import get_domain
from symplug.result import write_bytes, write_json
from symplug.training import FinetuneConfig, finetune
from symplug.training.config import split_samples
from study_common import mean_std, pm
from symplug_atoms.domain import diagnose
from symplug_atoms.md import compare, structure_named
from symplug_atoms.metatrain_finetune import SystemItem, errors, training_task
from symplug_atoms.metatrain_model import MetatrainModel
from symplug_atoms.torch_model import SHIPPED_DIR

CHECKPOINT = SHIPPED_DIR / "pet_ref.ckpt"
TEST = SHIPPED_DIR / "pet_ref_test.extxyz"
ARMS = ("augmented", "penalty")


def measure(model: MetatrainModel, test: list, md_steps: int, seed: int,
            a_frames: int = 6) -> dict:
    """A on the first ``a_frames`` test frames, rotated test MAE, and one NVE run of Cu13."""
    module = model.module  # float32, as trained
    result = diagnose(model.with_module(copy.deepcopy(module)), test[:a_frames], degree=2,
                      group="O3", outputs=["energy", "forces"], check_convergence=False,
                      progress=False)
    items = [SystemItem.of(a, model.options, torch.float32, f"test frame {i}")
             for i, a in enumerate(test)]
    accuracy = errors(module, model.options, items)
    with warnings.catch_warnings():  # metatomic-ase's stress of a cluster is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        md = compare(structure_named("ico13"), {"model": model.with_module(
            module, torch.float32).calculator()}, steps=md_steps, timestep_fs=2.0,
            temperature_K=600.0, seed=seed, reference=EMT(), progress=False)["table"]["model"]
    return {"A": {n: o["equivariance_rmse"] for n, o in result["outputs"].items()},
            "units": {n: o["units"] for n, o in result["outputs"].items()},
            "test": accuracy,
            "md": {k: md[k] for k in ("angular_momentum_final", "torque_rms_eV",
                                      "energy_drift_meV_per_atom_per_ps", "seconds")}}


def run_one(arm: str, seed: int, frames: list, test: list, args, out: Path) -> dict:
    """Fine-tune (``raw``: none) and measure; from ``out/runs`` if done."""
    path = out / "runs" / f"{arm}_seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    model = MetatrainModel(CHECKPOINT, dtype=torch.float32, trusted=True)
    start = time.perf_counter()
    record = {"arm": arm, "seed": seed}
    if arm != "raw":
        config = FinetuneConfig(
            domain="atoms", model=str(CHECKPOINT), data=str(args.train), epochs=args.epochs,
            lr=args.lr, batch=args.batch, seed=seed, group="O3",
            penalty_equivariance=args.penalty if arm == "penalty" else 0.0,
            track_every=0, val_fraction=0.2)
        train, validation = split_samples(frames, config.val_fraction, config.seed)
        task = training_task(model, train)
        run = finetune(task, get_domain("atoms"), config, out / "runs" / f"{arm}_seed{seed}",
                       validation=validation, progress=False)
        record.update(history=run["history"], config=config.to_dict(),
                      training_seconds=time.perf_counter() - start)
    record.update(measure(model, test, args.md_steps, seed, 1 if args.quick else 6))
    write_json(record, path)
    return record


def table(records: list[dict]) -> tuple[list[dict], str]:
    """Mean and standard deviation over seeds per arm, |L| relative to raw's per seed."""
    raw_l = {r["seed"]: r["md"]["angular_momentum_final"] for r in records if r["arm"] == "raw"}
    rows = []
    for arm in ("raw", *ARMS):
        have = [r for r in records if r["arm"] == arm]
        if not have:
            continue

        ratio = [r["md"]["angular_momentum_final"] / raw_l[r["seed"]] for r in have
                 if raw_l.get(r["seed"])]
        rows.append({
            "arm": arm, "seeds": [r["seed"] for r in have],
            "A_energy_meV_per_atom": mean_std([r["A"]["energy"] for r in have]),
            "A_forces_meV_per_A": mean_std([r["A"]["forces"] for r in have]),
            "test_energy_mae_meV_per_atom": mean_std([r["test"]["energy_mae_meV_per_atom"]
                                                       for r in have]),
            "test_forces_mae_meV_per_A": mean_std([r["test"]["forces_mae_meV_per_A"]
                                                    for r in have]),
            "L_final": mean_std([r["md"]["angular_momentum_final"] for r in have]),
            "L_final_vs_raw": mean_std(ratio) if ratio else None,
            "torque_rms_eV": mean_std([r["md"]["torque_rms_eV"] for r in have]),
            "energy_drift_meV_per_atom_per_ps": mean_std(
                [r["md"]["energy_drift_meV_per_atom_per_ps"] for r in have]),
            "training_seconds": mean_std([r.get("training_seconds", 0.0) for r in have])})

    lines = ["| arm | seeds | A(energy) meV/atom | A(forces) meV/A | test energy MAE meV/atom "
             "| test force MAE meV/A | final \\|L\\| (amu A^2/fs) | vs raw | RMS torque (eV) "
             "| energy drift (meV/atom/ps) | fine-tuning (s) |", "|" + " --- |" * 11]
    for row in rows:
        lines.append(
            f"| {row['arm']} | {len(row['seeds'])} | {pm(row['A_energy_meV_per_atom'])} | "
            f"{pm(row['A_forces_meV_per_A'])} | {pm(row['test_energy_mae_meV_per_atom'])} | "
            f"{pm(row['test_forces_mae_meV_per_A'])} | {pm(row['L_final'])} | "
            f"{pm(row['L_final_vs_raw'])} | {pm(row['torque_rms_eV'])} | "
            f"{pm(row['energy_drift_meV_per_atom_per_ps'])} | "
            f"{pm(row['training_seconds'], '{:.0f}')} |")
    return rows, "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="labelled training frames")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-samples", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--penalty", type=float, default=1.0)
    parser.add_argument("--md-steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 frames, 20 MD steps, seed 0")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.max_samples, args.epochs, args.md_steps = "0", 8, 1, 20
    frames = ase.io.read(args.train, ":")[: args.max_samples]
    test = ase.io.read(TEST, ":")[: 8 if args.quick else None]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    records = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in ("raw", *ARMS):
            records.append(run_one(arm, seed, frames, test, args, args.out))
            print(f"{arm} seed {seed}: done", flush=True)
    rows, text = table(records)
    write_json({"kind": "finetune_pet_ref", "checkpoint": CHECKPOINT.name,
                "max_samples": args.max_samples, "epochs": args.epochs, "lr": args.lr,
                "batch": args.batch, "penalty": args.penalty, "md_steps": args.md_steps,
                "rows": rows}, args.out / "study.json")
    write_bytes(text.encode(), args.out / "study.md")
    for arm in ARMS:  # the fine-tunings' checkpoints are large and not shipped
        for folder in (args.out / "runs").glob(f"{arm}_seed*"):
            if folder.is_dir() and (args.out / "runs" / f"{folder.name}.json").exists():
                shutil.rmtree(folder)
    print(text)


if __name__ == "__main__":
    main()

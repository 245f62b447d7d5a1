"""A reference metatrain PET that has learned its task (Cu, EMT), end to end.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 \\
        python examples/train_reference_pet.py --out /work/pet_ref --epochs 56 \\
        --ship plugins/symplug_atoms/data

The shipped ``pet_ref`` (``plugins/symplug_atoms/data/pet_ref*``) was made with this
command, but its training ran in pieces (``training_runs`` in ``pet_ref_metrics.json``):
epochs 1-3 under a 50-epoch and 4-7 under a 40-epoch cosine schedule (both interrupted
to shorten the run on a loaded machine), resumed to 32 (``--epochs 32``; the decay
reaches 0 at epoch 32), then continued to 56, which restarts the decay (1.8e-4 at
epoch 33 to 0 at 56). One uninterrupted ``--epochs 56`` run has one cosine decay and will not give
the same weights. Test MAEs of the shipped model (epoch 51, the best by validation
error): energy 1.67 meV/atom, forces 11.9 meV/A as given; 2.00 meV/atom and 12.2 meV/A
with the frames randomly rotated.

``--no-augmentation`` trains the same model in metatrain's own loop with its random
O(3) augmentation replaced by the identity (metatrain has no option for it; see
``symplug_atoms.metatrain_variants``): the "without" arm of the learning curves
(docs/atoms.md, "Learning with and without augmentation"), run as

    python examples/train_reference_pet.py --out /work/pet_noaug32 --epochs 32 --no-augmentation

beside ``--out /work/pet_aug32 --epochs 32`` (the "with" arm on the same budget, one
uninterrupted cosine schedule).

``--sh-lmax L`` trains the same model with a minimal inductive bias, its edge embedding
band-limited to l <= L (``symplug_atoms.metatrain_variants``; L = 0: exactly
invariant), with metatrain's augmentation as usual: the model-side arms of the remedies
study (docs/atoms.md, "Minimal inductive biases at PET's accuracy"), run as

    python examples/train_reference_pet.py --out /work/pet_sh0_32 --epochs 32 --sh-lmax 0

(and ``--sh-lmax 2``), with the data and split of ``/work/pet_aug32`` copied in;
``--train-seed 1`` repeats an arm with another training seed on the same data and split.

Needs the ``metatrain`` extra (``pip install 'symplug[metatrain]'``). Stages, each
skipped when its output exists (so an interrupted run resumes):

1. data: ``symplug_atoms.data.generate_reference(seed)`` (EMT Cu, 500 frames) to
   ``--out/data.extxyz``;
2. split: 80/10/10 by ``default_rng(seed).permutation``
   (:func:`symplug_atoms.train.split`) to ``train.extxyz``, ``val.extxyz``,
   ``test.extxyz`` in ``--out``;
3. training: ``mtt train options.yaml -o pet_ref.pt`` in ``--out/run`` (log in
   ``run/train.log``), a 415 k-parameter PET (d_pet 64, d_node 128, d_head 64,
   d_feedforward 128, 4 heads, 1 attention layer, 2 GNN layers, cutoff 4.5 A), float32,
   batch 8, learning rate 5e-4 (cosine decay), metatrain's random rotation/inversion
   augmentation (on by default). metatrain writes a checkpoint every epoch
   (``checkpoint_interval: 1``, ``run/outputs/<date>/<time>/model_<epoch-1>.ckpt``);
   those after epochs ``KEEP`` (1-based: completed epochs) and the last one are moved to
   ``run/checkpoints_kept/epoch_<NNN>.ckpt`` while it trains, the others deleted. A
   larger ``--epochs`` than a finished training's continues it
   (``mtt train --restart``; the cosine schedule is stretched to the new length);
   an interrupted training continues from its last checkpoint;
4. evaluation of the exported model ``run/pet_ref.pt`` (metatrain exports the epoch of
   best validation error) through metatomic-ase on the test split, as given and with
   each frame acted on by its own Haar-random O(3) element (seed 1): energy MAE / RMSE
   (meV/atom) and force MAE / RMSE (meV/A), also per config; written atomically to
   ``--out/metrics.json``. ``--ship DIR`` copies ``pet_ref.ckpt``, ``pet_ref.pt``,
   ``pet_ref_test.extxyz``, ``pet_ref_options.yaml`` and ``pet_ref_metrics.json`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import ase.io
import numpy as np

import symplug
from symplug.result import write_bytes, write_json
from symplug_atoms.action import transform
from symplug_atoms.data import generate_reference, write
from symplug_atoms.train import split

KEEP = (1, 2, 3, 5, 8, 12, 20, 30, 40, 50, 65, 80, 100, 125, 150, 200)
MODEL = {"cutoff": 4.5, "d_pet": 64, "d_head": 64, "d_node": 128, "d_feedforward": 128,
         "num_heads": 4, "num_attention_layers": 1, "num_gnn_layers": 2}
TARGETS = "    energy: {key: energy, unit: eV, forces: {key: forces}}\n"
SETS = (("training_set", "train"), ("validation_set", "val"), ("test_set", "test"))


def options(epochs: int, batch: int, lr: float, seed: int) -> str:
    """``mtt train`` options (run in ``--out/run``, the data one folder up)."""
    model = ", ".join(f"{k}: {v}" for k, v in MODEL.items())
    text = (f"seed: {seed}\n"
            "architecture:\n"
            "  name: pet\n"
            f"  model: {{{model}}}\n"
            f"  training: {{num_epochs: {epochs}, batch_size: {batch}, learning_rate: {lr},\n"
            "             log_interval: 1, checkpoint_interval: 1, num_workers: 0}\n")
    for key, name in SETS:
        text += (f"{key}:\n  systems: {{read_from: ../{name}.extxyz, length_unit: angstrom}}\n"
                 f"  targets:\n{TARGETS}")
    return text


def epoch_checkpoints(run: Path) -> dict[int, Path]:
    """{completed epochs (1-based): file} of metatrain's per-epoch checkpoints."""
    found = {}
    for path in run.glob("outputs/*/*/model_*.ckpt"):
        match = re.fullmatch(r"model_(\d+)\.ckpt", path.name)
        if match:
            found[int(match.group(1)) + 1] = path
    return found


def prune(run: Path, final: bool = False) -> None:
    """Move the checkpoints of epochs in ``KEEP`` to ``run/checkpoints_kept``, delete the
    others; the newest one stays (it may be being written, or be needed to resume) unless
    ``final``, when it is kept too."""
    kept = run / "checkpoints_kept"
    kept.mkdir(exist_ok=True)
    found = epoch_checkpoints(run)
    if not found:
        return
    newest = max(found)
    for epoch, path in sorted(found.items()):
        if epoch == newest and not final:
            continue
        if epoch in KEEP or epoch == newest:
            os.replace(path, kept / f"epoch_{epoch:03d}.ckpt")
        else:
            path.unlink()


def last_checkpoint(run: Path) -> tuple[int, Path] | None:
    """The newest per-epoch checkpoint (running or kept), to resume from."""
    found = epoch_checkpoints(run)
    for path in (run / "checkpoints_kept").glob("epoch_*.ckpt"):
        found.setdefault(int(path.stem.split("_")[1]), path)
    return max(found.items()) if found else None


def logged_seconds(log: Path) -> float:
    """Seconds from the first to the last time stamp of an (interrupted) training log."""
    from datetime import datetime

    stamps = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
              for m in re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\]", log.read_text(),
                                  flags=re.M)]
    return (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0


def mtt_train(run: Path, extra: list[str], augment: bool = True,
              sh_lmax: int | None = None) -> float:
    """``mtt train`` in ``run`` (log appended to ``run/train.log``) while pruning the
    per-epoch checkpoints; returns the seconds it took. ``augment=False`` or an
    ``sh_lmax`` run it through ``python -m symplug_atoms.metatrain_variants``."""
    variant = (["--no-augmentation"] if not augment else []) + (
        [] if sh_lmax is None else ["--sh-lmax", str(sh_lmax)])
    mtt = ([sys.executable, "-m", "symplug_atoms.metatrain_variants", *variant] if variant
           else [str(Path(sys.executable).parent / "mtt")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [*mtt, "train", "options.yaml", "-o", "pet_ref.pt", *extra]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    stop = threading.Event()

    def pruner() -> None:
        while not stop.wait(20):
            prune(run)

    thread = threading.Thread(target=pruner, daemon=True)
    thread.start()
    with open(run / "train.log", "a") as log:
        proc = subprocess.run(cmd, cwd=run, stdout=log, stderr=subprocess.STDOUT, env=env)
    stop.set()
    thread.join()
    prune(run, final=proc.returncode == 0)
    if proc.returncode != 0:
        raise SystemExit(f"mtt train failed (exit {proc.returncode}); see {run / 'train.log'}")
    return time.perf_counter() - t0


def train(out: Path, epochs: int, batch: int, lr: float, seed: int,
          augment: bool = True, sh_lmax: int | None = None) -> dict:
    """Train (or continue) until ``epochs``; returns the training record."""
    run = out / "run"
    run.mkdir(exist_ok=True)
    done = run / "training.json"
    info = json.loads(done.read_text()) if done.exists() else None
    if info and info["epochs"] >= epochs and (run / "pet_ref.pt").exists():
        print(f"reusing the training in {run} ({info['epochs']} epochs, "
              f"{info['seconds']:.0f} s)", flush=True)
        return info
    write_bytes(options(epochs, batch, lr, seed).encode(), run / "options.yaml")
    runs = info["runs"] if info else []
    if info:  # finished with fewer epochs: continue from its final checkpoint
        start = run / f"pet_ref_epoch{info['epochs']}.ckpt"
        shutil.copy(run / "pet_ref.ckpt", start)
        extra, first = ["--restart", start.name], info["epochs"] + 1
    elif (last := last_checkpoint(run)) is not None:  # interrupted: resume
        extra, first = ["--restart", str(last[1].relative_to(run))], last[0] + 1
        runs.append({"epochs": [1, last[0]], "seconds": logged_seconds(run / "train.log"),
                     "command": "mtt train options.yaml -o pet_ref.pt (interrupted; "
                                "seconds from its log)"})
    else:
        extra, first = [], 1
    seconds = mtt_train(run, extra, augment, sh_lmax)
    runs.append({"epochs": [first, epochs], "seconds": seconds,
                 "command": "mtt train options.yaml -o pet_ref.pt " + " ".join(extra)})
    info = {"epochs": epochs, "seconds": sum(r["seconds"] for r in runs), "runs": runs,
            "batch_size": batch, "learning_rate": lr, "seed": seed, "threads": 1,
            "model": MODEL, "dtype": "float32",
            "augmentation": "metatrain default (random rotations and inversions of the "
            "training batches)" if augment else "none (metatrain's O3Augmenter "
            "replaced by the identity, symplug_atoms.metatrain_variants)",
            "edge_embedding": edge_embedding(sh_lmax)}
    write_json(info, done)
    return info


def edge_embedding(sh_lmax: int | None) -> str:
    """The edge embedding of the variant, in words."""
    if sh_lmax is None:
        return "metatrain's Linear([x, y, z, r])"
    return (f"band-limited, l <= {sh_lmax}: Linear(Y_l(r_hat) R_n(r)), "
            "symplug_atoms.metatrain_variants.BandLimitedEdgeEmbedder")


def errors(e: list, f: list) -> dict[str, float]:
    e, f = np.asarray(e) * 1000, np.concatenate(f) * 1000
    return {"energy_mae_meV_per_atom": float(np.abs(e).mean()),
            "energy_rmse_meV_per_atom": float(np.sqrt((e ** 2).mean())),
            "forces_mae_meV_per_A": float(np.abs(f).mean()),
            "forces_rmse_meV_per_A": float(np.sqrt((f ** 2).mean())), "n_frames": len(e)}


def test_errors(path: Path, frames, rotate: bool, seed: int = 1) -> dict:
    """Errors of the exported model on ``frames``, each acted on by its own Haar O(3)
    element (``rotate``) or as given; overall and per ``info["config"]`` (its name up
    to the first ``-``, so all bulk32 lattice scales are one group)."""
    from metatomic_ase import MetatomicCalculator

    # metatomic-ase also computes a (meaningless, NaN-laden) stress of the clusters
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="metatomic_ase")
    calc = MetatomicCalculator(str(path))
    mats = symplug.haar("O3", len(frames), seed=seed).numpy()
    groups: dict[str, tuple[list, list]] = {}
    e_all, f_all = [], []
    for frame, g in zip(frames, mats):
        g = g if rotate else np.eye(3)
        atoms = transform(frame, g)
        atoms.calc = calc
        de = (atoms.get_potential_energy() - frame.get_potential_energy()) / len(frame)
        df = (atoms.get_forces() - frame.get_forces() @ g.T).ravel()
        e_all.append(de)
        f_all.append(df)
        group = groups.setdefault(str(frame.info.get("config", "?")).split("-")[0], ([], []))
        group[0].append(de)
        group[1].append(df)
    return {**errors(e_all, f_all),
            "per_config": {k: errors(*v) for k, v in sorted(groups.items())}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data, the split and (unless --train-seed) the training")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="metatrain's seed (initial weights, batches, augmentation) alone: "
                             "another training on the same data and split")
    parser.add_argument("--no-augmentation", action="store_true",
                        help="train without metatrain's random O(3) augmentation "
                             "(the 'without' arm of the learning curves)")
    parser.add_argument("--sh-lmax", type=int, default=None,
                        help="band-limited edge embedding of this band (a minimal bias; 0: "
                             "exactly invariant), symplug_atoms.metatrain_variants")
    parser.add_argument("--ship", type=Path, default=None,
                        help="copy the deliverables (pet_ref_*) to this folder")
    args = parser.parse_args(argv)
    if args.sh_lmax is not None and args.sh_lmax < 0:
        parser.error(f"--sh-lmax must be >= 0, got {args.sh_lmax}")
    import torch

    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = out / "data.extxyz"
    if data.exists():
        frames = ase.io.read(data, ":")
    else:
        frames = generate_reference(seed=args.seed, progress=False)
        write(frames, out / "data.tmp.extxyz")
        os.replace(out / "data.tmp.extxyz", data)
    parts = {}
    for name, idx in zip(("train", "val", "test"), split(len(frames), args.seed)):
        parts[name] = [frames[i] for i in idx]
        if not (out / f"{name}.extxyz").exists():
            write(parts[name], out / f"{name}.tmp.extxyz")
            os.replace(out / f"{name}.tmp.extxyz", out / f"{name}.extxyz")
    counts = {}
    for frame in frames:
        counts[frame.info["config"]] = counts.get(frame.info["config"], 0) + 1
    print(json.dumps({"n_structures": len(frames), "n_atoms": sum(len(f) for f in frames),
                      "per_config": counts}), flush=True)

    train_seed = args.seed if args.train_seed is None else args.train_seed
    training = train(out, args.epochs, args.batch, args.lr, train_seed,
                     augment=not args.no_augmentation, sh_lmax=args.sh_lmax)
    run = out / "run"
    import symplug_atoms

    # our own checkpoint, unpickled by metatrain (torch.load weights_only=False); a
    # band-limited one is recognised by its weights
    ckpt = symplug_atoms.load_model(str(run / "pet_ref.ckpt"), trusted=True)
    n_params = sum(p.numel() for p in ckpt.module.parameters())
    test = ase.io.read(out / "test.extxyz", ":")
    accuracy = {"as_given": test_errors(run / "pet_ref.pt", test, rotate=False),
                "rotated": test_errors(run / "pet_ref.pt", test, rotate=True)}
    best = re.findall(r"Using best model from epoch (\d+)", (run / "train.log").read_text())
    kept = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints_kept").glob("*.ckpt"))
    metrics = {
        "model": "metatrain PET (pet_ref)", "n_parameters": n_params,
        "architecture": {"name": "pet", **MODEL}, "epochs": training["epochs"],
        "best_epoch": int(best[-1]) + 1 if best else None,
        "training_seconds": training["seconds"], "threads": training["threads"],
        "batch_size": training["batch_size"], "learning_rate": training["learning_rate"],
        "dtype": training["dtype"], "augmentation": training["augmentation"],
        "train_seed": train_seed,
        "edge_embedding": edge_embedding(args.sh_lmax),
        "training_runs": training["runs"],
        "n_structures": len(frames), "n_atoms": sum(len(f) for f in frames),
        "n_train": len(parts["train"]), "n_val": len(parts["val"]),
        "n_test": len(parts["test"]), "structures_per_config": counts,
        "data": "symplug_atoms.data.generate_reference(seed=%d)" % args.seed,
        "split": "symplug_atoms.train.split (80/10/10, default_rng(seed).permutation)",
        "test_errors": accuracy,
        "rotation": "each test frame acted on by its own Haar-random O(3) element (seed 1) "
                    "about its centre of mass; forces compared in the rotated frame",
        "kept_checkpoint_epochs": kept,
        "command": "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python "
                   "examples/train_reference_pet.py " + " ".join(argv or []),
        "seconds": time.perf_counter() - start,
    }
    write_json(metrics, out / "metrics.json")
    print(json.dumps({k: metrics[k] for k in ("n_parameters", "epochs", "best_epoch",
                                               "training_seconds")}), flush=True)
    for key in ("as_given", "rotated"):
        a = accuracy[key]
        print(f"test ({key}): energy MAE {a['energy_mae_meV_per_atom']:.2f} meV/atom, "
              f"forces MAE {a['forces_mae_meV_per_A']:.1f} meV/A", flush=True)
    if args.ship is not None:
        args.ship.mkdir(parents=True, exist_ok=True)
        for src, name in ((run / "pet_ref.ckpt", "pet_ref.ckpt"),
                          (run / "pet_ref.pt", "pet_ref.pt"),
                          (out / "test.extxyz", "pet_ref_test.extxyz"),
                          (run / "options.yaml", "pet_ref_options.yaml"),
                          (out / "metrics.json", "pet_ref_metrics.json")):
            write_bytes(src.read_bytes(), args.ship / name)
        print(f"shipped to {args.ship}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

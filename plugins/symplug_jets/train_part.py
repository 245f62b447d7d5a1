"""Train weaver's ParT as it is: weaver's own training loop, its own data pipeline.

    python -m symplug_jets.train_part --data jets_a.root jets_b.root \\
        --out plugins/symplug_jets/data/part.pt --work part-run --epochs 12

splits the jets 70/15/15 as :mod:`symplug_jets.train_tagger` does with the same seed
(so both see the same test jets), writes the three parts as ROOT files, runs ``weaver``
(``weaver_configs/top_kin.yaml``: ParT's kinematic inputs; ``part_network.py``: ParT
with its authors' configuration, ``--network-option`` to change it) on the CPU, and
turns weaver's state dicts into symplug tagger checkpoints: the best epoch (by weaver's
validation accuracy) as ``--out``, every epoch as ``WORK/checkpoints/epoch_XXX.pt`` for
``symplug track``. The test AUC is computed twice, from weaver's own predictions and
from symplug's feature recipe (:func:`symplug_jets.weaver.kin_features`) on the same
jets; their largest score difference is recorded, so a recipe that drifts from the
data config shows.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import uproot

from symplug import SymplugError
from symplug.result import load_weights, write_checkpoint

from .domain import tagger_scores
from .metrics import auc, background_rejection
from .rootio import concatenate, read_root, write_jets
from .train_tagger import split
from .weaver import load_part, part_config

CONFIGS = Path(__file__).resolve().parent / "weaver_configs"
MAX_PARTICLES = 128  # constituents kept in the split files (pT-ordered)
LENGTH = 64  # ParT's input length in top_kin.yaml: the leading constituents


def write_splits(paths: list[Path], work: Path, seed: int) -> dict[str, Path]:
    """train/val/test ROOT files of the jets in ``paths`` (the split of ``seed``)."""
    jets = concatenate([read_root(p, max_particles=MAX_PARTICLES) for p in paths])
    out = {}
    for name, rows in zip(("train", "val", "test"), split(len(jets), seed)):
        out[name] = write_jets(work / f"{name}.root", jets.subset(rows))
    return out


def run_weaver(files: dict[str, Path], work: Path, epochs: int, batch: int, lr: float,
               threads: int, options: list[tuple[str, str]]) -> Path:
    """weaver's training loop on the CPU; returns its model prefix."""
    prefix = work / "weaver" / "part"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "weaver.train",
               "--data-train", str(files["train"]), "--data-val", str(files["val"]),
               "--data-test", str(files["test"]),
               "--data-config", str(CONFIGS / "top_kin.yaml"),
               "--network-config", str(CONFIGS / "part_network.py"),
               "--model-prefix", str(prefix), "--num-epochs", str(epochs),
               "--batch-size", str(batch), "--start-lr", str(lr), "--optimizer", "ranger",
               "--gpus", "", "--num-workers", "1", "--fetch-step", "1",
               "--predict-output", str(work / "weaver" / "pred.root"),
               "--log", str(work / "weaver" / "train.log")]
    for name, value in options:
        command += ["--network-option", name, value]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, cwd=work)
    if done.returncode:
        raise SymplugError(f"weaver failed (exit {done.returncode}); see {work}/weaver/train.log")
    return prefix


def to_checkpoint(state: Path, config: dict, extra: dict | None = None) -> dict:
    """A symplug tagger checkpoint of weaver's state dict ``state`` (read safely)."""
    weights = load_weights(state, "weaver state dict")
    return {"config": {"arch": "weaver_part", "length": LENGTH, **config}, "state_dict": weights,
            **(extra or {})}


def test_metrics(tagger, test: Path, predictions: Path) -> dict:
    """AUC and 1/eps_B on the test jets from symplug's recipe, weaver's AUC from its own
    predictions, and the largest score difference between the two."""
    jets = read_root(test, max_particles=MAX_PARTICLES)
    top = jets.labels[:, jets.label_names.index("label_Top")] > 0.5
    with torch.no_grad():  # (N, 2) softmax over (QCD, Top), under the memory budget
        ours = tagger_scores(tagger, torch.from_numpy(jets.p4), torch.from_numpy(jets.mask))[:, 1]
    with uproot.open(predictions) as handle:
        tree = handle[handle.keys()[0]]
        theirs = tree["score_label_Top"].array(library="np")
        truth = tree["label_Top"].array(library="np") > 0.5
    if not np.array_equal(truth, top):
        raise SymplugError(f"{predictions}: weaver's test jets are not in the file's order")
    return {"auc": auc(ours, top), "rejection_at_0.3": background_rejection(ours, top, 0.3),
            "rejection_at_0.5": background_rejection(ours, top, 0.5),
            "weaver_auc": auc(theirs, top),
            "max_score_difference": float(np.abs(ours - theirs).max()), "n_jets": len(jets)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="ROOT files of generated jets (symplug jets generate)")
    parser.add_argument("--out", type=Path, required=True, help="the best epoch's checkpoint")
    parser.add_argument("--work", type=Path, required=True,
                        help="folder for the splits, weaver's files and the epoch checkpoints")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="weaver's --start-lr")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network-option", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a ParT argument, e.g. num_layers 4")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    files = write_splits(args.data, args.work.resolve(), args.seed)
    prefix = run_weaver(files, args.work.resolve(), args.epochs, args.batch_size, args.lr,
                        args.threads, args.network_option)
    options = {name: ast.literal_eval(value) for name, value in args.network_option}  # as weaver
    config = part_config(**options)
    folder = args.work / "checkpoints"
    folder.mkdir(exist_ok=True)
    for k in range(args.epochs):
        state = Path(f"{prefix}_epoch-{k}_state.pt")
        if state.exists():
            write_checkpoint(to_checkpoint(state, config, {"epoch": k + 1}),
                             folder / f"epoch_{k + 1:03d}.pt")
    best = to_checkpoint(Path(f"{prefix}_best_epoch_state.pt"), config)
    tagger = load_part(best, args.out, torch.float32)
    best["test"] = test_metrics(tagger, files["test"], args.work / "weaver" / "pred.root")
    best["training"] = {"data": [str(p) for p in args.data], "epochs": args.epochs,
                        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                        "optimizer": "ranger (weaver)", "threads": args.threads,
                        "parameters": sum(p.numel() for p in tagger.module.parameters()),
                        "seconds": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(best, args.out)
    print(json.dumps({"test": best["test"], **best["training"]}, indent=2))


if __name__ == "__main__":
    from symplug.cli import one_line_errors

    sys.exit(one_line_errors(main, "symplug_jets.train_part"))

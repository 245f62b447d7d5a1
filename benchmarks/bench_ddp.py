"""Seconds per epoch of a small atoms fine-tuning (``pet-cu``, float32, O(3) augmentation)
in one process and data-parallel under ``torchrun`` (gloo, one torch thread per process).

    python benchmarks/bench_ddp.py [--runs 1,1x2,2] [--frames 80] [--batch 8] [--epochs 2]
                                   [--penalty-equivariance 0] [--out DIR]

``--runs``: P processes of one thread each, or PxT: P processes of T threads.

The data are fresh EMT Cu structures (``symplug_atoms.data.generate(seed=1)``, the first
``--frames`` with at most 38 atoms; 20 % held out as validation, tracking off). Each
configuration runs as the real command line (``python -m symplug finetune`` or
``python -m torch.distributed.run --nproc_per_node P -m symplug finetune``); seconds per
epoch come from the run's ``log.jsonl`` (after start-up), so the figures leave out
imports and data loading. The last epoch's mean loss of every run is printed beside
them (equal to float32 rounding). The load average is printed too: on a shared machine
it explains more than the code does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, threads: int, data: Path, out: Path, args: argparse.Namespace) -> dict:
    cli = ["-m", "symplug", "finetune", "atoms", "--model", "pet-cu", "--data", str(data),
           "--epochs", str(args.epochs), "--batch", str(args.batch), "--lr", "1e-4",
           "--group", "O3", "--penalty-equivariance", str(args.penalty_equivariance),
           "--track-every", "0", "--threads", str(threads), "--out", str(out), "--quiet"]
    launcher = [sys.executable] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run([*launcher, *cli], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["event"] == "epoch"]
    seconds = [b["seconds"] - a for a, b in zip([0.0] + [e["seconds"] for e in epochs], epochs)]
    return {"processes": procs, "threads": threads, "seconds_per_epoch": seconds, "wall_s": wall,
            "loss": epochs[-1]["loss"], "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1,1x2,2",
                        help="P or PxT (P processes of T threads; default 1,1x2,2)")
    parser.add_argument("--frames", type=int, default=80, help="structures (default 80)")
    parser.add_argument("--batch", type=int, default=8, help="global batch (default 8)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    parser.add_argument("--penalty-equivariance", type=float, default=0.0)
    parser.add_argument("--out", help="folder for the data and runs (default: temporary)")
    args = parser.parse_args()

    from symplug_atoms.data import generate, write

    root = Path(args.out or tempfile.mkdtemp(prefix="bench_ddp_"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "cu.extxyz"
    if not data.exists():
        write([f for f in generate(seed=1, progress=False) if len(f) <= 38][: args.frames], data)
    print(f"{args.frames} structures, batch {args.batch}, O3 augmentation, penalty "
          f"{args.penalty_equivariance}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}")
    rows = []
    for spec in args.runs.split(","):
        procs, _, threads = spec.partition("x")
        procs, threads = int(procs), int(threads or 1)
        tag = f"p{procs}t{threads}_pen{args.penalty_equivariance:g}"
        row = run(procs, threads, data, root / tag, args)
        rows.append(row)
        per = ", ".join(f"{s:.1f}" for s in row["seconds_per_epoch"])
        print(f"{procs} process(es) x {threads} thread(s): s/epoch {per}  (wall {row['wall_s']:.1f} s, last-epoch loss "
              f"{row['loss']:.6g}, load average {row['load_average'][0]:.2f})")
    base = rows[0]["seconds_per_epoch"][-1]
    for row in rows[1:]:
        print(f"speed-up of {row['processes']} x {row['threads']} (last epoch): "
              f"{base / row['seconds_per_epoch'][-1]:.2f}x")
    (root / "bench_ddp.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

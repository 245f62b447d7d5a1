"""Seconds per epoch of a small atoms fine-tuning (``pet-cu``, float32, O(3) augmentation)
in one process and data-parallel under ``torchrun`` (gloo, one torch thread per process).

    python benchmarks/bench_ddp.py [--runs 1,1x2,2] [--frames 80] [--batch 8] [--epochs 2]
                                   [--penalty-equivariance 0] [--data FILE.extxyz]
                                   [--quick] [--out DIR] [--json FILE]

``--runs``: P processes of one thread each, or PxT: P processes of T threads.

The data are fresh EMT Cu structures (``symplug_atoms.data.generate(seed=1)``, the first
``--frames`` with at most 38 atoms; 20 % held out as validation, tracking off), or those
of ``--data``. Each configuration runs as the real command line (``python -m symplug
finetune`` or ``python -m torch.distributed.run --nproc_per_node P -m symplug finetune``);
seconds per epoch come from the run's ``log.jsonl`` (after start-up), so the figures
leave out imports and data loading. The last epoch's mean loss of every run is printed beside
them (equal to float32 rounding). The load average is printed too: on a shared machine
it explains more than the code does. The runs go to ``--out`` (default: a temporary
folder, removed at the end); the figures to ``OUT/bench_ddp.json`` and ``--json``.

``--quick`` is a smoke test of the same command lines on tiny inputs: runs ``1,2``, the
first 8 of the shipped ``pet-cu`` test structures (no data generation), batch 4, one
epoch. Its timings mean nothing.
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


FULL = {"runs": "1,1x2,2", "frames": 80, "batch": 8, "epochs": 2}
QUICK = {"runs": "1,2", "frames": 8, "batch": 4, "epochs": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", help="P or PxT (P processes of T threads; default 1,1x2,2; "
                        "quick 1,2)")
    parser.add_argument("--frames", type=int, help="structures (default 80; quick 8)")
    parser.add_argument("--batch", type=int, help="global batch (default 8; quick 4)")
    parser.add_argument("--epochs", type=int, help="epochs (default 2; quick 1)")
    parser.add_argument("--penalty-equivariance", type=float, default=0.0)
    parser.add_argument("--data", type=Path, help="labelled structures (extxyz) to use instead "
                        "of generating them (quick: the shipped pet-cu test structures)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: the same command lines on tiny inputs")
    parser.add_argument("--out", help="folder for the data and runs (default: temporary, "
                        "removed at the end)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out:
        bench(args, Path(args.out))
    else:
        with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
            bench(args, Path(tmp))


def bench(args: argparse.Namespace, root: Path) -> None:
    from symplug_atoms.data import generate, write

    root.mkdir(parents=True, exist_ok=True)
    data = root / "cu.extxyz"
    if args.data is None and args.quick:
        from symplug_atoms.torch_model import SHIPPED_DIR

        args.data = SHIPPED_DIR / "pet_cu_test.extxyz"
    if args.data is not None:
        import ase.io

        write([f for f in ase.io.read(args.data, ":") if len(f) <= 38][: args.frames], data)
    elif not data.exists():
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
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "bench_ddp", "quick": args.quick,
                                         "frames": args.frames, "batch": args.batch,
                                         "epochs": args.epochs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""Throughput of the data-parallel diagnosis: one process against a local dask cluster of
1 and 2 worker processes (one torch thread each), for jets and atoms.

    python benchmarks/bench_dataparallel.py [--copies 4] [--jets 450] [--step 112]
                                            [--frames 16] [--cases jets,atoms]
                                            [--workers 1,2] [--quick] [--out FILE.json]

jets: the reference tagger on ``--copies`` copies of the shipped test file (its 450 jets,
or the first ``--jets`` of them) read through ``uproot.dask`` in partitions of ``--step``
entries, SO(2) degree 4 with the degree-6 convergence check, layer ``pool``, AUC and flip
rate. atoms: ``pet-cu`` on
``--frames`` Cu13 clusters of the shipped test frames (cycled), in partitions of 2
frames, O(3) degree 2 with the degree-4 check, layer ``embedding``. Every run is timed
from the call to the result (the cluster is started before and its start-up printed
apart); the numbers of every run are checked against the one-process result (largest
relative difference printed). The load average is printed: on a shared machine it
explains more than the code does. ``--quick`` is a smoke test of the same calls on tiny
inputs (one copy of 64 jets in partitions of 32, 4 frames, one cluster of 2 workers
shared by both cases); its timings mean nothing.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack, nullcontext
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import symplug


def _max_relative_difference(a, b) -> float:
    if isinstance(a, dict):
        return max([_max_relative_difference(a[k], b[k]) for k in a if k != "symplug_version"]
                   or [0.0])
    if isinstance(a, list):
        return max([_max_relative_difference(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, float) and np.isfinite(a):
        return abs(a - b) / max(1.0, abs(a))
    return 0.0


def jets_case(tmp: Path, copies: int, step: int, jets: int | None = None):
    import symplug_jets as sj
    from symplug_jets.domain import blocks, jet_partitions, jets_domain
    from symplug_jets.rootio import read_root, write_root
    from symplug_jets.taggers import REFERENCE

    source = REFERENCE.with_name("tagger_test.root")
    if jets is not None:  # a file of the first ``jets`` jets, in the same layout
        head = read_root(source, entry_stop=jets)
        source = write_root(tmp / "jets_head.root",
                            [p4[mask] for p4, mask in zip(head.p4, head.mask)],
                            {name: head.labels[:, k] for k, name in enumerate(head.label_names)},
                            head.observers)
    files = []
    for k in range(copies):
        files.append(tmp / f"jets_{k}.root")
        files[-1].write_bytes(source.read_bytes())
    options = dict(group="SO2", degree=4, layers=["pool"], progress=False, skip_failures=True)
    tagger = sj.load_tagger("reference")
    n = copies * len(read_root(source))

    def single():
        samples = [b for f in files for b in blocks(read_root(f))]
        return symplug.diagnose(tagger, samples, jets_domain(), **options)

    def spread(client):
        return symplug.diagnose(tagger, jet_partitions(files, step_size=step), jets_domain(),
                                client=client, **options)
    return f"jets ({n} jets)", n, "jets", single, spread


def atoms_case(tmp: Path, frames: int):
    import symplug_atoms as sa
    from symplug_atoms.domain import atoms_domain, frame_partitions, read_frames
    from symplug_atoms.torch_model import SHIPPED_DIR

    shipped = read_frames(SHIPPED_DIR / "pet_cu_test.extxyz")
    small = [f for f in shipped if len(f) == 13]
    chosen = [small[k % len(small)] for k in range(frames)]
    path = tmp / "frames.extxyz"
    import ase.io

    ase.io.write(path, chosen)
    model = sa.load_model("pet-cu")
    options = dict(group="O3", degree=2, layers=["embedding"], progress=False,
                   skip_failures=True)

    def single():
        return symplug.diagnose(model, read_frames(path), atoms_domain(), **options)

    def spread(client):
        return symplug.diagnose(model, frame_partitions([path], size=2), atoms_domain(),
                                client=client, **options)
    return f"atoms ({frames} Cu13 frames)", frames, "frames", single, spread


FULL = {"copies": 4, "jets": None, "step": 112, "frames": 16, "workers": "1,2"}
QUICK = {"copies": 1, "jets": 64, "step": 32, "frames": 4, "workers": "2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int,
                        help="copies of the jets test file (default 4; 1 quick)")
    parser.add_argument("--jets", type=int,
                        help="the first N jets of the test file per copy (default all 450; "
                             "64 quick)")
    parser.add_argument("--step", type=int, help="jets per partition (default 112; 32 quick)")
    parser.add_argument("--frames", type=int, help="Cu13 frames (default 16; 4 quick)")
    parser.add_argument("--cases", default="jets,atoms", help="which cases to run")
    parser.add_argument("--workers", help="cluster sizes to run, comma-separated "
                        "(default 1,2; 2 quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: the same calls on tiny inputs")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as shared:
        clusters = {}

        def cluster(workers: int):
            """A fresh cluster per case and size; with --quick one per size, kept."""
            if not args.quick:
                return symplug.connect(workers=workers)
            if workers not in clusters:
                clusters[workers] = shared.enter_context(symplug.connect(workers=workers))
            return nullcontext(clusters[workers])

        cases = {"jets": lambda: jets_case(Path(tmp), args.copies, args.step, args.jets),
                 "atoms": lambda: atoms_case(Path(tmp), args.frames)}
        for name, n, unit, single, spread in (cases[c]() for c in args.cases.split(",")):
            start = time.perf_counter()
            reference = single()
            seconds = {"1 process": time.perf_counter() - start}
            worst = 0.0
            for workers in (int(w) for w in args.workers.split(",")):
                reused, start = workers in clusters, time.perf_counter()
                with cluster(workers) as client:
                    up = time.perf_counter() - start
                    start = time.perf_counter()
                    result = spread(client)
                    seconds[f"{workers} worker{'s' * (workers > 1)}"] = time.perf_counter() - start
                print(f"  ({name}: cluster of {workers} "
                      + ("reused)" if reused else f"started in {up:.1f} s)"))
                worst = max(worst, _max_relative_difference(result, reference))
            speedup = (seconds["1 worker"] / seconds["2 workers"]
                       if {"1 worker", "2 workers"} <= set(seconds) else None)
            row = {"case": name, "n": n, "unit": unit, "seconds": seconds,
                   "per_second": {k: n / v for k, v in seconds.items()},
                   "speedup_2_vs_1_worker": speedup,
                   "max_relative_difference": worst, "load_average": os.getloadavg()[0]}
            rows.append(row)
            print(f"{name}: " + ", ".join(f"{k} {v:.1f} s ({n / v:.1f} {unit}/s)"
                                          for k, v in seconds.items())
                  + (f"; 2 vs 1 worker {speedup:.2f}x" if speedup is not None else "")
                  + f"; max relative difference to one process {worst:.1e}")
    if args.out:
        from symplug.result import write_json

        write_json({"benchmark": "bench_dataparallel", "quick": args.quick, "rows": rows},
                   args.out)


if __name__ == "__main__":
    main()

"""Throughput of the data-parallel diagnosis: one process against a local dask cluster of
1 and 2 worker processes (one torch thread each), for jets and atoms.

    python benchmarks/bench_dataparallel.py [--copies 4] [--step 112] [--frames 16]
                                            [--cases jets,atoms] [--out FILE.json]

jets: the reference tagger on ``--copies`` copies of the shipped test file (450 jets
each) read through ``uproot.dask`` in partitions of ``--step`` entries, SO(2) degree 4 with the
degree-6 convergence check, layer ``pool``, AUC and flip rate. atoms: ``pet-cu`` on
``--frames`` Cu13 clusters of the shipped test frames (cycled), in partitions of 2
frames, O(3) degree 2 with the degree-4 check, layer ``embedding``. Every run is timed
from the call to the result (the cluster is started before and its start-up printed
apart); the numbers of every run are checked against the one-process result (largest
relative difference printed). The load average is printed: on a shared machine it
explains more than the code does.
"""

from __future__ import annotations

import argparse
import os
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


def jets_case(tmp: Path, copies: int, step: int):
    import symplug_jets as sj
    from symplug_jets.domain import blocks, jet_partitions, jets_domain
    from symplug_jets.rootio import read_root
    from symplug_jets.taggers import REFERENCE

    source = REFERENCE.with_name("tagger_test.root")
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


def atoms_case(frames: int):
    import symplug_atoms as sa
    from symplug_atoms.domain import atoms_domain, frame_partitions, read_frames
    from symplug_atoms.torch_model import SHIPPED_DIR

    shipped = read_frames(SHIPPED_DIR / "pet_cu_test.extxyz")
    small = [f for f in shipped if len(f) == 13]
    chosen = [small[k % len(small)] for k in range(frames)]
    path = Path(tempfile.mkdtemp()) / "frames.extxyz"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the jets test file")
    parser.add_argument("--step", type=int, default=112, help="jets per partition")
    parser.add_argument("--frames", type=int, default=16, help="Cu13 frames")
    parser.add_argument("--cases", default="jets,atoms", help="which cases to run")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"jets": lambda: jets_case(Path(tmp), args.copies, args.step),
                 "atoms": lambda: atoms_case(args.frames)}
        for name, n, unit, single, spread in (cases[c]() for c in args.cases.split(",")):
            start = time.perf_counter()
            reference = single()
            seconds = {"1 process": time.perf_counter() - start}
            worst = 0.0
            for workers in (1, 2):
                start = time.perf_counter()
                with symplug.connect(workers=workers) as client:
                    up = time.perf_counter() - start
                    start = time.perf_counter()
                    result = spread(client)
                    seconds[f"{workers} worker{'s' * (workers > 1)}"] = time.perf_counter() - start
                print(f"  ({name}: cluster of {workers} started in {up:.1f} s)")
                worst = max(worst, _max_relative_difference(result, reference))
            row = {"case": name, "n": n, "unit": unit, "seconds": seconds,
                   "per_second": {k: n / v for k, v in seconds.items()},
                   "speedup_2_vs_1_worker": seconds["1 worker"] / seconds["2 workers"],
                   "max_relative_difference": worst, "load_average": os.getloadavg()[0]}
            rows.append(row)
            print(f"{name}: " + ", ".join(f"{k} {v:.1f} s ({n / v:.1f} {unit}/s)"
                                          for k, v in seconds.items())
                  + f"; 2 vs 1 worker {row['speedup_2_vs_1_worker']:.2f}x; "
                  f"max relative difference to one process {worst:.1e}")
    if args.out:
        from symplug.result import write_json

        write_json({"benchmark": "bench_dataparallel", "rows": rows}, args.out)


if __name__ == "__main__":
    main()

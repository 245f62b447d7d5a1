"""Cost of diagnosing a tagger over a grid against the tagger's own batched inference.

    python benchmarks/bench_jets.py [--jets 256] [--degree 2] [--group SO3] [--repeat 3]
                                    [--threads 2] [--quick] [--json FILE]

On the shipped test jets and the reference tagger (float64, ``--threads`` 2, best of
``--repeat``, interleaved): (a) the tagger alone on every transformed copy of every jet,
in the batches the engine makes (chunk of 64 copies x 16 jets), inputs transformed
beforehand; (b) the orbit pass of ``symplug_jets.diagnose`` (A and B of the score, the
domain's summary left out; no convergence check); (c) the full diagnosis, whose summary
(AUC, flip rate, score shifts) reads the scores the orbit pass keeps. ``--quick`` is a
smoke test of the same three calls (16 jets, one repeat, one torch thread); its timings
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch

import symplug
import symplug_jets as sj
from symplug_jets.action import rotate_jets
from symplug_jets.domain import BLOCK, blocks, jets_domain
from symplug_jets.taggers import REFERENCE


FULL = {"jets": 256, "repeat": 3, "threads": 2}
QUICK = {"jets": 16, "repeat": 1, "threads": 1}


def interleaved_best(fns, repeat: int) -> list[float]:
    """Best wall time of each function, the functions run in turn ``repeat`` times."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return [min(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, help="jets (default 256; 16 with --quick)")
    parser.add_argument("--degree", type=int, default=2)
    parser.add_argument("--group", default="SO3")
    parser.add_argument("--repeat", type=int, help="best of N (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, help="torch threads (default 2; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 16 jets, one repeat, one thread (the same calls)")
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    jets = sj.read_root(REFERENCE.with_name("tagger_test.root"), max_particles=64)
    jets = jets.subset(np.arange(min(args.jets, len(jets))))
    tagger = sj.load_tagger("reference")
    grid = symplug.quadrature(args.group, args.degree)
    samples = blocks(jets, BLOCK)
    batches = [rotate_jets(b, grid.matrices[ix]) for b in samples for ix in grid.chunks(64)]

    def inference() -> None:
        with torch.no_grad():
            for batch in batches:
                tagger(batch)

    orbit_only = replace(jets_domain(), summary=())  # the orbit pass only: no summary stages

    def orbit_pass() -> None:
        symplug.diagnose(tagger, samples, orbit_only, group=args.group, degree=args.degree,
                         check_convergence=False, progress=False)

    def full() -> None:
        sj.diagnose(tagger, jets, group=args.group, degree=args.degree, check_convergence=False,
                    progress=False)

    a, b, c = interleaved_best([inference, orbit_pass, full], args.repeat)
    copies = len(jets) * grid.size
    print(f"{len(jets)} jets x {grid.size} elements ({args.group} degree {args.degree}) = "
          f"{copies} transformed jets")
    print("| what | time | ratio to (a) |\n|---|---|---|")
    print(f"| (a) tagger inference alone | {a:.2f} s | 1.00 |")
    print(f"| (b) diagnosis orbit pass (A and B) | {b:.2f} s | {b / a:.2f} |")
    print(f"| (c) full diagnosis (+ flip rate, AUC) | {c:.2f} s | {c / a:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"benchmark": "bench_jets", "quick": args.quick, "jets": len(jets),
                       "group": args.group, "degree": args.degree, "grid_size": grid.size,
                       "repeat": args.repeat, "threads": args.threads, "load_average": os.getloadavg()[0],
                       "seconds": {"inference": a, "orbit_pass": b, "full": c},
                       "ratio_to_inference": {"orbit_pass": b / a, "full": c / a}}, fh, indent=1)


if __name__ == "__main__":
    main()

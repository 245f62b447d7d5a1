"""Peak memory under the default budget: one large atoms frame, and jets files of growing size.

    python benchmarks/bench_memory.py [--quick] [--json PATH] [--atoms 3000]
        [--jets 450,4500,45000] [--threads 1] [--cases atoms,jets]

* atoms: one rattled periodic fcc Cu frame of ``--atoms`` atoms (EMT labels) diagnosed with
  the shipped ``pet-cu`` at ``--degree 1`` (O(3), 8-element rule and its turned check),
  default ``--chunk-size`` (64) and the default memory budget;
* jets: the shipped ``tagger_test.root`` repeated to each size in ``--jets`` and
  diagnosed with the shipped ``reference`` tagger under SO(2) about the beam at degree 2.

Each case runs ``symplug diagnose`` in a child process; its peak RSS is polled from
``/proc/PID/status`` every 20 ms (the budget's own measurements reset the kernel's peak,
so ``ru_maxrss`` and ``/usr/bin/time`` under-report), its wall time is the parent's clock.
``--quick``: a 108-atom frame and 450 / 900 jets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def atoms_frame(n_atoms: int, path: Path) -> Path:
    """A rattled periodic fcc Cu frame of about ``n_atoms`` atoms with EMT labels."""
    import ase.build
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    repeat = max(1, round(n_atoms / 100))
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True) * (5, 5, repeat)
    atoms.rattle(0.05, seed=3)
    atoms.calc = EMT()
    labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
              "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **labels)
    ase.io.write(path, atoms)
    return path


def jets_file(n_jets: int, path: Path) -> Path:
    """The shipped test jets repeated (and cut) to ``n_jets`` entries, same branches."""
    import awkward as ak
    import uproot

    source = ROOT / "plugins" / "symplug_jets" / "data" / "tagger_test.root"
    with uproot.open(source) as handle:
        tree = handle["tree"]
        arrays = tree.arrays(library="ak")
    repeats = -(-n_jets // len(arrays))
    data = ak.concatenate([arrays] * repeats)[:n_jets]
    with uproot.recreate(path) as handle:
        handle["tree"] = {name: data[name] for name in data.fields}
    return path


def _watch(pid: int, peak: list[int], done: threading.Event) -> None:
    """Poll the child's RSS every 20 ms (its kernel peak is reset by the memory budget's
    measurements, so ``ru_maxrss`` would miss the run's peak)."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            return
        done.wait(0.02)


def run(argv: list[str], threads: int, folder: Path) -> dict:
    """``symplug`` in a child process: exit code, wall time and peak RSS (MiB, polled)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = folder / "stderr.txt"
    peak, done = [0], threading.Event()
    start = time.perf_counter()
    with open(log, "wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "symplug", *argv], env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
        watcher = threading.Thread(target=_watch, args=(child.pid, peak, done))
        watcher.start()
        child.wait()
        done.set()
        watcher.join()
    seconds = time.perf_counter() - start
    return {"exit": child.returncode, "seconds": round(seconds, 1),
            "peak_mib": round(peak[0] / 2 ** 20), "stderr": log.read_text()[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the suite's check)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--atoms", type=int, default=3000, help="atoms of the frame")
    parser.add_argument("--jets", default="450,4500,45000", help="jets per file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--cases", default="atoms,jets", help="atoms, jets or both")
    args = parser.parse_args()
    n_atoms = 108 if args.quick else args.atoms
    sizes = [450, 900] if args.quick else [int(n) for n in args.jets.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if "atoms" in args.cases:
            frame = atoms_frame(n_atoms, folder / "frame.extxyz")
            row = run(["diagnose", "atoms", "--model", "pet-cu", "--data", str(frame),
                       "--degree", "1", "--quiet", "--json", str(folder / "atoms.json")],
                      args.threads, folder)
            rows.append({"case": f"atoms {n_atoms}", **row})
            print(rows[-1], flush=True)
        for n in sizes if "jets" in args.cases else ():
            path = jets_file(n, folder / f"jets{n}.root")
            row = run(["diagnose", "jets", "--model", "reference", "--data", str(path),
                       "--group", "SO2", "--degree", "2", "--quiet", "--json",
                       str(folder / f"jets{n}.json")], args.threads, folder)
            rows.append({"case": f"jets {n}", **row})
            print(rows[-1], flush=True)
    jets = [r for r in rows if r["case"].startswith("jets")]
    ratio = round(jets[-1]["peak_mib"] / jets[0]["peak_mib"], 3) if jets else None
    record = {"benchmark": "memory", "quick": args.quick, "threads": args.threads,
              "rows": rows, "jets_peak_ratio": ratio}
    if jets:
        print(f"jets peak {jets[-1]['case']} / {jets[0]['case']}: {ratio}")
    if any(r["exit"] != 0 for r in rows):
        print("failed: " + "; ".join(f"{r['case']}: {r['stderr']}" for r in rows if r["exit"]),
              file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))
    sys.exit(1 if any(r["exit"] != 0 for r in rows) else 0)


if __name__ == "__main__":
    main()

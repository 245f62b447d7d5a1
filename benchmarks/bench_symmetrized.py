"""Time and peak memory of one symmetrised call: symplug_atoms.SymmetrizedCalculator
(chunked batches) against metatomic-ase's SymmetrizedCalculator (all copies in one
batch), on the same rotations, for a metatrain PET exported as a metatomic model.

    python benchmarks/bench_symmetrized.py [--model PET.pt | --model pet-cu] [--l-max 1]
        [--chunks 1,8]

Without ``--model`` a PET (d_pet 64, 2 GNN layers) is trained for one epoch with
``mtt train`` on the project's EMT Cu data (timings do not depend on its accuracy).
``--model pet-cu`` exports symplug's shipped reference model (``symplug_atoms.export``)
to a temporary metatomic file and benchmarks that.
Each case runs in a fresh subprocess of this light parent (which imports no torch).
After three warm-up plain calls and one warm-up call of the case itself (its batch
shapes), every timed call starts from a trimmed heap
(glibc ``malloc_trim(0)``) with the peak-RSS counter reset (``/proc/self/clear_refs``);
its memory is the peak RSS during the call minus the RSS just before it, so a
symmetrised call and a plain call are measured alike. Reported: the best time and the
largest memory of ``--repeat`` calls. Linux with glibc only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

OPTIONS = """
seed: 0
architecture:
  name: pet
  model: {cutoff: 4.5, d_pet: 64, num_gnn_layers: 2}
  training: {batch_size: 8, num_epochs: 1, log_interval: 1, checkpoint_interval: 10}
training_set:
  systems: {read_from: cu.extxyz, length_unit: angstrom}
  targets:
    energy: {key: energy, unit: eV, forces: {key: forces}}
validation_set: 0.1
test_set: 0.1
"""

WORKER = textwrap.dedent('''
    import ctypes, json, sys, time
    import numpy as np, torch
    from ase.build import bulk
    from ase.calculators.calculator import all_changes
    from ase.cluster import Icosahedron
    from metatomic_ase import MetatomicCalculator
    from metatomic_ase import SymmetrizedCalculator as Theirs
    import symplug, symplug_atoms
    model, structure, case, l_max, chunk, threads, repeat = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    libc = ctypes.CDLL("libc.so.6")

    def status(field):  # kB -> MiB
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    atoms = (Icosahedron("Cu", 2) if structure == "ico13"
             else bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3))
    atoms.rattle(0.02, seed=0)
    base = MetatomicCalculator(model)
    theirs = Theirs(MetatomicCalculator(model), l_max=int(l_max), store_rotational_std=True)
    grid = symplug.Grid("O3", "lebedev", 1, 2, torch.from_numpy(theirs.quadrature_rotations),
                        torch.from_numpy(theirs.quadrature_weights / theirs.quadrature_weights.sum()))
    calc = {"plain": base, "metatomic-ase": theirs,
            "symplug": symplug_atoms.SymmetrizedCalculator(base, grid=grid,
                                                           chunk_size=int(chunk))}[case]
    props = ["energy", "forces"] + (["stress"] if atoms.get_pbc().all() else [])
    for _ in range(3):  # warm-up: TorchScript's profiling runs
        base.calculate(atoms.copy(), props, all_changes)
    calc.calculate(atoms.copy(), props, all_changes)  # and the case's own batch shapes
    times, peaks = [], []
    for _ in range(int(repeat)):
        libc.malloc_trim(0)
        rest = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        start = time.perf_counter()
        calc.calculate(atoms.copy(), props, all_changes)
        times.append(time.perf_counter() - start)
        peaks.append(status("VmHWM") - rest)
    print(json.dumps({"seconds": min(times), "peak_mib": max(peaks), "rest_mib": rest,
                      "copies": len(grid.weights)}))
''')


def train_pet(folder: Path) -> Path:
    from symplug_atoms.data import generate, write  # imports torch in a child only

    write(generate(seed=0, progress=False)[::3], folder / "cu.extxyz")
    (folder / "options.yaml").write_text(OPTIONS)
    subprocess.run([str(Path(sys.executable).parent / "mtt"), "train", "options.yaml", "-o",
                    "pet.pt"], cwd=folder, check=True, capture_output=True)
    return folder / "pet.pt"


def export_pet_cu(folder: Path) -> Path:
    from symplug_atoms import load_model  # imports torch in a child only
    from symplug_atoms.export import export_metatomic

    return export_metatomic(load_model("pet-cu"), folder / "pet-cu.pt")


def run_case(model: Path, structure: str, case: str, args, chunk: int = 1) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(model), structure, case,
                          str(args.l_max), str(chunk), str(args.threads), str(args.repeat)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported metatomic PET (.pt), or "
                        "pet-cu (symplug's reference model, exported on the fly)")
    parser.add_argument("--l-max", type=int, default=1, help="metatomic-ase's l_max")
    parser.add_argument("--chunks", default="1,8", help="symplug chunk sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None or str(args.model) == "pet-cu":
            make = "train_pet" if args.model is None else "export_pet_cu"
            proc = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                   "sys.path.insert(0, 'benchmarks'); import bench_symmetrized as b; "
                                   f"print(b.{make}(Path({tmp!r})))"],
                                  check=True, capture_output=True, text=True)
            model = Path(proc.stdout.strip().splitlines()[-1])
        else:
            model = args.model
        rows = []
        for structure in ("ico13", "bulk108"):
            plain = run_case(model, structure, "plain", args)
            cases = [("metatomic-ase", 0)] + [("symplug", int(c)) for c in args.chunks.split(",")]
            for case, chunk in cases:
                r = run_case(model, structure, case, args, chunk)
                label = f"symplug, chunks of {chunk}" if chunk else "metatomic-ase, one batch"
                rows.append({"structure": structure, "case": label, "copies": r["copies"],
                             "seconds": r["seconds"], "plain_seconds": plain["seconds"],
                             "peak_mib": r["peak_mib"], "plain_peak_mib": plain["peak_mib"],
                             "rest_mib": r["rest_mib"]})
    print("| structure | case | copies | time per symmetrised call | plain call | peak memory "
          "| plain call's peak | memory ratio |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['structure']} | {r['case']} | {r['copies']} | {r['seconds']:.3f} s | "
              f"{r['plain_seconds'] * 1000:.1f} ms | {r['peak_mib']:.0f} MiB | "
              f"{r['plain_peak_mib']:.0f} MiB | {r['peak_mib'] / r['plain_peak_mib']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"l_max": args.l_max, "chunks": args.chunks,
                                         "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

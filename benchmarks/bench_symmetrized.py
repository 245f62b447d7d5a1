"""Time and peak memory of one symmetrised call: symplug_atoms.SymmetrizedCalculator
(chunked batches) against metatomic-ase's SymmetrizedCalculator (all copies in one
batch), on the same rotations, for a metatrain PET exported as a metatomic model.

    python benchmarks/bench_symmetrized.py [--model PET.pt | --model pet-cu] [--l-max 1,3,5]
        [--chunks 1,8] [--structures ico13,bulk108]

For every band L: metatomic-ase's calculator at ``l_max = L`` (all copies in one batch),
symplug's on the same rotations, and symplug's on its own default rule for the mean of
band L (``symplug.quadrature("O3", L, purpose="mean")``: D2, O, I times {E, I} for
L = 1, 3, 5), each in chunks of ``--chunks`` copies. [--quick]

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
``--quick`` is a smoke test of the same cases on small settings (``--model pet-cu``, the
Cu13 cluster only, chunks of 8, one repeat, one thread); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _rss import worker_env  # benchmarks/_rss.py, beside this script

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
    import json, sys, time
    import numpy as np, torch
    from ase.build import bulk
    from ase.calculators.calculator import all_changes
    from ase.cluster import Icosahedron
    from metatomic_ase import MetatomicCalculator
    from metatomic_ase import SymmetrizedCalculator as Theirs
    import symplug, symplug_atoms
    from _rss import start_call, status  # benchmarks/_rss.py, on PYTHONPATH
    model, structure, case, l_max, chunk, threads, repeat, their_batch = sys.argv[1:9]
    torch.set_num_threads(int(threads))

    atoms = (Icosahedron("Cu", 2) if structure == "ico13"
             else bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3))
    atoms.rattle(0.02, seed=0)
    base = MetatomicCalculator(model)
    theirs = Theirs(MetatomicCalculator(model), l_max=int(l_max), store_rotational_std=True,
                    batch_size=int(their_batch) or None)
    grid = symplug.Grid("O3", "lebedev", 1, 2, torch.from_numpy(theirs.quadrature_rotations),
                        torch.from_numpy(theirs.quadrature_weights / theirs.quadrature_weights.sum()))
    if case == "symplug-own":  # symplug's default: the smallest rule for the mean of band L
        calc = symplug_atoms.SymmetrizedCalculator(base, degree=int(l_max), chunk_size=int(chunk))
        grid = calc.grid
    else:
        calc = {"plain": base, "metatomic-ase": theirs,
                "symplug": symplug_atoms.SymmetrizedCalculator(base, grid=grid,
                                                               chunk_size=int(chunk))}[case]
    props = ["energy", "forces"] + (["stress"] if atoms.get_pbc().all() else [])
    for _ in range(3):  # warm-up: TorchScript's profiling runs
        base.calculate(atoms.copy(), props, all_changes)
    calc.calculate(atoms.copy(), props, all_changes)  # and the case's own batch shapes
    times, peaks = [], []
    for _ in range(int(repeat)):
        rest = start_call()
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


def run_case(model: Path, structure: str, case: str, args, chunk: int = 1,
             l_max: int = 1) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(model), structure, case,
                          str(l_max), str(chunk), str(args.threads), str(args.repeat),
                          str(args.their_batch)],
                         check=True, capture_output=True, text=True, env=worker_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported metatomic PET (.pt), or "
                        "pet-cu (symplug's reference model, exported on the fly)")
    parser.add_argument("--l-max", default="1", help="bands L, comma-separated: metatomic-ase's "
                        "l_max and the band of symplug's own rule (default 1)")
    parser.add_argument("--their-batch", type=int, default=8,
                        help="metatomic-ase's batch_size (0: all copies in one batch, about "
                        "180 MB per copy on the 108-atom cell; default 8)")
    parser.add_argument("--structures", default="ico13,bulk108",
                        help="ico13 and/or bulk108 (default both)")
    parser.add_argument("--chunks", default="1,8", help="symplug chunk sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="smoke test: --model pet-cu, "
                        "the Cu13 cluster only, chunks of 8, one repeat, one thread")
    args = parser.parse_args()
    structures = tuple(args.structures.split(","))
    if args.quick:
        args.model = args.model or Path("pet-cu")
        args.chunks, args.repeat, args.threads, structures = "8", 1, 1, ("ico13",)
    bands = [int(b) for b in str(args.l_max).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None or str(args.model) == "pet-cu":
            make = "train_pet" if args.model is None else "export_pet_cu"
            here = str(Path(__file__).resolve().parent)
            proc = subprocess.run([sys.executable, "-B", "-c",  # -B: no __pycache__ here
                                   "import sys; from pathlib import Path; "
                                   f"sys.path.insert(0, {here!r}); import bench_symmetrized as b; "
                                   f"print(b.{make}(Path({tmp!r})))"],
                                  check=True, capture_output=True, text=True)
            model = Path(proc.stdout.strip().splitlines()[-1])
        else:
            model = args.model
        rows = []
        for structure in structures:
            plain = run_case(model, structure, "plain", args)
            for band in bands:
                chunks = [int(c) for c in args.chunks.split(",")]
                cases = ([("metatomic-ase", 0)] + [("symplug", c) for c in chunks]
                         + [("symplug-own", c) for c in chunks])
                theirs = None
                for case, chunk in cases:
                    r = run_case(model, structure, case, args, chunk, band)
                    theirs = r if case == "metatomic-ase" else theirs
                    label = {"metatomic-ase": f"metatomic-ase, batches of {args.their_batch}"
                             if args.their_batch else "metatomic-ase, one batch",
                             "symplug": f"symplug, same rotations, chunks of {chunk}",
                             "symplug-own": f"symplug, own rule, chunks of {chunk}"}[case]
                    rows.append({"structure": structure, "band": band, "case": label,
                                 "copies": r["copies"], "seconds": r["seconds"],
                                 "plain_seconds": plain["seconds"], "peak_mib": r["peak_mib"],
                                 "plain_peak_mib": plain["peak_mib"], "rest_mib": r["rest_mib"],
                                 "speedup": theirs["seconds"] / r["seconds"],
                                 "copies_ratio": r["copies"] / theirs["copies"]})
    print("| structure | L | case | copies | copies / metatomic-ase | time per symmetrised call "
          "| speed-up over metatomic-ase | plain call | peak memory | plain call's peak "
          "| memory ratio |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['structure']} | {r['band']} | {r['case']} | {r['copies']} | "
              f"{r['copies_ratio']:.2f} | {r['seconds']:.3f} s | {r['speedup']:.2f}x | "
              f"{r['plain_seconds'] * 1000:.1f} ms | {r['peak_mib']:.0f} MiB | "
              f"{r['plain_peak_mib']:.0f} MiB | {r['peak_mib'] / r['plain_peak_mib']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"l_max": args.l_max, "chunks": args.chunks,
                                         "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

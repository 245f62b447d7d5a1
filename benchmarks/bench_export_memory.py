"""Peak memory and time of one energy+forces call through metatomic-ase's MetatomicCalculator
of two symmetrised metatomic models built from the same exported pet-cu:
``symplug_atoms.symmetrized_export.symmetrize_metatomic`` (chunked, gradients taken chunk
by chunk) and metatomic's ``metatomic.torch.o3.SymmetrizedModel.wrap`` (autograd through
the whole average), for bands L = 1..5.

    python benchmarks/bench_export_memory.py [--quick] [--json PATH] [--bands 1,2,3,4,5]
        [--chunk 8] [--threads 1] [--cap-mib 8000]

Grids: ``symplug.quadrature("O3", L)`` for symplug; ``max_angular_momentum_grid = 2L`` for
metatomic (the same band, 2L, that symplug's default "diagnosis" grid integrates); both
grid sizes are printed. Both wrappers evaluate ``--chunk`` copies per batch (metatomic's
``batch_size``). Structure: a rattled 108-atom fcc Cu cell (``--quick``: band 1 on the
4-atom cubic cell only). The calculator computes energy, forces and (periodic cell)
stress through its ordinary backward pass.

Each case runs in a fresh subprocess of this light parent (which imports no torch): it
builds and saves the wrapped model, loads it in a ``MetatomicCalculator``, makes one
warm-up call (TorchScript's profiling run), then one timed call that starts from a trimmed
heap (glibc ``malloc_trim(0)``) with the peak-RSS counter reset (``/proc/self/clear_refs``).
Reported: the call's peak RSS above the RSS just before it ("peak MiB"), the process's
RSS high-water mark during the call ("HWM MiB") and the wall time. A watchdog thread ends
a case whose RSS grows more than ``--cap-mib`` above its resting RSS (the machine is
shared); such a case is reported as "> cap". Linux with glibc only.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _rss import worker_env  # benchmarks/_rss.py, beside this script

WORKER = textwrap.dedent('''
    import json, os, sys, threading, time
    import torch
    from ase.build import bulk
    from ase.calculators.calculator import all_changes
    from metatomic.torch import load_atomistic_model
    from metatomic_ase import MetatomicCalculator
    import symplug
    from _rss import start_call, status  # benchmarks/_rss.py, on PYTHONPATH
    model, tool, band, structure, chunk, threads, cap, folder = sys.argv[1:9]
    band, chunk, cap = int(band), int(chunk), float(cap)
    torch.set_num_threads(int(threads))

    path = os.path.join(folder, f"{tool}-{band}.pt")
    if tool == "symplug":
        from symplug_atoms.symmetrized_export import export_symmetrized
        grid = symplug.quadrature("O3", band)
        export_symmetrized(model, grid, path, chunk_size=chunk)
        copies = grid.size
    else:
        from metatomic.torch.o3 import SymmetrizedModel
        wrapped = SymmetrizedModel.wrap(load_atomistic_model(model),
                                        max_angular_momentum_grid=2 * band, batch_size=chunk)
        # proper rotations of the wrapper (private buffer), times {E, I}
        copies = 2 * wrapped.module._rotation_weights.numel()
        wrapped.save(path)
    calc = MetatomicCalculator(path)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    if structure == "bulk108":
        atoms = atoms * (3, 3, 3)
    atoms.rattle(0.02, seed=0)
    props = ["energy", "forces"]

    rest = status("VmRSS")
    def watchdog():  # end the case if it grows past the cap
        while True:
            if status("VmRSS") - rest > cap:
                print(json.dumps({"aborted": True, "copies": copies, "rest_mib": rest}),
                      flush=True)
                os._exit(0)
            time.sleep(0.002)
    threading.Thread(target=watchdog, daemon=True).start()

    calc.calculate(atoms.copy(), props, all_changes)  # warm-up: TorchScript profiling run
    rest = start_call()
    start = time.perf_counter()
    calc.calculate(atoms.copy(), props, all_changes)
    seconds = time.perf_counter() - start
    hwm = status("VmHWM")
    print(json.dumps({"aborted": False, "copies": copies, "seconds": seconds,
                      "peak_mib": hwm - rest, "hwm_mib": hwm, "rest_mib": rest,
                      "energy": float(calc.results["energy"])}), flush=True)
''')


def export_pet_cu(folder: Path) -> Path:
    from symplug_atoms import load_model  # imports torch in a child only
    from symplug_atoms.export import export_metatomic

    return export_metatomic(load_model("pet-cu"), folder / "pet-cu.pt")


def run_case(model: Path, tool: str, band: int, structure: str, args, folder: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(model), tool, str(band), structure,
                          str(args.chunk), str(args.threads), str(args.cap_mib), folder],
                         check=True, capture_output=True, text=True, env=worker_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(r: dict, key: str, spec: str) -> str:
    if r["aborted"]:
        return "> cap" if key != "seconds" else "-"
    return format(r[key], spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="band 1 on the 4-atom cell only (seconds)")
    parser.add_argument("--bands", default="1,2,3,4,5")
    parser.add_argument("--chunk", type=int, default=8,
                        help="copies per batch, for both wrappers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap-mib", type=float, default=8000.0,
                        help="end a case whose RSS grows more than this above its rest")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bands = [1] if args.quick else [int(b) for b in args.bands.split(",")]
    structure = "cubic4" if args.quick else "bulk108"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                               f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                               "import bench_export_memory as b; "
                               f"print(b.export_pet_cu(Path({tmp!r})))"],
                              check=True, capture_output=True, text=True)
        model = Path(proc.stdout.strip().splitlines()[-1])
        for band in bands:
            ours = run_case(model, "symplug", band, structure, args, tmp)
            theirs = run_case(model, "metatomic", band, structure, args, tmp)
            rows.append({"band": band, "structure": structure, "symplug": ours,
                         "metatomic": theirs})
            print(f"band {band}: symplug {ours}, metatomic {theirs}", file=sys.stderr)
    print(f"structure: {structure}; chunk {args.chunk}; {args.threads} thread(s); "
          f"cap {args.cap_mib:.0f} MiB\n")
    print("| band L | grid symplug | grid metatomic | symplug peak MiB | symplug HWM MiB "
          "| symplug s | metatomic peak MiB | metatomic HWM MiB | metatomic s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["symplug"], r["metatomic"]
        print(f"| {r['band']} | {a['copies']} | {b['copies']} | {fmt(a, 'peak_mib', '.0f')} | "
              f"{fmt(a, 'hwm_mib', '.0f')} | {fmt(a, 'seconds', '.2f')} | "
              f"{fmt(b, 'peak_mib', '.0f')} | {fmt(b, 'hwm_mib', '.0f')} | "
              f"{fmt(b, 'seconds', '.2f')} |")
    ratios = {}
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        for tool in ("symplug", "metatomic"):
            a, b = first[tool], last[tool]
            if a["aborted"] or b["aborted"]:
                ratios[tool] = None
                print(f"{tool}: peak ratio L={last['band']} / L={first['band']}: "
                      f"n/a (a case exceeded the cap)")
                continue
            ratios[tool] = {"peak": b["peak_mib"] / a["peak_mib"],
                            "hwm": b["hwm_mib"] / a["hwm_mib"]}
            print(f"{tool}: peak ratio L={last['band']} / L={first['band']}: "
                  f"{ratios[tool]['peak']:.2f}x (call's peak above rest), "
                  f"{ratios[tool]['hwm']:.2f}x (process HWM)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"structure": structure, "chunk": args.chunk,
                                         "threads": args.threads, "cap_mib": args.cap_mib,
                                         "rows": rows, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()

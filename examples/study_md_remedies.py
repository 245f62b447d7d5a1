"""MD remedies for the reference PET, compared over seeds (issue 13, item 4).

    python examples/study_md_remedies.py --out docs/study/md_remedies \\
        --structures ico13 --temperatures 600,900 --seeds 0,1,2 \\
        --variants raw,projected --ps 10

For every structure, initial temperature and seed: NVE runs (velocity Verlet, 2 fs)
of ``pet-ref`` (the exported metatomic model, float32 as trained; ``--model``: another
model, e.g. a variant of it trained with a minimal bias) in the variants of
``symplug md`` from the same velocities, with EMT as the reference. Each run's summary
is written as it completes (``OUT/runs/<structure>_<T>K_seed<s>.json``, atomically), so
an interrupted study resumes where it stopped; rerunning with more seeds or variants
adds only what is missing. ``OUT/study.json`` and ``OUT/study.md`` hold, per structure,
temperature and variant, the mean and standard deviation over the seeds of the final
|L| and its ratio to the raw model's and the RMS net torque (isolated structures; a
periodic cell conserves no angular momentum, "-" there), the energy drift, the mean
temperature, the RMS difference of g(r) from EMT's run (the same start), the cost per
step relative to raw and in ms (CPU time of one torch thread; wall time for older runs). ``--quick``: 20 steps of ico13 and bulk32, one seed, raw and
projected (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase.calculators.emt import EMT

import symplug_atoms
from symplug.result import write_bytes, write_json
from study_common import mean_std, pm
from symplug_atoms.md import compare, structure_named, variants

COLUMNS = ("angular_momentum_final", "torque_rms_eV", "energy_drift_meV_per_atom_per_ps",
           "completed_fraction", "temperature_mean_K", "rdf_rms_difference")
# a periodic cell conserves no angular momentum: |L| and the net torque mean nothing there
ISOLATED_ONLY = ("angular_momentum_final", "torque_rms_eV")


def run_one(structure: str, temperature: float, seed: int, names: list[str], steps: int,
            degree: int, path: Path, model: str = "pet-ref") -> dict:
    """The summary table of one configuration, from ``path`` if it holds every variant
    of the same ``model``."""
    if path.exists():
        saved = json.loads(path.read_text())
        if (all(n in saved["table"] for n in names) and saved["steps"] == steps
                and saved.get("model", "pet-ref") == model):
            return saved
    calc = symplug_atoms.load_model(model).calculator()
    warm = structure_named(structure)
    warm.calc = calc
    for k in range(3):  # TorchScript's first calls optimise: not part of any run's cost
        warm.rattle(0.01, seed=k)
        warm.get_forces()
    calcs = variants(calc, names, degree=degree, interval=4, seed=seed)
    start = time.perf_counter()
    result = compare(structure_named(structure), calcs, steps=steps, timestep_fs=2.0,
                     temperature_K=temperature, seed=seed, reference=EMT(), progress=False)
    summary = {k: v for k, v in result.items() if k != "runs"}
    summary.update(structure=structure, seconds=time.perf_counter() - start, degree=degree,
                   model=model)
    write_json(summary, path)
    return summary


def _cost(row: dict) -> float:
    """A run's cost: its CPU time (one torch thread), else (older runs) its wall time."""
    return row.get("cpu_seconds") or row["seconds"]


def table(results: list[dict], names: list[str],
          cost_seeds: set[int] | None = None) -> tuple[list[dict], str]:
    """Rows of mean and spread over seeds per (structure, temperature, variant); the cost
    per step (CPU time, or the wall time of runs that did not record it) from the runs of
    ``cost_seeds`` only (default: all): a wall time beside other jobs is no cost."""
    rows, groups = [], {}
    for r in results:
        groups.setdefault((r["structure"], r["temperature_K"]), []).append(r)
    for (structure, temperature), runs in sorted(groups.items()):
        for name in names:
            have = [r for r in runs if name in r["table"]]
            if not have:
                continue
            row = {"structure": structure, "temperature_K": temperature, "variant": name,
                   "seeds": [r["seed"] for r in have]}
            for column in COLUMNS:
                values = np.array([r["table"][name].get(column) for r in have], dtype=float)
                undefined = (column in ISOLATED_ONLY and have[0]["periodic"]) \
                    or not np.isfinite(values).all()
                row[column] = None if undefined else mean_std(values)
            cost = np.array([_cost(r["table"][name]) / _cost(r["table"]["raw"])
                             for r in have if "raw" in r["table"]
                             and (cost_seeds is None or r["seed"] in cost_seeds)])
            row["cost_vs_raw"] = mean_std(cost) if cost.size else None
            per_step = np.array([_cost(r["table"][name]) / r["steps"] * 1000 for r in have
                                 if cost_seeds is None or r["seed"] in cost_seeds])
            row["cpu_ms_per_step"] = mean_std(per_step) if per_step.size else None
            ratio = np.array([r["table"][name]["angular_momentum_final"]
                              / r["table"]["raw"]["angular_momentum_final"]
                              for r in have if "raw" in r["table"]
                              and r["table"]["raw"]["angular_momentum_final"]])
            row["L_final_vs_raw"] = mean_std(ratio) \
                if ratio.size and not have[0]["periodic"] else None
            rows.append(row)
    lines = ["| structure | T0 (K) | variant | seeds | final \\|L\\| (amu A^2/fs) | vs raw | "
             "RMS torque (eV) | energy drift (meV/atom/ps) | mean T (K) | g(r) RMS vs EMT | "
             "cost per step vs raw | ms per step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['structure']} | {row['temperature_K']:g} | {row['variant']} | "
                     f"{len(row['seeds'])} | {pm(row['angular_momentum_final'])} | "
                     f"{pm(row['L_final_vs_raw'])} | {pm(row['torque_rms_eV'])} | "
                     f"{pm(row['energy_drift_meV_per_atom_per_ps'])} | "
                     f"{pm(row['temperature_mean_K'], '{:.0f}')} | "
                     f"{pm(row['rdf_rms_difference'])} | {pm(row['cost_vs_raw'], '{:.2f}')} | "
                     f"{pm(row['cpu_ms_per_step'], '{:.1f}')} |")
    return rows, "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="pet-ref",
                        help="the model: a shipped name or a metatomic .pt (one per --out)")
    parser.add_argument("--structures", default="ico13")
    parser.add_argument("--temperatures", default="600,900")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="raw,projected")
    parser.add_argument("--ps", type=float, default=10.0, help="NVE length in ps (2 fs steps)")
    parser.add_argument("--degree", type=int, default=2, help="band of the symmetrised variants")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cost-seeds", default=None,
                        help="seeds whose runs give the cost per step (default: all); leave "
                             "out older runs, without CPU time, made beside other jobs")
    parser.add_argument("--quick", action="store_true",
                        help="20 steps of ico13 and bulk32, one seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.structures, args.temperatures, args.seeds, args.variants = "ico13,bulk32", "600", \
            "0", "raw,projected"
    names = args.variants.split(",")
    if "raw" not in names:
        names.insert(0, "raw")
    steps = 20 if args.quick else int(round(args.ps * 1000 / 2.0))
    start = time.perf_counter()
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    results = []
    for structure in args.structures.split(","):
        for temperature in (float(t) for t in args.temperatures.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                path = args.out / "runs" / f"{structure}_{temperature:g}K_seed{seed}.json"
                results.append(run_one(structure, temperature, seed, names, steps,
                                       args.degree, path, args.model))
                print(f"{structure} {temperature:g} K seed {seed}: done", flush=True)
    known = sorted(args.out.glob("runs/*.json"))  # earlier invocations' runs too
    everything = [json.loads(p.read_text()) for p in known if not args.quick] or results
    all_names = sorted({n for r in everything for n in r["table"] if n != "reference"},
                       key=lambda n: (n != "raw", n))
    cost_seeds = None if args.cost_seeds is None else {int(x) for x in args.cost_seeds.split(",")}
    rows, text = table(everything, all_names, cost_seeds)
    write_json({"kind": "md_remedies", "model": args.model, "steps": steps, "timestep_fs": 2.0,
                "rows": rows, "seconds": time.perf_counter() - start}, args.out / "study.json")
    write_bytes(text.encode(), args.out / "study.md")
    print(text)


if __name__ == "__main__":
    main()

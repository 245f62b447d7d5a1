"""``symplug md``: time steps, temperatures, step counts, intervals, variants and
structures out of range (issue 17); each refused before any dynamics runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import ERROR, RESULT, Case
from .atoms_files import cluster, crystal, with_cell, write


def _md(*extra: str, structure: str = "ico13") -> list[str]:
    return ["md", "atoms", "--model", "emt", "--structure", structure, "--steps", "2",
            "--variants", "raw", "--out", "{tmp}/md", "--quiet", *extra]


def _structure_file(make, name: str):
    return lambda tmp: _md(structure=write(tmp, name, make()))


def _nan_cluster():
    atoms = cluster()
    atoms.positions[2] = np.nan
    return atoms


def _near_singular():
    return with_cell(crystal(), [[3.61, 0, 0], [0, 3.61, 0], [0.5, 0.5, 1e-6]])


def _cold_run(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "md" / "md.json").read_text())
    assert result["temperature_K"] == 0.0 and result["table"]["raw"]["completed_fraction"] == 1.0


def _library(**changes):
    def call(tmp: Path):
        from symplug_atoms.md import MDComparison, run_md

        options = {"model": "emt", "structure": "ico13", "steps": 2, "timestep_fs": 1.0,
                   "temperature_K": 300.0, "degree": 1, "variants": ("raw",), "interval": 2,
                   "seed": 0, "progress": False, **changes}
        return run_md(MDComparison(**options))
    return call


CASES = [
    Case("md/timestep-negative", "md", ERROR, r"argument --timestep: must be > 0, got -1",
         argv=_md("--timestep", "-1")),
    Case("md/timestep-zero", "md", ERROR, r"argument --timestep: must be > 0, got 0",
         argv=_md("--timestep", "0")),
    Case("md/timestep-nan", "md", ERROR, r"argument --timestep: must be finite",
         argv=_md("--timestep", "nan")),
    Case("md/timestep-above-limit", "md", ERROR, r"argument --timestep: must be <= 10, got 50 "
         r"\(NVE of atoms is unstable", argv=_md("--timestep", "50")),
    Case("md/temperature-negative", "md", ERROR, r"argument --temperature: must be >= 0, got -100",
         argv=_md("--temperature", "-100")),
    Case("md/temperature-inf", "md", ERROR, r"argument --temperature: must be finite",
         argv=_md("--temperature", "inf")),
    Case("md/steps-zero", "md", ERROR, r"argument --steps: must be >= 1, got 0",
         argv=_md("--steps", "0")),
    Case("md/interval-zero", "md", ERROR, r"argument --interval: must be >= 1",
         argv=_md("--interval", "0")),
    Case("md/degree-zero", "md", ERROR, r"argument --degree: must be >= 1",
         argv=_md("--degree", "0")),
    Case("md/seed-negative", "md", ERROR, r"argument --seed: must be >= 0",
         argv=_md("--seed", "-3")),
    Case("md/unknown-variant", "md", ERROR, r"unknown MD variant 'symmetrised'; choose from raw",
         argv=_md("--variants", "raw,symmetrised")),
    Case("md/empty-variant", "md", ERROR, r"unknown MD variant ''",
         argv=_md("--variants", "raw,")),
    Case("md/unknown-structure", "md", ERROR, r"ico14: no such file",
         argv=_md(structure="ico14")),
    Case("md/structure-nan-position", "md", ERROR, r"nan\.extxyz frame 0: field 'positions' holds NaN",
         argv=_structure_file(_nan_cluster, "nan.extxyz")),
    Case("md/structure-near-singular-cell", "md", ERROR, r"cell\.extxyz frame 0: .*nearly singular",
         argv=_structure_file(_near_singular, "cell.extxyz"), timeout=20),
    Case("md/zero-kelvin-is-fine", "md", RESULT, argv=_md("--temperature", "0"), check=_cold_run),
    Case("md/library-timestep-inf", "md", ERROR, r"MD timestep must be in \(0, 10\] fs, got inf",
         call=_library(timestep_fs=float("inf"))),
    Case("md/library-temperature-nan", "md", ERROR, r"MD temperature must be finite and >= 0 K",
         call=_library(temperature_K=float("nan"))),
    Case("md/library-steps-zero", "md", ERROR, r"MD steps must be >= 1, got 0",
         call=_library(steps=0)),
]

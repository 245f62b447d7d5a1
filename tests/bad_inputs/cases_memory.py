"""The memory budget (issue 17): sizes refused as one line, requests too large for the
budget refused before any model call with their size and an estimate, and a run under a
small budget giving the numbers of an unbounded one."""

from __future__ import annotations

import json
from pathlib import Path

from . import ERROR, RESULT, Case
from .atoms_files import FRAMES, QUICK

JETS = Path(__file__).resolve().parents[2] / "plugins/symplug_jets/data/tagger_test.root"


def _atoms(*extra: str) -> list[str]:
    return ["diagnose", "atoms", "--model", "emt", "--data", str(FRAMES), "--max-samples", "1",
            *QUICK, *extra]


def _same_numbers(tmp: Path, out: str) -> None:
    """A small budget splits the orbit into smaller calls; the numbers stay the same."""
    from symplug.cli import main

    assert main(_atoms("--json", str(tmp / "free.json"))) == 0
    small = json.loads((tmp / "result.json").read_text())["outputs"]
    free = json.loads((tmp / "free.json").read_text())["outputs"]
    for name in free:
        a, b = small[name]["equivariance_rmse"], free[name]["equivariance_rmse"]
        assert abs(a - b) <= 1e-12 * max(abs(b), 1e-30), (name, a, b)


SIZE_ERROR = r"--max-memory: memory size"

CASES = [
    Case("memory/size-garbage", "memory", ERROR, SIZE_ERROR, argv=_atoms("--max-memory", "lots")),
    Case("memory/size-below-64MiB", "memory", ERROR, r"at least 64 MiB",
         argv=_atoms("--max-memory", "1M")),
    Case("memory/size-negative", "memory", ERROR, SIZE_ERROR, argv=_atoms("--max-memory=-8G")),
    Case("memory/size-unknown-unit", "memory", ERROR, SIZE_ERROR,
         argv=_atoms("--max-memory", "8X")),
    Case("memory/size-nan", "memory", ERROR, SIZE_ERROR, argv=_atoms("--max-memory", "nanG")),
    Case("memory/budget-below-what-the-process-holds", "memory", ERROR,
         r"of the memory budget \(64 MiB; --max-memory\) is left",
         argv=_atoms("--max-memory", "64M")),
    Case("memory/gauss-legendre-degree-1000", "memory", ERROR,
         r"gauss-legendre grid of SO3 at degree 1000 \(4008005001 elements\) would need about",
         argv=["quadrature", "--group", "SO3", "--kind", "gauss-legendre", "--degree", "1000"]),
    Case("memory/o3-gauss-legendre-degree-400", "memory", ERROR,
         r"gauss-legendre grid of O3 at degree 400 .* would need about",
         argv=["quadrature", "--group", "O3", "--kind", "gauss-legendre", "--degree", "400"]),
    Case("memory/so2-degree-100000-spectral-tables", "memory", ERROR,
         r"spectral tables of the equispaced grid \(200001 elements x 200001 basis functions",
         argv=["diagnose", "jets", "--model", "mass", "--data", str(JETS), "--group", "SO2",
               "--degree", "100000", "--quiet"]),
    Case("memory/so3-gauss-legendre-degree-60-atoms", "memory", ERROR,
         r"(grid|spectral tables) .* would need about",
         argv=_atoms("--kind", "gauss-legendre", "--degree", "200")),
    Case("memory/finetune-max-memory-garbage", "memory", ERROR, SIZE_ERROR,
         argv=["finetune", "atoms", "--model", "pet-cu", "--data", str(FRAMES), "--out",
               "{tmp}/run", "--max-memory", "much"]),
    Case("memory/track-max-memory-below-64MiB", "memory", ERROR, r"at least 64 MiB",
         argv=["track", "atoms", "--checkpoints", "{tmp}/none.pt", "--data", str(FRAMES),
               "--out", "{tmp}/track", "--max-memory", "10M"]),
    Case("memory/small-budget-same-numbers", "memory", RESULT,
         argv=_atoms("--max-memory", "3G", "--chunk-size", "2", "--json", "{tmp}/result.json"),
         check=_same_numbers),
]

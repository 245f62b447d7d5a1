"""Every benchmark in benchmarks/ still runs: its ``--quick`` mode (the same code paths on
tiny inputs) in a subprocess, from a temporary folder, its output in that folder. Only the
exit status and the shape of the JSON it writes are checked, never a timing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # s: a hang fails the test instead of the whole run

# script, extra arguments ({out}: a path in tmp_path), modules it needs, the JSON file
# (relative to tmp_path) and its top-level keys
CASES = [
    pytest.param("bench_jets.py", ["--json", "{out}/jets.json"], ["uproot"], "jets.json",
                 {"benchmark", "jets", "group", "degree", "grid_size", "seconds",
                  "ratio_to_inference"}, id="jets"),
    pytest.param("bench_grids.py", ["--json", "{out}/grids.json"], ["metatomic_ase", "ase"],
                 "grids.json", {"symmetrized", "diagnosis"}, id="grids"),
    pytest.param("plot_training.py", ["--out", "{out}/figure/training.png"], ["matplotlib"],
                 None, None, id="plot_training"),
    pytest.param("bench_engine.py", ["--json", "{out}/engine.json"], ["e3nn"], "engine.json",
                 {"machine", "config", "overhead", "breakdown_s", "profile", "e3nn_compare",
                  "haar", "quadrature", "memory"}, id="engine", marks=pytest.mark.slow),
    pytest.param("bench_dataparallel.py", ["--out", "{out}/dataparallel.json"],
                 ["distributed", "uproot", "ase"], "dataparallel.json",
                 {"benchmark", "quick", "rows"}, id="dataparallel", marks=pytest.mark.slow),
    pytest.param("bench_ddp.py", ["--json", "{out}/ddp.json"], ["ase"], "ddp.json",
                 {"benchmark", "quick", "frames", "batch", "epochs", "rows"}, id="ddp",
                 marks=pytest.mark.slow),
    pytest.param("bench_vector.py", ["--json", "{out}/vector.json"], ["vector"], "vector.json",
                 {"jets", "particles", "repeat", "rows"}, id="vector"),
    pytest.param("bench_export_memory.py", ["--json", "{out}/export.json"],
                 ["metatomic_ase", "ase"], "export.json",
                 {"structure", "chunk", "threads", "cap_mib", "rows"}, id="export_memory",
                 marks=pytest.mark.slow),
    pytest.param("bench_memory.py", ["--json", "{out}/memory.json"], ["ase", "uproot"],
                 "memory.json", {"benchmark", "quick", "threads", "rows", "jets_peak_ratio"},
                 id="memory", marks=pytest.mark.slow),
    pytest.param("bench_symmetrized.py", ["--json", "{out}/symmetrized.json"],
                 ["metatomic_ase", "ase"], "symmetrized.json",
                 {"l_max", "chunks", "threads", "rows"}, id="symmetrized",
                 marks=pytest.mark.slow),
]

# Scripts in benchmarks/ not run here, with the reason; every other script must be in
# CASES, so that a new benchmark comes with its quick test.
NOT_COVERED: dict[str, str] = {}


def test_every_benchmark_is_covered():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")
               if not p.name.startswith("_")}  # _rss.py: a helper module, not a benchmark
    covered = {c.values[0] for c in CASES}
    assert covered <= scripts, covered - scripts
    assert scripts - set(NOT_COVERED) <= covered, scripts - set(NOT_COVERED) - covered


@pytest.mark.parametrize("script, extra, needs, written, keys", CASES)
def test_quick_mode_runs(tmp_path, script, extra, needs, written, keys):
    for module in needs:
        pytest.importorskip(module)
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--quick",
           *(a.format(out=tmp_path) for a in extra)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    if script == "plot_training.py":
        assert (tmp_path / "figure" / "training.png").stat().st_size > 0
    if written is not None:
        data = json.loads((tmp_path / written).read_text())
        assert keys <= set(data), keys - set(data)

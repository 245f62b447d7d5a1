"""Benchmarks of symplug's orbit engine on CPU (float64 unless noted).

Run from the repository root::

    python benchmarks/bench_engine.py [--quick] [--json results.json]

It measures, and prints as Markdown tables:

1. **Engine overhead.** For a small e3nn point-cloud network (all-pairs
   convolution with l <= 2 spherical harmonics, radial MLP weights from
   ``e3nn.nn.FullyConnectedNet``, a gated nonlinearity and ``o3.Linear`` layers
   producing ``"0e+1o+2e"``) and a plain MLP on flattened coordinates, the time
   of (a) the model alone on every rotated copy of the O3 degree-4 Lebedev grid,
   in the chunks of 64 the engine makes (inputs rotated beforehand), and (b)
   :func:`symplug.evaluate_orbit` with the output (metrics A and B) and one
   captured hidden layer (metric B), ``lmax=4``. Overhead = (b - a) / a; the
   project goal is <= 5 %. A per-part breakdown of the engine's own work and a
   cProfile of (b) say where the overhead goes.
2. **Comparisons.** ``e3nn.util.test.equivariance_error`` (one random rotation
   per parity/translation case, max componentwise error) against symplug's A on
   the degree-4 grid (RMS deviation over the whole group, deterministic);
   :func:`symplug.haar` against ``scipy.spatial.transform.Rotation.random``;
   construction time of :func:`symplug.quadrature` for degrees 2, 4, 8, 16.
3. **Peak memory.** ``evaluate_orbit`` (output plus a captured hidden layer,
   ``lmax=2``, ``chunk_size=64``) on O3 grids about 10x apart in size, each in a
   fresh subprocess; peak RSS (``ru_maxrss``) minus that of a baseline
   subprocess that imports everything and builds the model and grid but does not
   evaluate. The goal is a flat increment (within 20 %). Unchunked runs
   (``chunk_size`` = grid size) are a contrast showing that the measurement
   resolves growth.

Timings use ``torch.set_num_threads(1)`` and the best of ``--repeat`` runs.
``--quick`` is a smoke test of every part on small settings (O3 Lebedev degree 2 with
``lmax=2``, one repeat, two small memory grids against one baseline, default allocator
only, no unchunked contrast); its figures mean nothing.
Nothing here is hard-coded: every figure printed is measured by this run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import numpy as np
import scipy
import torch

torch.set_default_dtype(torch.float64)  # e3nn builds its parameters in the default dtype

import e3nn  # noqa: E402
from e3nn import o3  # noqa: E402
from e3nn.math import soft_one_hot_linspace  # noqa: E402
from e3nn.nn import FullyConnectedNet, Gate  # noqa: E402
from e3nn.util.test import equivariance_error as e3nn_equivariance_error  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

import symplug  # noqa: E402
from symplug.equivariance import EquivarianceAccumulator  # noqa: E402
from symplug.orbit import LayerCapture  # noqa: E402
from symplug.quadrature import Grid  # noqa: E402
from symplug.representations import representation  # noqa: E402
from symplug.spectra import SpectrumAccumulator  # noqa: E402
from symplug.testing import rotate_points  # noqa: E402

OUTPUT_REP = "0e+1o+2e"
OUTPUT = "y"


# ----------------------------------------------------------------------------- models


class PointCloudNet(torch.nn.Module):
    """One-interaction e3nn network on a point cloud of fixed size (NequIP-like).

    Input (B, N, 3) positions; all ordered pairs i != j are edges. Messages are
    ``FullyConnectedTensorProduct(species, Y^{l<=2}(r_ij))`` with per-edge
    weights from a radial ``FullyConnectedNet``; summed onto nodes, gated,
    mixed by ``o3.Linear`` (the captured hidden layer ``"mix"``, (B, N, F)),
    and read out per node to ``"0e+1o+2e"``, averaged over nodes: ``{"y": (B, 9)}``.
    """

    hidden_layer = "mix"

    def __init__(self, n_points: int = 24, n_species: int = 4, mul: int = 8,
                 n_basis: int = 8, cutoff: float = 5.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        src, dst = torch.meshgrid(torch.arange(n_points), torch.arange(n_points), indexing="ij")
        keep = src != dst
        self.register_buffer("src", src[keep])
        self.register_buffer("dst", dst[keep])
        species = torch.randint(n_species, (n_points,), generator=gen)
        self.register_buffer("attrs", torch.nn.functional.one_hot(species, n_species).double())
        self.n_basis, self.cutoff, self.norm = n_basis, cutoff, (n_points - 1) ** 0.5
        self.irreps_sh = o3.Irreps.spherical_harmonics(2)
        gate = Gate(f"{mul}x0e", [torch.nn.functional.silu], f"{2 * mul}x0e", [torch.sigmoid],
                    f"{mul}x1o+{mul}x2e")
        self.conv = o3.FullyConnectedTensorProduct(f"{n_species}x0e", self.irreps_sh,
                                                   gate.irreps_in, shared_weights=False)
        self.radial = FullyConnectedNet([n_basis, 16, self.conv.weight_numel],
                                        torch.nn.functional.silu)
        self.gate = gate
        self.mix = o3.Linear(gate.irreps_out, gate.irreps_out)
        self.readout = o3.Linear(gate.irreps_out, OUTPUT_REP)

    def forward(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        vec = pos[:, self.dst] - pos[:, self.src]
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        emb = soft_one_hot_linspace(vec.norm(dim=-1), 0.0, self.cutoff, self.n_basis,
                                    basis="smooth_finite", cutoff=True) * self.n_basis ** 0.5
        msg = self.conv(self.attrs[self.src].expand(pos.shape[0], -1, -1), sh, self.radial(emb))
        node = torch.zeros(pos.shape[0], pos.shape[1], msg.shape[-1], dtype=msg.dtype)
        node = node.index_add_(1, self.dst, msg) / self.norm
        hidden = self.mix(self.gate(node))
        return {OUTPUT: self.readout(hidden).mean(dim=1)}


class PlainMLP(torch.nn.Module):
    """Unconstrained MLP on flattened coordinates (B, N*3) -> {"y": (B, 9)}; hidden layer ``"hidden"``."""

    hidden_layer = "hidden"

    def __init__(self, n_points: int = 24, width: int = 128, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = torch.nn.Linear(3 * n_points, width)
        self.hidden = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(width, width),
                                          torch.nn.SiLU())
        self.out = torch.nn.Linear(width, 9)

    def forward(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        return {OUTPUT: self.out(self.hidden(self.inp(pos.flatten(1))))}


def build_model(name: str, n_points: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model ``name`` ("e3nn" or "mlp") and a fixed random point cloud (N, 3)."""
    model = PointCloudNet(n_points) if name == "e3nn" else PlainMLP(n_points)
    sample = 1.2 * torch.randn(n_points, 3, generator=torch.Generator().manual_seed(1))
    return model, sample


MODEL_LABELS = {"e3nn": "e3nn point-cloud net", "mlp": "plain MLP"}


# ----------------------------------------------------------------------------- helpers


def best_of(fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
            ) -> float:
    """Best time (s) of ``repeat`` calls of ``fn`` on ``clock`` (default wall time)."""
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def best_of_both(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (``time.process_time``) of ``repeat`` calls.

    CPU time of this process is insensitive to being descheduled when other jobs
    share the cores; with one torch thread it equals wall time on an idle machine.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus)


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    """Seconds in s, ms or us with three significant digits or so."""
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, torch threads and library versions."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "e3nn": e3nn.__version__, "scipy": scipy.__version__,
            "numpy": np.__version__, "symplug": symplug.__version__}


# ----------------------------------------------------------------------------- 1. overhead


@dataclass
class OverheadCase:
    """Best-of timings of (a) the model alone and (b) ``evaluate_orbit``, wall and CPU."""

    model: str
    n_points: int
    grid_size: int
    chunks: int
    model_s: float
    engine_s: float
    model_cpu_s: float
    engine_cpu_s: float
    model_inference_cpu_s: float

    @property
    def overhead(self) -> float:
        return (self.engine_s - self.model_s) / self.model_s

    @property
    def overhead_cpu(self) -> float:
        return (self.engine_cpu_s - self.model_cpu_s) / self.model_cpu_s

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "n_points": self.n_points, "grid_size": self.grid_size,
                "chunks": self.chunks, "model_s": self.model_s, "engine_s": self.engine_s,
                "overhead_s": self.engine_s - self.model_s,
                "engine_cost_per_copy_us": 1e6 * (self.engine_s - self.model_s) / self.grid_size,
                "overhead_fraction": self.overhead, "model_cpu_s": self.model_cpu_s,
                "engine_cpu_s": self.engine_cpu_s,
                "engine_cpu_cost_per_copy_us":
                    1e6 * (self.engine_cpu_s - self.model_cpu_s) / self.grid_size,
                "overhead_fraction_cpu": self.overhead_cpu,
                "model_inference_mode_cpu_s": self.model_inference_cpu_s}


def run_engine(model: torch.nn.Module, sample: torch.Tensor, grid: Grid, lmax: int,
               chunk: int, layers: bool = True) -> symplug.orbit.OrbitResult:
    """``evaluate_orbit`` with the output ``"y"`` and (``layers``) the model's hidden layer."""
    return symplug.evaluate_orbit(model, sample, rotate_points, grid, outputs={OUTPUT: OUTPUT_REP},
                                  layers=[model.hidden_layer] if layers else [], lmax=lmax,
                                  chunk_size=chunk)


def bench_overhead(name: str, n_points: int, grid: Grid, lmax: int, chunk: int,
                   repeat: int) -> OverheadCase:
    """(a) the model on the engine's own batches (rotated beforehand) vs (b) the engine."""
    model, sample = build_model(name, n_points)
    batches = [rotate_points(sample, grid.matrices[index]) for index in grid.chunks(chunk)]

    def model_alone() -> None:
        for batch in batches:
            model(batch)

    def engine() -> None:
        run_engine(model, sample, grid, lmax, chunk)

    def model_inference() -> None:  # for reference: the engine itself keeps autograd on
        with torch.inference_mode():
            model_alone()

    runs = {"model": model_alone, "engine": engine, "inference": model_inference}
    for fn in runs.values():
        fn()  # warm-up (lazy initialisation, caches)
    best = {key: [float("inf")] * 2 for key in runs}
    for _ in range(repeat):  # interleaved so that drifts of the machine hit all three
        for key, fn in runs.items():
            best[key] = [min(old, new) for old, new in zip(best[key], best_of_both(fn, 1))]
    return OverheadCase(name, n_points, grid.size, len(batches), best["model"][0],
                        best["engine"][0], best["model"][1], best["engine"][1],
                        best["inference"][1])


BREAKDOWN_TOTAL = "engine work per pass, sum of the four whole parts (action, A, B output, B layer)"
BREAKDOWN_TABLES = "one-time tables per grid (rho(g) + Wigner basis), shared by all samples"


def engine_breakdown(name: str, n_points: int, grid: Grid, lmax: int, chunk: int,
                     repeat: int) -> dict[str, float]:
    """Time each part of the engine's own work over one pass of the grid, on the
    model's precomputed outputs and hidden activations (the model is not timed).

    The accumulators take rho(g) and the Wigner basis from tables cached on the
    grid (``Grid.per_element``); the "whole" parts run with the tables built,
    as every sample after the first does, and the table build is timed apart.
    Labels starting with two spaces are sub-parts of the line above them.
    """
    model, sample = build_model(name, n_points)
    layer = model.hidden_layer
    index = list(grid.chunks(chunk))
    outs, acts = [], []
    with LayerCapture(model, [layer]) as capture:
        for ix in index:
            outs.append(model(rotate_points(sample, grid.matrices[ix]))[OUTPUT].detach())
            acts.append(capture.values.pop(layer).detach())
    rep = representation(OUTPUT_REP)
    probe = SpectrumAccumulator(grid, lmax)
    layer_u = [a.reshape(ix.stop - ix.start, -1) for ix, a in zip(index, acts)]
    basis = probe._basis(grid.matrices) * grid.weights[:, None]

    def accumulate_a(g: Grid) -> None:
        acc = EquivarianceAccumulator(g, rep, name=OUTPUT)
        for ix, value in zip(index, outs):
            acc.update(value, ix)
        acc.result()

    def accumulate_b(g: Grid, values: list[torch.Tensor]) -> None:
        acc = SpectrumAccumulator(g, lmax)
        for ix, value in zip(index, values):
            acc.update(value, ix)
        acc.result()

    def first_pass() -> None:  # a fresh grid object: its tables are built on the way
        fresh = replace(grid, _cache={})
        accumulate_a(fresh)
        accumulate_b(fresh, outs)
        accumulate_b(fresh, acts)

    parts: dict[str, Callable[[], Any]] = {
        "action: rotate_points": lambda: [rotate_points(sample, grid.matrices[ix]) for ix in index],
        "A: EquivarianceAccumulator on output, whole": lambda: accumulate_a(grid),
        "B: SpectrumAccumulator on output, whole": lambda: accumulate_b(grid, outs),
        "B: SpectrumAccumulator on hidden layer, whole": lambda: accumulate_b(grid, acts),
        "  u^T @ basis matmul, hidden layer":
            lambda: [u.T @ basis[ix] for u, ix in zip(layer_u, index)],
        f"  rho(g) table for {OUTPUT_REP}, whole grid (Representation.matrices)":
            lambda: rep.matrices(grid.matrices),
        f"  Wigner basis table D^0..D^{lmax}, whole grid (SpectrumAccumulator._basis)":
            lambda: probe._basis(grid.matrices),
        "first pass on a fresh grid (A + B output + B layer, tables built)": first_pass,
    }
    for fn in parts.values():
        fn()  # warm-up; also fills the grid's tables
    times = {label: best_of(fn, repeat, time.process_time) for label, fn in parts.items()}
    whole = ("action", "A:", "B:")
    times[BREAKDOWN_TOTAL] = sum(v for k, v in times.items() if k.startswith(whole))
    times[BREAKDOWN_TABLES] = sum(v for k, v in times.items() if "table" in k and k.startswith("  "))
    return times


PROFILE_FILTER = (r"symplug/|e3nn/o3/_wigner|e3nn/o3/_irreps|e3nn/o3/_rotation|matrix_exp|"
                  r"block_diag|_call_impl")


def profile_engine(name: str, n_points: int, grid: Grid, lmax: int, chunk: int,
                   lines: int = 30) -> str:
    """cProfile of one ``evaluate_orbit`` call (after a warm-up), by cumulative time,
    restricted to the engine, e3nn's Wigner code and the model call."""
    model, sample = build_model(name, n_points)
    run_engine(model, sample, grid, lmax, chunk)
    profiler = cProfile.Profile()
    profiler.enable()
    run_engine(model, sample, grid, lmax, chunk)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(PROFILE_FILTER, lines)
    text = stream.getvalue()
    head = text[:text.find("ncalls")].strip().splitlines()
    body = text[text.find("ncalls"):].rstrip()
    total = next((line.strip() for line in head if "function calls" in line), "")
    return (total + "\n\n" + body).replace(os.path.dirname(os.path.dirname(e3nn.__file__)) + "/", "")


# ----------------------------------------------------------------------------- 2. comparisons


def bench_e3nn_compare(name: str, n_points: int, grid: Grid, repeat: int,
                       spread_calls: int) -> dict[str, Any]:
    """e3nn's random-rotation test against symplug's A on a quadrature grid."""
    model, sample = build_model(name, n_points)

    def func(pos: torch.Tensor) -> torch.Tensor:
        return model(pos[None])[OUTPUT][0].detach()

    kwargs = dict(args_in=[sample], irreps_in=["cartesian_points"],
                  irreps_out=[o3.Irreps(OUTPUT_REP)])
    torch.manual_seed(0)
    e3nn_s = best_of(lambda: e3nn_equivariance_error(func, **kwargs), repeat)
    torch.manual_seed(0)
    calls = [e3nn_equivariance_error(func, **kwargs) for _ in range(spread_calls)]
    rotation_only = [max(float(v.max()) for k, v in c.items() if not k[1]) for c in calls]
    with_translation = [max(float(v.max()) for v in c.values()) for c in calls]
    symplug_s = best_of(lambda: symplug.evaluate_orbit(model, sample, rotate_points, grid,
                                                       outputs={OUTPUT: OUTPUT_REP}), repeat)
    result = symplug.evaluate_orbit(model, sample, rotate_points, grid,
                                    outputs={OUTPUT: OUTPUT_REP}).outputs[OUTPUT]
    scale = float(func(sample).abs().max())
    return {"model": name, "e3nn_s_per_call": e3nn_s, "e3nn_forward_calls": 8,
            "e3nn_max_err_rotation": rotation_only, "e3nn_max_err_all": with_translation,
            "symplug_s_per_call": symplug_s, "symplug_copies": grid.size,
            "symplug_rmse": result.rmse, "symplug_relative": result.relative,
            "output_max_abs": scale}


def bench_haar(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        scipy_s = best_of(lambda: Rotation.random(n, random_state=rng).as_matrix(), repeat)
        scipy_t = best_of(lambda: torch.from_numpy(
            Rotation.random(n, random_state=rng).as_matrix()), repeat)
        so3_s = best_of(lambda: symplug.haar("SO3", n, seed=0), repeat)
        o3_s = best_of(lambda: symplug.haar("O3", n, seed=0), repeat)
        rows.append({"n": n, "scipy_s": scipy_s, "scipy_to_torch_s": scipy_t,
                     "symplug_SO3_s": so3_s, "symplug_O3_s": o3_s})
    return rows


def bench_quadrature(degrees: list[int], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for degree in degrees:
        for kind in ("lebedev", "gauss-legendre"):
            grid = symplug.quadrature("O3", degree, kind=kind)
            rows.append({"group": "O3", "kind": kind, "degree": degree, "size": grid.size,
                         "seconds": best_of(lambda: symplug.quadrature("O3", degree, kind=kind),
                                            repeat)})
    return rows


# ----------------------------------------------------------------------------- 3. memory


def memory_worker(spec: str) -> None:
    """Subprocess body: ``baseline:KIND:DEGREE`` or ``KIND:DEGREE:CHUNK``; prints JSON."""
    torch.set_num_threads(1)
    parts = spec.split(":")
    baseline = parts[0] == "baseline"
    if baseline:
        parts = parts[1:]
    kind, degree = parts[0], int(parts[1])
    model, sample = build_model("e3nn", int(os.environ.get("BENCH_N_POINTS", "24")))
    grid = symplug.quadrature("O3", degree, kind=kind)
    out: dict[str, Any] = {"spec": spec, "grid_size": grid.size}
    if not baseline:
        chunk = grid.size if parts[2] == "all" else int(parts[2])
        start = time.perf_counter()
        result = run_engine(model, sample, grid, lmax=2, chunk=chunk)
        out.update(chunk_size=chunk, seconds=time.perf_counter() - start,
                   rmse=result.outputs[OUTPUT].rmse)
    out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out["vmhwm_kib"] = vm_hwm_kib()
    print(json.dumps(out))


def vm_hwm_kib() -> int | None:
    """Peak RSS of this process's own address space (Linux /proc), as a cross-check."""
    try:
        with open("/proc/self/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmHWM")), None)
    except OSError:
        return None


# A child exec'd straight from this (large) process inherits the parent's peak RSS in
# ru_maxrss (Linux keeps the larger of the pre-exec address space's high-water mark and
# its own), so every worker would report this process's peak. A small launcher
# process in between keeps the inherited value at the launcher's ~10 MiB.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def run_worker(spec: str, n_points: int, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ, BENCH_N_POINTS=str(n_points), OMP_NUM_THREADS="1", **(extra_env or {}))
    cmd = [sys.executable, "-c", LAUNCHER,
           sys.executable, os.path.abspath(__file__), "--memory-worker", spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"memory worker {spec!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def bench_memory(grids: list[tuple[str, int]], chunk: int, n_points: int,
                 contrast: list[tuple[str, int]], allocators: dict[str, dict[str, str]],
                 baselines: int = 2) -> dict[str, Any]:
    """Peak-RSS increments of ``evaluate_orbit`` per grid, for each allocator setting,
    over the smallest of ``baselines`` baseline runs; the ``contrast`` grids are also
    run unchunked (default allocator only)."""
    largest = max(grids, key=lambda g: symplug.quadrature("O3", g[1], kind=g[0]).size)
    out: dict[str, Any] = {"chunk_size": chunk, "n_points": n_points, "lmax": 2, "settings": {}}
    for label, env in allocators.items():
        base_runs = [run_worker(f"baseline:{largest[0]}:{largest[1]}", n_points, env)
                     for _ in range(baselines)]
        base = min(b["maxrss_kib"] for b in base_runs)
        runs = [run_worker(f"{kind}:{degree}:{chunk}", n_points, env) for kind, degree in grids]
        if label == "default":
            runs += [run_worker(f"{kind}:{degree}:all", n_points, env)
                     for kind, degree in contrast]
        for run in runs:
            run["increment_kib"] = run["maxrss_kib"] - base
        chunked = [r for r in runs if r["chunk_size"] == chunk]
        incs = [r["increment_kib"] for r in chunked]
        sizes = [r["grid_size"] for r in chunked]
        out["settings"][label] = {
            "env": env, "baselines_kib": [b["maxrss_kib"] for b in base_runs],
            "baseline_kib": base, "runs": runs, "size_ratio": max(sizes) / min(sizes),
            "increment_spread": (max(incs) - min(incs)) / min(incs) if min(incs) > 0 else None}
    return out


# ----------------------------------------------------------------------------- main


def parse_grid_list(text: str) -> list[tuple[str, int]]:
    """``"lebedev:2,gauss-legendre:5"`` -> ``[("lebedev", 2), ("gauss-legendre", 5)]``."""
    out = []
    for item in text.split(","):
        kind, degree = item.split(":")
        out.append((kind, int(degree)))
    return out


FULL = {"degree": 4, "lmax": 4,
        "memory_grids": "gauss-legendre:2,gauss-legendre:3,gauss-legendre:5,lebedev:6"}
QUICK = {"degree": 2, "lmax": 2, "memory_grids": "gauss-legendre:2,gauss-legendre:3"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: degree 2, lmax 2, one repeat, fewer sizes, two small "
                             "memory grids, one baseline, default allocator only, no "
                             "unchunked memory contrast")
    parser.add_argument("--json", metavar="PATH", help="write all measurements as JSON here")
    parser.add_argument("--repeat", type=int, default=None, help="best of N (default 3; 1 quick)")
    parser.add_argument("--n-points", type=int, default=24, help="points per cloud (default 24)")
    parser.add_argument("--degree", type=int,
                        help="O3 Lebedev degree for 1 and 2 (default 4; 2 quick)")
    parser.add_argument("--lmax", type=int, help="lmax of B in benchmark 1 (default 4; 2 quick)")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--memory-grids",
                        help="KIND:DEGREE list for the memory benchmark (default "
                             f"{FULL['memory_grids']}; quick {QUICK['memory_grids']})")
    parser.add_argument("--contrast-grids", default="gauss-legendre:2,gauss-legendre:5",
                        help="grids also run unchunked in the memory benchmark (not --quick)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile listing")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        memory_worker(args.memory_worker)
        return {}
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    torch.set_num_threads(1)
    repeat = args.repeat or (1 if args.quick else 3)
    grid = symplug.quadrature("O3", args.degree, kind="lebedev")
    report: dict[str, Any] = {"machine": machine_info(), "config": {
        "quick": args.quick, "repeat": repeat, "n_points": args.n_points, "dtype": "float64",
        "grid": grid.describe(), "lmax": args.lmax, "chunk_size": args.chunk_size,
        "grad_mode": torch.is_grad_enabled()}}
    out = []
    m = report["machine"]
    out.append(f"# symplug engine benchmarks\n\nMachine: {m['cpu']}, {m['cores']} cores, "
               f"torch {m['torch']} (CPU, {m['torch_threads']} thread), e3nn {m['e3nn']}, "
               f"scipy {m['scipy']}; float64; best of {repeat}.\n")

    # 1. overhead
    cases = [bench_overhead(name, args.n_points, grid, args.lmax, args.chunk_size, repeat)
             for name in ("e3nn", "mlp")]
    report["overhead"] = [c.to_dict() for c in cases]
    out.append(f"## 1. Engine overhead (O3 Lebedev degree {args.degree}, {grid.size} copies, "
               f"chunks of {args.chunk_size}, outputs {OUTPUT_REP} + 1 hidden layer, "
               f"lmax={args.lmax})\n")
    out.append(markdown_table(
        ["model", "points", "clock", "(a) model alone", "(b) evaluate_orbit", "b - a",
         "engine cost / copy", "overhead (b-a)/a"],
        [row for c in cases for row in (
            [MODEL_LABELS[c.model], c.n_points, "wall", fmt_s(c.model_s), fmt_s(c.engine_s),
             fmt_s(c.engine_s - c.model_s), fmt_s((c.engine_s - c.model_s) / c.grid_size),
             f"{100 * c.overhead:.0f} %"],
            ["", "", "CPU", fmt_s(c.model_cpu_s), fmt_s(c.engine_cpu_s),
             fmt_s(c.engine_cpu_s - c.model_cpu_s),
             fmt_s((c.engine_cpu_s - c.model_cpu_s) / c.grid_size),
             f"{100 * c.overhead_cpu:.0f} %"])]))
    out.append("\n(a) and (b) both run with autograd enabled, as evaluate_orbit does. "
               "Model alone under torch.inference_mode(), CPU: "
               + ", ".join(f"{MODEL_LABELS[c.model]} {fmt_s(c.model_inference_cpu_s)}"
                           for c in cases) + ".")
    breakdown = engine_breakdown("e3nn", args.n_points, grid, args.lmax, args.chunk_size, repeat)
    report["breakdown_s"] = breakdown
    e3nn_case = cases[0]
    out.append(f"\nEngine parts (CPU time), each timed alone on precomputed model outputs and activations "
               f"(one pass over the {grid.size} copies in {e3nn_case.chunks} chunks; e3nn net, "
               "hidden layer 'mix'). Indented lines are parts of the line above.\n")
    out.append(markdown_table(
        ["part", "CPU time", "% of (a) e3nn model CPU time", "% of (a) MLP CPU time"],
        [[k.replace("  ", "&nbsp;&nbsp;"), fmt_s(v), f"{100 * v / e3nn_case.model_cpu_s:.1f} %",
          f"{100 * v / cases[1].model_cpu_s:.0f} %"] for k, v in breakdown.items()]))
    if not args.no_profile:
        report["profile"] = profile_engine("e3nn", args.n_points, grid, args.lmax,
                                           args.chunk_size)
        out.append("\ncProfile of evaluate_orbit (e3nn net), by cumulative time:\n\n```\n"
                   + report["profile"] + "\n```")

    # 2. comparisons
    spread = 3 if args.quick else 10
    compare = [bench_e3nn_compare(name, args.n_points, grid, repeat, spread)
               for name in ("e3nn", "mlp")]
    report["e3nn_compare"] = compare
    out.append("\n## 2a. e3nn.util.test.equivariance_error vs symplug A\n")
    out.append(markdown_table(
        ["model", "e3nn time/call", "e3nn max abs. error (rotation+parity), "
         f"{spread} calls: min..max", "symplug A time/call", "symplug A RMSE (relative)",
         "max abs(y)"],
        [[MODEL_LABELS[c["model"]], fmt_s(c["e3nn_s_per_call"]),
          f"{min(c['e3nn_max_err_rotation']):.2e}..{max(c['e3nn_max_err_rotation']):.2e}",
          fmt_s(c["symplug_s_per_call"]) + f" ({c['symplug_copies']} copies)",
          f"{c['symplug_rmse']:.2e} ({c['symplug_relative']:.2e})", f"{c['output_max_abs']:.2e}"]
         for c in compare]))

    haar_sizes = [1_000, 100_000] if not args.quick else [1_000]
    report["haar"] = bench_haar(haar_sizes, max(repeat, 3))
    out.append("\n## 2b. Haar sampling: symplug.haar vs scipy Rotation.random\n")
    out.append(markdown_table(
        ["n", "scipy .as_matrix()", "scipy + torch.from_numpy", "symplug.haar SO3",
         "symplug.haar O3"],
        [[r["n"], fmt_s(r["scipy_s"]), fmt_s(r["scipy_to_torch_s"]), fmt_s(r["symplug_SO3_s"]),
          fmt_s(r["symplug_O3_s"])] for r in report["haar"]]))

    degrees = [2, 4, 8] if args.quick else [2, 4, 8, 16]
    report["quadrature"] = bench_quadrature(degrees, max(repeat, 3))
    out.append("\n## 2c. symplug.quadrature construction (O3)\n")
    out.append(markdown_table(["degree", "kind", "size", "time"],
                              [[r["degree"], r["kind"], r["size"], fmt_s(r["seconds"])]
                               for r in report["quadrature"]]))

    # 3. memory
    allocators = {"default": {}}
    if not args.quick:
        allocators["MALLOC_MMAP_THRESHOLD_=1MiB"] = MALLOC_TUNED
    mem = bench_memory(parse_grid_list(args.memory_grids), args.chunk_size, args.n_points,
                       contrast=[] if args.quick else parse_grid_list(args.contrast_grids),
                       allocators=allocators, baselines=1 if args.quick else 2)
    report["memory"] = mem
    out.append(f"\n## 3. Peak memory (fresh subprocess per case; e3nn net, {args.n_points} points, "
               "output + hidden layer, lmax=2)\n")
    rows = []
    for label, setting in mem["settings"].items():
        rows.append([f"{label}: baseline (no evaluation)", "-", "-",
                     " / ".join(f"{b / 1024:.1f} MiB" for b in setting["baselines_kib"]),
                     "-", "-"])
        rows += [[f"{label}: {r['spec'].rsplit(':', 1)[0]}", r["grid_size"], r["chunk_size"],
                  f"{r['maxrss_kib'] / 1024:.1f} MiB", f"{r['increment_kib'] / 1024:.1f} MiB",
                  fmt_s(r["seconds"])] for r in setting["runs"]]
    out.append(markdown_table(["allocator: grid", "size", "chunk_size", "peak RSS (ru_maxrss)",
                               "increment over baseline", "eval time"], rows))
    for label, setting in mem["settings"].items():
        if setting["increment_spread"] is not None:
            out.append(f"\n{label}: at chunk_size={args.chunk_size}, grid sizes span "
                       f"{setting['size_ratio']:.1f}x; the increment varies by "
                       f"{100 * setting['increment_spread']:.1f} % ((max - min) / min).")

    text = "\n".join(out)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return report


if __name__ == "__main__":
    main()

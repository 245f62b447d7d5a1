"""Data-set diagnosis: A and B of every output and B of every named layer, with a
grid-convergence check, assembled into the DESIGN §3 result dictionary.

The work is split into partitions of samples (:mod:`symplug.dataparallel`): each
partition is evaluated where its samples are (here, or on a dask worker) and returns
small per-sample metric records (A's moments, the powers of B, the per-feature
moments of each layer's orbit mean); the client merges them in data order. One
partition in this process is the plain single-process run, through the same code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from .dataparallel import Partitions, executor, partition
from .equivariance import aggregate_errors, bias_variance
from .errors import SymplugError
from .findings import findings
from .groups import check_group
from .orbit import OrbitResult, evaluate_orbit
from .quadrature import Grid, quadrature
from .records import Domain
from .spectra import (FeatureMoments, Spectrum, aggregate_spectra, centered_aggregate,
                      sector_key)


@dataclass(frozen=True)
class _Plan:
    """What every partition evaluates: the grids (the grid, then the finer one)."""

    grids: tuple[Grid, ...]
    reps: dict[str, str]
    layers: tuple[str, ...]
    lmax: int
    chunk_size: int
    keep: tuple[str, ...]
    skip_failures: bool
    progress: bool
    desc: str


@dataclass
class SampleRecord:
    """The metrics of one sample that travel to the client: one light
    :class:`OrbitResult` per grid (no orbit means, no kept values), the feature
    moments of each layer on the grid, and the sample's reference labels."""

    index: int  # within its partition
    runs: list[OrbitResult]
    moments: dict[str, FeatureMoments]
    reference: dict | None


@dataclass
class PartitionState:
    """A partition after its orbit pass; it stays where it was evaluated."""

    samples: list
    results: list[dict[int, OrbitResult]]  # per grid, by index within the partition
    skipped: dict[int, str] = field(default_factory=dict)

    @property
    def kept(self) -> list[int]:
        return [i for i in range(len(self.samples)) if all(i in r for r in self.results)]

    def records(self, domain: Domain) -> tuple[int, list[SampleRecord], dict[int, str]]:
        """(number of samples, records of the kept ones, skipped reasons)."""
        out = []
        for i in self.kept:
            first = self.results[0][i]
            moments = {n: FeatureMoments.of(s.mean) for n, s in first.layers.items()}
            reference = domain.reference(self.samples[i]) if domain.reference else None
            out.append(SampleRecord(i, [_light(r[i]) for r in self.results], moments, reference))
        return len(self.samples), out, dict(self.skipped)


def _light(result: OrbitResult) -> OrbitResult:
    """``result`` without orbit means and kept values (what the merge does not need)."""
    def strip(spectra: dict[str, Spectrum]) -> dict[str, Spectrum]:
        return {n: replace(s, mean=None) for n, s in spectra.items()}

    return OrbitResult(result.outputs, strip(result.output_spectra), strip(result.layers),
                       strip(result.breaking_spectra), {})


def _evaluate_partition(model: Callable, domain: Domain, samples: list,
                        plan: _Plan) -> PartitionState:
    """The orbit pass of one partition over every grid of ``plan``. With
    ``skip_failures``, a sample whose evaluation fails is recorded with the reason
    instead of stopping the run."""
    state = PartitionState(list(samples), [])
    total = len(samples) * sum(g.size for g in plan.grids)
    with tqdm(total=total, desc=plan.desc, unit="copy", disable=not plan.progress,
              file=sys.stderr, leave=False) as bar:
        for k, grid in enumerate(plan.grids):
            results: dict[int, OrbitResult] = {}
            for i, sample in enumerate(state.samples):
                if i in state.skipped:
                    continue
                try:
                    results[i] = evaluate_orbit(
                        model, sample, domain.act, grid, outputs=plan.reps, layers=plan.layers,
                        lmax=plan.lmax, chunk_size=plan.chunk_size,
                        split_layer=domain.split_layer, progress=bar.update,
                        keep=plan.keep if k == 0 else ())
                except Exception as exc:  # flagged and counted, never silently dropped
                    if not plan.skip_failures:
                        raise
                    state.skipped[i] = f"{type(exc).__name__}: {exc}"
            state.results.append(results)
    return state


def _records(state: PartitionState, domain: Domain):
    return state.records(domain)


def _select_outputs(domain: Domain, samples: list) -> list[str]:
    return list(domain.select_outputs(samples))


def _summary_part(stage, model: Callable, state: PartitionState, grid: Grid, keep_values: bool,
                  context: Any, previous: Any) -> Any:
    kept = state.kept
    values = [state.results[0][i].values for i in kept] if keep_values else None
    return stage.map([state.samples[i] for i in kept], model, grid, values, context, previous)


def summarize(domain: Domain, samples: Sequence[Any], model: Callable, grid: Grid,
              orbit_values: Sequence[dict] | None = None) -> Any:
    """The domain's summary of ``samples`` in one partition (its stages in order);
    without ``orbit_values`` the stages evaluate the orbit again where they need it."""
    context, part = None, None
    for stage in domain.summary:
        part = stage.map(list(samples), model, grid, orbit_values, context, part)
        context = stage.reduce([part], context)
    return context


def _summaries(results: Sequence[OrbitResult], outputs: dict, layers: Sequence[str],
               by_components: bool) -> dict:
    """Flat {quantity: number} over ``results``, for the convergence comparison."""
    flat: dict[str, float] = {}
    for name in outputs:
        flat[f"outputs.{name}.equivariance_rmse"] = aggregate_errors(
            [r.outputs[name] for r in results], by_components).rmse
        for key, frac in aggregate_spectra([r.output_spectra[name] for r in results]).fractions.items():
            flat[f"outputs.{name}.spectrum.{sector_key(key)}"] = frac
    for name in layers:
        for key, frac in aggregate_spectra([r.layers[name] for r in results]).fractions.items():
            flat[f"layers.{name}.spectrum.{sector_key(key)}"] = frac
    return flat


def _per_sample_spectra(indices: Sequence[int], spectra: list[Spectrum]) -> list[dict]:
    """``[{"index", "spectrum": {"l,sigma": fraction}, "power": {...}}]`` per sample."""
    out = []
    for i, s in zip(indices, spectra):
        record = s.to_dict()
        out.append({"index": i, "spectrum": record["spectrum"], "power": record["power"]})
    return out


def finer_grid(grid: Grid, finer_degree: int | None = None) -> Grid:
    """The grid for the convergence check: ``finer_degree`` (default degree + 2) of
    the same kind, or 4x the samples with another seed for Monte Carlo."""
    if grid.monte_carlo:
        seed = None if grid.seed is None else grid.seed + 1
        return quadrature(grid.group, kind="haar", n=4 * grid.size, seed=seed, axis=grid.axis)
    degree = grid.degree + 2 if finer_degree is None else int(finer_degree)
    if degree <= grid.degree:
        raise SymplugError(f"finer degree {degree} must exceed the grid degree {grid.degree}")
    return quadrature(grid.group, degree, kind=grid.kind, axis=grid.axis)


def convergence(evaluate: Callable[[Grid], dict[str, float]], grid: Grid,
                finer_degree: int | None = None) -> dict:
    """Evaluate ``evaluate(grid)`` (a flat {quantity: number}) on ``grid`` and on
    :func:`finer_grid`, and report the largest absolute change (DESIGN §1)."""
    fine = finer_grid(grid, finer_degree)
    return _changes(evaluate(grid), evaluate(fine), fine)


def _changes(coarse: dict[str, float], finer: dict[str, float], fine: Grid) -> dict:
    changes = {k: abs(coarse[k] - finer[k]) for k in coarse}
    worst = max(changes, key=changes.get) if changes else None
    return {"finer_degree": fine.degree, "finer_size": fine.size,
            "max_abs_change": changes[worst] if worst else 0.0, "worst_quantity": worst,
            "changes": changes}


def diagnose(model: Callable, samples: Sequence[Any] | Partitions, domain: Domain, *,
             group: str | None = None, degree: int = 4, kind: str = "lebedev",
             n: int | None = None, seed: int | None = None, lmax: int | None = None,
             outputs: Sequence[str] | None = None, layers: Sequence[str] = (),
             finer_degree: int | None = None, check_convergence: bool = True,
             chunk_size: int = 64, progress: bool = True, skip_failures: bool = False,
             client: Any = None) -> dict:
    """Diagnose ``model`` on ``samples`` of ``domain``; returns the DESIGN §3 result.

    A per output (data-set equivariance RMSE in the output's units, relative
    error, per-sample values, bias-variance split when the domain supplies
    reference labels), B per output and per layer (raw and data-set centred),
    and the largest change of all these numbers on a finer grid. ``"findings"``
    holds the failure modes that :func:`symplug.findings.findings` diagnoses.

    With ``skip_failures``, a sample whose evaluation raises is left out, listed
    under ``"skipped"`` with the reason and counted; the others are kept.

    Data-parallel: ``samples`` may be :class:`~symplug.dataparallel.Partitions`
    (lists of samples or dask Delayed objects producing them) and ``client`` a
    ``dask.distributed`` Client; each partition is then evaluated on a worker and the
    records are merged here in data order (a plain list is split into partitions, a
    few per worker). The numbers equal the single-process ones up to round-off.
    """
    from . import __version__

    run = executor(client)
    if not isinstance(samples, Partitions):
        samples = list(samples)
        if not samples:
            raise SymplugError("no samples to diagnose")
        samples = Partitions([samples]) if client is None else partition(samples,
                                                                         4 * run.workers)
    if not samples:
        raise SymplugError("no samples to diagnose")
    group = check_group(group or domain.groups[0])
    if group not in domain.groups:
        raise SymplugError(f"group {group} is not offered by domain {domain.name!r} "
                           f"(offers {', '.join(domain.groups)})")
    model_h, domain_h = run.share(model), run.share(domain)
    parts = [run.load(p) for p in samples]
    if outputs:
        names = list(outputs)
    elif domain.select_outputs is not None:
        chosen = run.gather([run.submit(_select_outputs, domain_h, p) for p in parts])
        names = [o for o in domain.outputs if all(o in c for c in chosen)]
    else:
        names = list(domain.outputs)
    unknown = [o for o in names if o not in domain.outputs]
    if unknown:
        raise SymplugError(f"domain {domain.name!r} has no output {unknown[0]!r} "
                           f"(outputs: {', '.join(domain.outputs)})")
    reps = {o: domain.outputs[o].rep for o in names}
    grid = quadrature(group, None if kind == "haar" else degree, kind=kind, n=n, seed=seed,
                      axis=domain.axis)
    if lmax is None:
        lmax = grid.degree if grid.degree is not None else degree
    grids = (grid, finer_grid(grid, finer_degree)) if check_convergence else (grid,)
    keep = tuple(o for o in domain.keep_outputs if o in reps)
    plan = _Plan(grids, reps, tuple(layers), lmax, chunk_size, keep, skip_failures,
                 progress and client is None, f"{domain.name} {group} degree {grid.degree}")
    states = [run.submit(_evaluate_partition, model_h, domain_h, p, plan) for p in parts]
    gathered = run.gather([run.submit(_records, s, domain_h) for s in states],
                          f"{domain.name} partitions", progress)
    kept, records, skipped, offset = [], [], {}, 0
    for size, recs, skips in gathered:
        kept += [offset + r.index for r in recs]
        records += recs
        skipped.update({offset + i: reason for i, reason in skips.items()})
        offset += size
    if not records:
        first = next(iter(skipped.values()), "no samples")
        raise SymplugError(f"every sample failed; the first: {first}")
    results = [r.runs[0] for r in records]
    if check_convergence:
        summaries = [_summaries([r.runs[k] for r in records], reps, layers,
                                domain.samples_are_blocks) for k in (0, 1)]
        conv = _changes(*summaries, grids[1])
    else:
        conv = {"finer_degree": None, "max_abs_change": None}
    out: dict[str, Any] = {"symplug_version": __version__, "kind": "diagnosis",
                           "domain": domain.name,
                           "group": group, "grid": grid.describe(), "lmax": lmax,
                           "n_samples": len(kept), "convergence": conv}
    if skip_failures:
        out["skipped"] = [{"index": i, "reason": skipped[i]} for i in sorted(skipped)]

    labels = [r.reference for r in records]
    out["outputs"] = {}
    for name in names:
        errors = [r.outputs[name] for r in results]
        spectra = [r.output_spectra[name] for r in results]
        breaking = aggregate_spectra([r.breaking_spectra[name] for r in results])
        entry = {"rep": reps[name], "units": domain.outputs[name].units,
                 **aggregate_errors(errors, domain.samples_are_blocks).to_dict(),
                 **aggregate_spectra(spectra).to_dict(), "breaking_spectrum": breaking.to_dict(),
                 "per_sample": [{"index": i, **e.to_dict()} for i, e in zip(kept, errors)],
                 "per_sample_spectrum": _per_sample_spectra(kept, spectra)}
        if all(lab is not None and name in lab for lab in labels):
            entry["bias_variance"] = bias_variance(errors, [lab[name] for lab in labels]).to_dict()
        out["outputs"][name] = entry
    out["layers"] = {}
    for name in layers:
        spectra = [r.layers[name] for r in results]
        raw = aggregate_spectra(spectra)
        centered = centered_aggregate(raw, reduce(FeatureMoments.merge,
                                                  [r.moments[name] for r in records]))
        record = raw.to_dict()
        out["layers"][name] = {
            "spectrum": record["spectrum"], "power": record["power"],
            "truncation": raw.truncation,
            "spectrum_centered": centered.to_dict()["spectrum"],
            "truncation_centered": centered.truncation,
            "invariant_fraction": raw.invariant_fraction,
            "invariant_fraction_centered": centered.invariant_fraction,
            "per_sample_invariant_fraction": [s.invariant_fraction for s in spectra],
            "per_sample_spectrum": _per_sample_spectra(kept, spectra)}
    if domain.summary:
        context, parts = None, [None] * len(states)
        for stage in domain.summary:  # parts stay with their partitions for the next stage
            parts = [run.submit(_summary_part, stage, model_h, s, grid, bool(keep), context, p)
                     for s, p in zip(states, parts)]
            context = stage.reduce(run.gather(parts), context)
        out["summary"] = context
    out["findings"] = [f.to_dict() for f in findings(out)]
    return out

"""Data-set diagnosis: A and B of every output and B of every named layer, with a
grid-convergence check, assembled into the DESIGN §3 result dictionary."""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .equivariance import aggregate_errors, bias_variance
from .errors import SymplugError
from .findings import findings
from .groups import check_group
from .orbit import OrbitResult, evaluate_orbit
from .quadrature import Grid, quadrature
from .records import Domain
from .spectra import Spectrum, aggregate_spectra, sector_key


def _dataset_feature_mean(spectra: list[Spectrum]) -> torch.Tensor:
    """Per-feature (last axis) mean of the orbit means over samples and tokens."""
    total, count = None, 0
    for s in spectra:
        flat = s.mean.reshape(-1, s.mean.shape[-1]) if s.mean.ndim else s.mean.reshape(1, 1)
        total = flat.sum(0) if total is None else total + flat.sum(0)
        count += flat.shape[0]
    return total / count


def _run(model: Callable, samples: Sequence[Any], domain: Domain, grid: Grid, outputs: dict,
         layers: Sequence[str], lmax: int | None, chunk_size: int, desc: str,
         progress: bool, skipped: dict[int, str] | None,
         keep: Sequence[str] = ()) -> dict[int, OrbitResult]:
    """Orbit results by sample index. With ``skipped`` (a dict), a sample whose
    evaluation fails is recorded there with the reason instead of stopping the run."""
    bar = tqdm(total=len(samples) * grid.size, desc=desc, unit="copy", disable=not progress,
               file=sys.stderr, leave=False)
    results: dict[int, OrbitResult] = {}
    try:
        for i, sample in enumerate(samples):
            if skipped is not None and i in skipped:
                continue
            try:
                results[i] = evaluate_orbit(model, sample, domain.act, grid, outputs=outputs,
                                            layers=layers, lmax=lmax, chunk_size=chunk_size,
                                            split_layer=domain.split_layer,
                                            progress=bar.update, keep=keep)
            except Exception as exc:  # flagged and counted, never silently dropped
                if skipped is None:
                    raise
                skipped[i] = f"{type(exc).__name__}: {exc}"
    finally:
        bar.close()
    return results


def _summaries(results: dict[int, OrbitResult], keep: Sequence[int], outputs: dict,
               layers: Sequence[str], by_components: bool) -> dict:
    """Flat {quantity: number} over the samples ``keep``, for the convergence comparison."""
    results = [results[i] for i in keep]
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
    coarse, finer = evaluate(grid), evaluate(fine)
    changes = {k: abs(coarse[k] - finer[k]) for k in coarse}
    worst = max(changes, key=changes.get) if changes else None
    return {"finer_degree": fine.degree, "finer_size": fine.size,
            "max_abs_change": changes[worst] if worst else 0.0, "worst_quantity": worst,
            "changes": changes}


def diagnose(model: Callable, samples: Sequence[Any], domain: Domain, *,
             group: str | None = None, degree: int = 4, kind: str = "lebedev",
             n: int | None = None, seed: int | None = None, lmax: int | None = None,
             outputs: Sequence[str] | None = None, layers: Sequence[str] = (),
             finer_degree: int | None = None, check_convergence: bool = True,
             chunk_size: int = 64, progress: bool = True, skip_failures: bool = False) -> dict:
    """Diagnose ``model`` on ``samples`` of ``domain``; returns the DESIGN §3 result.

    A per output (data-set equivariance RMSE in the output's units, relative
    error, per-sample values, bias-variance split when the domain supplies
    reference labels), B per output and per layer (raw and data-set centred),
    and the largest change of all these numbers on a finer grid. ``"findings"``
    holds the failure modes that :func:`symplug.findings.findings` diagnoses.

    With ``skip_failures``, a sample whose evaluation raises is left out, listed
    under ``"skipped"`` with the reason and counted; the others are kept.
    """
    from . import __version__

    if not samples:
        raise SymplugError("no samples to diagnose")
    group = check_group(group or domain.groups[0])
    if group not in domain.groups:
        raise SymplugError(f"group {group} is not offered by domain {domain.name!r} "
                           f"(offers {', '.join(domain.groups)})")
    if outputs:
        names = list(outputs)
    elif domain.select_outputs is not None:
        names = list(domain.select_outputs(samples))
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
    skipped: dict[int, str] | None = {} if skip_failures else None
    runs: list[dict[int, OrbitResult]] = []  # the grid's run first, then the finer one

    def evaluate(g: Grid) -> dict[str, float]:
        values = [o for o in domain.keep_outputs if o in reps] if not runs else []
        runs.append(_run(model, samples, domain, g, reps, layers, lmax, chunk_size,
                         f"{domain.name} {g.group} degree {g.degree}", progress, skipped, values))
        if not runs[0]:
            raise SymplugError(f"every sample failed; the first: {next(iter(skipped.values()))}")
        keep = [i for i in runs[0] if all(i in run for run in runs)]
        return _summaries(runs[-1], keep, reps, layers, domain.samples_are_blocks)

    if check_convergence:
        conv = convergence(evaluate, grid, finer_degree)
    else:
        evaluate(grid)
        conv = {"finer_degree": None, "max_abs_change": None}
    kept = [i for i in range(len(samples)) if all(i in run for run in runs)]
    results = [runs[0][i] for i in kept]
    out: dict[str, Any] = {"symplug_version": __version__, "kind": "diagnosis",
                           "domain": domain.name,
                           "group": group, "grid": grid.describe(), "lmax": lmax,
                           "n_samples": len(kept), "convergence": conv}
    if skipped is not None:
        out["skipped"] = [{"index": i, "reason": skipped[i]} for i in sorted(skipped)]

    labels = [domain.reference(samples[i]) if domain.reference else None for i in kept]
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
        center = _dataset_feature_mean(spectra)
        raw = aggregate_spectra(spectra)
        centered = aggregate_spectra([s.centered(center) for s in spectra])
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
    if domain.summarize is not None:
        extra = ({"orbit_values": [runs[0][i].values for i in kept]} if domain.keep_outputs
                 else {})
        out["summary"] = domain.summarize([samples[i] for i in kept], model, grid, **extra)
    out["findings"] = [f.to_dict() for f in findings(out)]
    return out

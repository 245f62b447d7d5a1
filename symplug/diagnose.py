"""Data-set diagnosis: A and B of every output and B of every named layer, with a
grid-convergence check, assembled into the README "Result format" result dictionary.

The work is split into partitions of samples (:mod:`symplug.dataparallel`): each
partition is evaluated where its samples are (here, or on a dask worker) and returns
its sums (A's sums, the summed powers of B, the per-feature moments of each layer's
orbit means: :class:`GridSums`) and, unless asked not to, JSON-ready per-sample
records; the client merges them in data order. One partition in this process is the
plain single-process run, through the same code.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Callable, NamedTuple, Sequence

from tqdm.auto import tqdm

from . import memory
from .dataparallel import Partitions, executor, partition
from .equivariance import ErrorSums
from .errors import SymplugError
from .protocols import SelectsOutputs, StatesUnits
from .findings import findings
from .groups import Group
from .orbit import OrbitResult, evaluate_orbit
from .quadrature import Grid, quadrature
from .records import Domain
from .spectra import (FeatureMoments, Spectrum, aggregate_spectra, centered_aggregate,
                      sector_key)

# The floor of A's scale in the convergence ranking, relative to the output's magnitude:
# below it a change of A is round-off (float32 autograd forces of an exactly equivariant
# model reach a few 1e-6), not what the grid misses.
ROUND_OFF = 1e-4
# The evaluation's convergence flag: A changes by at most 1 % on the check grid.
EVALUATION_GRID_TOL = 0.01


@dataclass(frozen=True)
class _Plan:
    """What every partition evaluates: the grids (the grid, then the finer one)."""

    grids: tuple[Grid, ...]
    reps: dict[str, str]
    layers: tuple[str, ...]
    lmax: int
    chunk_size: int
    max_memory: int | None  # bytes per process (None: the budget in force where it runs)
    keep: tuple[str, ...]
    skip_failures: bool
    per_sample: bool
    progress: bool
    desc: str


@dataclass(frozen=True)
class GridSums:
    """The merged metrics of a set of samples on one grid: A's sums per output
    (:class:`~symplug.equivariance.ErrorSums`, with the bias against reference labels),
    the summed spectra of outputs, breaking responses and layers, and the per-feature
    moments of each layer's orbit means (for the data-set centred spectrum)."""

    errors: dict[str, ErrorSums]
    outputs: dict[str, Spectrum]
    breaking: dict[str, Spectrum]
    layers: dict[str, Spectrum]
    moments: dict[str, FeatureMoments]

    @classmethod
    def of(cls, r: OrbitResult, by_components: bool, labels: dict | None) -> "GridSums":
        def summed(spectra: dict[str, Spectrum]) -> dict[str, Spectrum]:
            return {n: aggregate_spectra([s]) for n, s in spectra.items()}  # no orbit mean

        labels = labels or {}
        return cls({n: ErrorSums.of(e, by_components, labels.get(n)) for n, e in r.outputs.items()},
                   summed(r.output_spectra), summed(r.breaking_spectra), summed(r.layers),
                   {n: FeatureMoments.of(s.mean) for n, s in r.layers.items()})

    def merge(self, other: "GridSums") -> "GridSums":
        def union(a: dict, b: dict, merge: Callable) -> dict:
            """Outputs missing from some samples (``Domain.excluded_outputs``) merge
            over the samples that have them."""
            return {n: merge(a[n], b[n]) if n in a and n in b else a.get(n, b.get(n))
                    for n in {**a, **b}}

        def spectra(x: Spectrum, y: Spectrum) -> Spectrum:
            return aggregate_spectra([x, y])

        return GridSums(union(self.errors, other.errors, ErrorSums.merge),
                        union(self.outputs, other.outputs, spectra),
                        union(self.breaking, other.breaking, spectra),
                        union(self.layers, other.layers, spectra),
                        union(self.moments, other.moments, FeatureMoments.merge))


@dataclass
class PartitionRecord:
    """What a partition sends to the client: its size, its kept samples (indices within
    the partition), one :class:`GridSums` per grid over them (None if none was kept),
    JSON-ready per-sample records (``per_sample``), the reasons of skipped samples, the
    user's items in the kept samples (``Domain.count_items``; sums over partitions) and
    in each skipped one (None where they could not be counted)."""

    size: int
    kept: list[int]
    sums: list[GridSums] | None
    details: list[dict] | None
    skipped: dict[int, str]
    n_items: int = 0
    skipped_items: dict[int, int | None] = field(default_factory=dict)


def _details(r: OrbitResult) -> dict:
    """The per-sample part of the result for one sample (JSON-ready)."""
    def spectra(items: dict[str, Spectrum]) -> dict:
        return {n: {k: d[k] for k in ("spectrum", "power", "invariant_fraction")}
                for n, d in ((n, s.to_dict()) for n, s in items.items())}
    return {"errors": {n: e.to_dict() for n, e in r.outputs.items()},
            "outputs": spectra(r.output_spectra), "layers": spectra(r.layers)}


@dataclass
class PartitionState:
    """A partition after its orbit pass; it stays where it was evaluated. Per sample it
    holds only the merged-ready metrics (no per-token orbit means), the per-sample
    records and the kept output values the summary reads."""

    samples: list
    sums: list[dict[int, GridSums]] = field(default_factory=list)  # per grid, per sample
    details: dict[int, dict] = field(default_factory=dict)
    values: dict[int, dict] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    items: dict[int, int] = field(default_factory=dict)  # the user's items per sample

    @property
    def kept(self) -> list[int]:
        return [i for i in range(len(self.samples)) if all(i in s for s in self.sums)]

    def record(self) -> PartitionRecord:
        kept = self.kept
        sums = [reduce(GridSums.merge, [per[i] for i in kept]) for per in self.sums] \
            if kept else None
        details = [self.details[i] for i in kept] if self.details else None
        return PartitionRecord(len(self.samples), kept, sums, details, dict(self.skipped),
                               sum(self.items[i] for i in kept),
                               {i: self.items.get(i) for i in self.skipped})


def _count_items(domain: Domain, sample: Any) -> int:
    """The user's items in ``sample`` (``Domain.count_items``; default 1)."""
    if domain.count_items is None:
        return 1
    n = domain.count_items(sample)
    try:
        count = operator.index(n)
    except TypeError:
        count = -1
    if isinstance(n, bool) or count < 0:
        raise SymplugError(f"domain {domain.name!r}: count_items returned {n!r}, not an "
                           "integer >= 0")
    return count


def _evaluate_partition(model: Callable, domain: Domain, samples: list, plan: _Plan,
                        where: tuple[int, int | None] = (0, 0)) -> PartitionState:
    """The orbit pass of one partition over every grid of ``plan``. With
    ``skip_failures``, a sample whose evaluation fails is recorded with the reason
    instead of stopping the run; without, the error names the sample: its index in the
    data set when the partition's first index ``where[1]`` is known, else its index in
    partition ``where[0]``."""
    state = PartitionState(list(samples))
    total = len(samples) * sum(g.size for g in plan.grids)
    with memory.limit(plan.max_memory), tqdm(total=total, desc=plan.desc, unit="copy",
                                             disable=not plan.progress, file=sys.stderr,
                                             leave=False) as bar:
        for k, grid in enumerate(plan.grids):
            sums: dict[int, GridSums] = {}
            for i, sample in enumerate(state.samples):
                if i in state.skipped:
                    continue
                try:
                    if k == 0:
                        if domain.check is not None:
                            domain.check(sample)
                        state.items[i] = _count_items(domain, sample)
                    excluded = set(domain.excluded_outputs(sample)) \
                        if domain.excluded_outputs is not None else set()
                    reps = {n: r for n, r in plan.reps.items() if n not in excluded}
                    r = evaluate_orbit(
                        model, sample, domain.act, grid, outputs=reps, layers=plan.layers,
                        lmax=plan.lmax, chunk_size=plan.chunk_size,
                        split_layer=domain.split_layer, progress=bar.update,
                        keep=tuple(o for o in plan.keep if o in reps) if k == 0 else ())
                    labels = domain.reference(sample) if domain.reference and k == 0 else None
                    sums[i] = GridSums.of(r, domain.samples_are_blocks, labels)
                except Exception as exc:  # flagged and counted, never silently dropped
                    if not plan.skip_failures:
                        part, start = where
                        name = (f"sample {start + i}" if start is not None
                                else f"sample {i} of partition {part}")
                        reason = str(exc) if isinstance(exc, SymplugError) else \
                            f"{type(exc).__name__}: {exc}"
                        raise SymplugError(f"{name}: {reason}") from exc
                    state.skipped[i] = f"{type(exc).__name__}: {exc}"
                    if i not in state.items and domain.count_items is not None:
                        try:  # a sample refused by check may still say how many items it has
                            state.items[i] = _count_items(domain, sample)
                        except Exception:
                            pass
                    continue
                if k == 0:
                    state.values[i] = r.values
                    if plan.per_sample:
                        state.details[i] = _details(r)
            state.sums.append(sums)
    return state


def _record(state: PartitionState) -> PartitionRecord:
    return state.record()


def _select_outputs(domain: Domain, samples: list) -> list[str]:
    return list(domain.select_outputs(samples))


def _summary_part(stage, model: Callable, state: PartitionState, grid: Grid, keep_values: bool,
                  context: Any, previous: Any, max_memory: int | None = None) -> Any:
    kept = state.kept
    if not kept:  # a partition whose every sample failed (or an empty one) adds no part
        return None
    values = [state.values[i] for i in kept] if keep_values else None
    with memory.limit(max_memory):
        return stage.map([state.samples[i] for i in kept], model, grid, values, context,
                         previous)


def summarize(domain: Domain, samples: Sequence[Any], model: Callable, grid: Grid,
              orbit_values: Sequence[dict] | None = None) -> Any:
    """The domain's summary of ``samples`` in one partition (its stages in order);
    without ``orbit_values`` the stages evaluate the orbit again where they need it."""
    context, part = None, None
    for stage in domain.summary:
        part = stage.map(list(samples), model, grid, orbit_values, context, part)
        context = stage.reduce([part], context)
    return context


def _require_tables(grid: Grid, lmax: int) -> None:
    """Refuse up front a grid whose spectral basis tables (elements x basis functions
    of band ``lmax``, float64) do not fit in the memory budget."""
    functions = 2 * lmax + 1 if grid.group.is_planar else \
        sum((2 * l + 1) ** 2 for l in range(lmax + 1))
    memory.require(8.0 * grid.size * functions,
                   f"the spectral tables of the {grid.kind} grid ({grid.size} elements x "
                   f"{functions} basis functions of band {lmax})",
                   "ask for a lower --degree or --lmax")


class Quantity(NamedTuple):
    """A number compared by the convergence check: its ``value`` and how its change is
    ranked: relative to max(|value|, ``floor``), or, with ``floor`` None, as it is (a
    spectrum fraction is already a share of the total power)."""

    value: float
    floor: float | None = None


def _summaries(sums: GridSums, layers: Sequence[str]) -> dict[str, Quantity]:
    """Flat {quantity: Quantity} for the convergence comparison: A of every output
    (floored at :data:`ROUND_OFF` of the output's magnitude, so round-off of an
    equivariant output is not a change) and every spectrum fraction."""
    flat: dict[str, Quantity] = {}
    for name, errors in sums.errors.items():
        err = errors.dataset_error()
        magnitude = err.rmse / err.relative if err.relative > 0 else 0.0
        flat[f"outputs.{name}.equivariance_rmse"] = Quantity(err.rmse, ROUND_OFF * magnitude)
        for key, frac in sums.outputs[name].fractions.items():
            flat[f"outputs.{name}.spectrum.{sector_key(key)}"] = Quantity(frac)
    for name in layers:
        for key, frac in sums.layers[name].fractions.items():
            flat[f"layers.{name}.spectrum.{sector_key(key)}"] = Quantity(frac)
    return flat


def check_grid(grid: Grid, finer_degree: int | None = None, seed: int = 1) -> Grid:
    """The grid of the convergence check, one grid more in cost:

    * by default the same rule turned by a Haar-random rotation (``seed``): a response
      band-limited to the rule's band gives the same numbers on both to round-off, so
      their difference estimates what the rule misses;
    * with ``finer_degree``, the rule of that degree (same kind and purpose);
    * for Monte Carlo, as many elements with another seed.
    """
    if grid.monte_carlo:
        other = seed if grid.seed is None else grid.seed + seed
        return quadrature(grid.group, kind="haar", n=grid.size, seed=other, purpose=grid.purpose)
    if finer_degree is None:
        return grid.rotated(seed)
    if int(finer_degree) <= grid.degree:
        raise SymplugError(f"finer degree {finer_degree} must exceed the grid degree {grid.degree}")
    kind = grid.kind if grid.kind in ("lebedev", "gauss-legendre") else "auto"
    return quadrature(grid.group, int(finer_degree), kind=kind, purpose=grid.purpose)


def convergence(evaluate: Callable[[Grid], dict[str, Quantity | float]], grid: Grid,
                finer_degree: int | None = None) -> dict:
    """Evaluate ``evaluate(grid)`` (a flat {name: :class:`Quantity` or number}; a plain
    number is compared as it is) on ``grid`` and on :func:`check_grid`, and report the
    changes, ranked relative to each quantity."""
    def quantities(values: dict) -> dict[str, Quantity]:
        return {k: v if isinstance(v, Quantity) else Quantity(float(v)) for k, v in values.items()}

    check = check_grid(grid, finer_degree)
    return _changes(quantities(evaluate(grid)), quantities(evaluate(check)), check,
                    _method(grid, finer_degree))


def _method(grid: Grid, finer_degree: int | None) -> str:
    return "resampled" if grid.monte_carlo else "rotated" if finer_degree is None else "finer"


def _changes(first: dict[str, Quantity], second: dict[str, Quantity], check: Grid,
             method: str) -> dict:
    """The convergence record: absolute and ranked (relative) change of every quantity."""
    changes = {k: abs(first[k].value - second[k].value) for k in first}
    relative = {}
    for k, change in changes.items():
        floor = first[k].floor  # the larger of both grids' floors: one of them may read 0
        scale = 1.0 if floor is None else max(abs(first[k].value), abs(second[k].value), floor,
                                              second[k].floor)
        relative[k] = change / scale if scale > 0 else 0.0
    worst = max(relative, key=relative.get) if relative else None
    return {"method": method, "finer_degree": check.degree, "finer_size": check.size,
            "check_grid": check.describe(),
            "max_abs_change": max(changes.values()) if changes else 0.0,
            "max_rel_change": relative[worst] if worst else 0.0,
            "worst_quantity": worst, "changes": changes, "relative_changes": relative}


def _check_diagnosis_grid(grid: Grid) -> None:
    """Refuse a grid whose second moments are exact to band 0 only (e.g. ``degree=0``,
    the identity): every output would read A = 0, a number that means nothing."""
    if not grid.monte_carlo and (grid.moment_degree or 0) < 1:
        raise SymplugError(f"degree {grid.degree} gives a {grid.kind} grid of {grid.size} "
                           "element(s), exact to band 0 only: a diagnosis needs a grid exact to "
                           "band >= 1 (--degree 1 or more)")


ZERO_RESPONSE = ("zero response: the output is 0 on every copy of every sample, so its relative "
                 "error and invariant fraction are undefined")


def _undefined_if_zero(entry: dict, errors: "ErrorSums") -> dict:
    """An output ``entry`` whose response is identically zero (no power): its relative
    error, invariant fraction and spectrum are stated undefined (None, with the reason
    under ``"undefined"``) instead of reading 0."""
    if errors.z2 > 0:
        return entry
    return {**entry, "relative_error": None, "invariant_fraction": None, "truncation": None,
            "spectrum": {k: None for k in entry.get("spectrum", {})}, "undefined": ZERO_RESPONSE}


def diagnose(model: Callable, samples: Sequence[Any] | Partitions, domain: Domain, *,
             group: str | Group | None = None, degree: int = 4, kind: str = "auto",
             n: int | None = None, seed: int | None = None, lmax: int | None = None,
             outputs: Sequence[str] | None = None, layers: Sequence[str] = (),
             finer_degree: int | None = None, check_convergence: bool = True,
             chunk_size: int = 64, progress: bool = True, skip_failures: bool = False,
             client: Any = None, per_sample: bool = True, grid: Grid | None = None,
             max_memory: int | str | None = None) -> dict:
    """Diagnose ``model`` on ``samples`` of ``domain``; returns the README "Result format" result.

    A model with a ``for_outputs(outputs, optional)`` method (``outputs``: names to
    representations) is evaluated as the copy it returns with the names it will compute,
    which leave out only names in ``optional`` (the domain's defaults when ``outputs`` is
    not given); ``model`` itself is not changed.

    A per output (data-set equivariance RMSE in the output's units, relative
    error, per-sample values, bias-variance split when the domain supplies
    reference labels), B per output and per layer (raw and data-set centred),
    and the change of all these numbers on the convergence grid (:func:`check_grid`:
    the same rule turned by a random rotation, or ``finer_degree``), ranked relative to
    each quantity. ``group`` is a :class:`~symplug.groups.Group` or its name (about the
    domain's axis; default: the domain's first group). ``kind="auto"`` takes the
    smallest rule exact to band 2L; ``grid`` (a :class:`~symplug.quadrature.Grid`)
    replaces ``group``, ``degree``, ``kind``, ``n`` and ``seed``, e.g. to match another
    tool's rotations. ``"findings"`` holds the failure modes that
    :func:`symplug.findings.findings` diagnoses.

    Memory: ``max_memory`` (bytes or e.g. ``"8G"``; default: the budget in force,
    :func:`symplug.memory.budget`) bounds the peak of the run. ``chunk_size`` is the most
    copies per model call; fewer are taken where the measured cost per copy would pass
    the budget (:func:`symplug.memory.chunks`), and requests known to be too large (a
    grid, the spectral tables) are refused before any model call. On a cluster the
    budget is split evenly between the workers (default: each worker's own limit).

    With ``skip_failures``, a sample whose evaluation raises is left out, listed
    under ``"skipped"`` with the reason and counted; the others are kept.

    ``n_samples`` counts the kept samples, ``n_items`` the user's items in them
    (``Domain.count_items``, e.g. the jets of each block; one per sample by default),
    named ``item_name``; a skipped entry holds its ``n_items`` where the domain counts.

    Data-parallel: ``samples`` may be :class:`~symplug.dataparallel.Partitions`
    (lists of samples or dask Delayed objects producing them) and ``client`` a
    ``dask.distributed`` Client; each partition is then evaluated on a worker and the
    records are merged here in data order (a plain list is split into partitions, a
    few per worker). The numbers equal the single-process ones up to round-off.
    ``per_sample=False`` leaves out the per-sample lists (``per_sample``,
    ``per_sample_spectrum``, ``per_sample_invariant_fraction``): each partition then
    sends a few numbers per output and layer instead of a record per sample.
    """
    from . import __version__

    with memory.limit(max_memory):
        return _diagnose(model, samples, domain, group=group, degree=degree, kind=kind, n=n,
                         seed=seed, lmax=lmax, outputs=outputs, layers=layers,
                         finer_degree=finer_degree, check_convergence=check_convergence,
                         chunk_size=chunk_size, progress=progress, skip_failures=skip_failures,
                         client=client, per_sample=per_sample, grid=grid,
                         budget=None if max_memory is None else memory.budget(),
                         version=__version__)


def _diagnose(model: Callable, samples: Sequence[Any] | Partitions, domain: Domain, *,
              group: str | Group | None, degree: int, kind: str, n: int | None, seed: int | None,
              lmax: int | None, outputs: Sequence[str] | None, layers: Sequence[str],
              finer_degree: int | None, check_convergence: bool, chunk_size: int,
              progress: bool, skip_failures: bool, client: Any, per_sample: bool,
              grid: Grid | None, budget: int | None, version: str) -> dict:
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise SymplugError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    run = executor(client)
    worker_budget = run.worker_budget(budget)  # None: the budget in force where it runs
    if not isinstance(samples, Partitions):
        samples = list(samples)
        if not samples:
            raise SymplugError("no samples to diagnose")
        samples = Partitions([samples]) if client is None else partition(samples,
                                                                         4 * run.workers)
    if not samples:
        raise SymplugError("no samples to diagnose")
    group = domain.group(grid.group if grid is not None else group)
    domain_h = run.share(domain)
    parts = [run.load(p) for p in samples]
    if outputs:
        names = list(outputs)
    elif domain.select_outputs is not None:
        chosen = run.gather([run.submit(_select_outputs, domain_h, p) for p in parts])
        names = [o for o in domain.outputs if any(o in c for c in chosen)]
    else:
        names = list(domain.outputs)
    optional = set() if outputs else {o for o in names if o in domain.outputs
                                      and not domain.outputs[o].declared}
    if not outputs:
        names += [o for o, out in domain.outputs.items() if out.declared and o not in names]
    unknown = [o for o in names if o not in domain.outputs]
    if unknown:
        raise SymplugError(f"domain {domain.name!r} has no output {unknown[0]!r} "
                           f"(outputs: {', '.join(domain.outputs)})")
    if isinstance(model, SelectsOutputs):
        # models that compute only what is asked for; they drop the defaults they lack
        model, names = model.for_outputs({o: domain.outputs[o].rep for o in names}, optional)
        names = list(names)
        if not names:
            raise SymplugError(f"the model computes none of the outputs {sorted(optional)}")
    model_h = run.share(model)
    reps = {o: domain.outputs[o].rep for o in names}
    if grid is None:
        grid = quadrature(group, None if kind == "haar" else degree, kind=kind, n=n, seed=seed)
    _check_diagnosis_grid(grid)
    if lmax is None:
        lmax = grid.moment_degree if grid.moment_degree is not None else degree
    grids = (grid, check_grid(grid, finer_degree)) if check_convergence else (grid,)
    for g in grids:
        _require_tables(g, lmax)
    keep = tuple(o for o in domain.keep_outputs if o in reps)
    plan = _Plan(grids, reps, tuple(layers), lmax, int(chunk_size), worker_budget, keep,
                 skip_failures, per_sample,
                 progress and client is None, f"{domain.name} {group.name} degree {grid.degree}")
    plan_h = run.share(plan)  # grids with their tables: sent once per worker
    sizes = [len(p) if isinstance(p, list) else None for p in samples]
    starts = [None if None in sizes[:k + 1] else sum(sizes[:k]) for k in range(len(sizes))]
    states = [run.submit(_evaluate_partition, model_h, domain_h, p, plan_h, (k, starts[k]))
              for k, p in enumerate(parts)]
    records = run.gather([run.submit(_record, s) for s in states],
                         f"{domain.name} partitions", progress)
    kept, details, skipped, offset, sums, n_items, skipped_items = [], [], {}, 0, None, 0, {}
    for rec in records:
        kept += [offset + i for i in rec.kept]
        details += rec.details or []
        skipped.update({offset + i: reason for i, reason in rec.skipped.items()})
        skipped_items.update({offset + i: n for i, n in rec.skipped_items.items()})
        n_items += rec.n_items
        offset += rec.size
        if rec.sums is not None:
            sums = rec.sums if sums is None else [a.merge(b) for a, b in zip(sums, rec.sums)]
    if sums is None:
        first = next(iter(skipped.values()), "no samples")
        raise SymplugError(f"every sample failed; the first: {first}")
    if check_convergence:
        conv = _changes(_summaries(sums[0], layers), _summaries(sums[1], layers), grids[1],
                        _method(grid, finer_degree))
    else:
        conv = {"finer_degree": None, "max_abs_change": None}
    out: dict[str, Any] = {"symplug_version": version, "kind": "diagnosis",
                           "domain": domain.name,
                           "group": group.name, "grid": grid.describe(), "lmax": lmax,
                           "n_samples": len(kept), "n_items": n_items,
                           "item_name": domain.item_name, "convergence": conv}
    if skip_failures:  # with the items of each skipped sample where the domain counts them
        out["skipped"] = [{"index": i, "reason": skipped[i],
                           **({"n_items": skipped_items.get(i)} if domain.count_items else {})}
                          for i in sorted(skipped)]

    merged = sums[0]
    # a default output that only skipped samples had (e.g. stress of the one periodic frame)
    names = [name for name in names if name in merged.errors or name not in optional]
    absent = [name for name in names if name not in merged.errors]
    if absent:
        raise SymplugError(f"output {absent[0]!r} exists for none of the samples diagnosed")
    out["outputs"] = {}
    # a model may state the units of its outputs (a tagger's score: probability, logit)
    units_of = dict(model.output_units or {}) if isinstance(model, StatesUnits) else {}
    for name in names:
        errors = merged.errors[name]
        units = units_of.get(name) or domain.outputs[name].units
        entry = {"rep": reps[name], "units": units,
                 **errors.dataset_error().to_dict(), **merged.outputs[name].to_dict(),
                 "breaking_spectrum": merged.breaking[name].to_dict()}
        if per_sample:
            having = [(i, d) for i, d in zip(kept, details) if name in d["errors"]]
            entry["per_sample"] = [{"index": i, **d["errors"][name]} for i, d in having]
            entry["per_sample_spectrum"] = [
                {"index": i, "spectrum": d["outputs"][name]["spectrum"],
                 "power": d["outputs"][name]["power"]} for i, d in having]
        if errors.labelled:  # over the labelled samples: n_labelled of n_samples
            entry["bias_variance"] = {**errors.bias_variance().to_dict(),
                                      "n_labelled": errors.labelled}
        change = (conv.get("relative_changes") or {}).get(f"outputs.{name}.equivariance_rmse")
        if change is not None:  # as metatrain flags it: A moves by > 1 % on the check grid
            entry["grid_change"] = change
            entry["grid_converged"] = change <= EVALUATION_GRID_TOL
        out["outputs"][name] = _undefined_if_zero(entry, errors)
    out["layers"] = {}
    for name in layers:
        raw = merged.layers[name]
        centered = centered_aggregate(raw, merged.moments[name])
        record = raw.to_dict()
        layer = {"spectrum": record["spectrum"], "power": record["power"],
                 "truncation": raw.truncation,
                 "spectrum_centered": centered.to_dict()["spectrum"],
                 "truncation_centered": centered.truncation,
                 "invariant_fraction": raw.invariant_fraction,
                 "invariant_fraction_centered": centered.invariant_fraction}
        if per_sample:
            layer["per_sample_invariant_fraction"] = [d["layers"][name]["invariant_fraction"]
                                                      for d in details]
            layer["per_sample_spectrum"] = [
                {"index": i, "spectrum": d["layers"][name]["spectrum"],
                 "power": d["layers"][name]["power"]} for i, d in zip(kept, details)]
        out["layers"][name] = layer
    if domain.summary:
        context, parts = None, [None] * len(states)
        try:  # a failing summary (e.g. the model on a larger batch) is the domain's block only
            for stage in domain.summary:  # parts stay with their partitions for the next stage
                parts = [run.submit(_summary_part, stage, model_h, s, grid, bool(keep), context,
                                    p, worker_budget) for s, p in zip(states, parts)]
                context = stage.reduce([p for p in run.gather(parts) if p is not None], context)
            out["summary"] = context
        except Exception as exc:
            reason = " ".join((str(exc) if isinstance(exc, SymplugError)
                               else f"{type(exc).__name__}: {exc}").split())
            if not skip_failures:
                raise SymplugError(f"{domain.name} summary failed: {reason}") from exc
            out["skipped"].append({"index": None, "stage": "summary",
                                   "reason": f"{domain.name} summary skipped: {reason}"})
    out["findings"] = [f.to_dict() for f in findings(out)]
    return out

"""Data-set diagnosis: A and B of every output and B of every named layer, with a
grid-convergence check, as a typed :class:`~symplug.diagnosis.Diagnosis` whose
``to_dict()`` is the README "Result format" result dictionary.

:func:`diagnosis_of` runs the parts in order: :func:`resolve_grid`,
:func:`resolve_outputs`, :func:`orbit_pass` (partitions -> merged sums),
:func:`grid_convergence`, then the aggregation (:func:`output_diagnosis`,
:func:`layer_diagnosis`, :func:`domain_summary`) and the findings.

The samples are split into partitions (:mod:`symplug.dataparallel`), evaluated where
they are and merged in data order (:mod:`symplug.orbit_pass`).

The mathematics and design: docs/design.md, sections 1.7 and 2.1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Collection, NamedTuple, Sequence

from . import memory
from .dataparallel import Partitions, executor, partition
from .diagnosis import (Convergence, Diagnosis, LayerDiagnosis, OutputDiagnosis, QuantityKey,
                        Skipped, SpectrumRecord)
from .errors import SymplugError
from .findings import findings
from .groups import Group
from .orbit import find_module
from .orbit_pass import (GridSums, OrbitPass, PassPlan, SampleDetails, orbit_pass,
                         selected_outputs, summary_part)
from .precision import Precision, declared_precision, equivariant_relative, resolve_precision
from .protocols import SelectsOutputs, StatesPrecision, StatesUnits
from .quadrature import Grid, quadrature
from .records import Domain
from .spectra import centered_aggregate

# The evaluation's convergence flag: A changes by at most 1 % on the check grid.
EVALUATION_GRID_TOL = 0.01
ZERO_RESPONSE = ("zero response: the output is 0 on every copy of every sample, so its relative "
                 "error and invariant fraction are undefined")
ZERO_LAYER = ("zero activations: the layer is 0 on every copy of every sample, so its spectrum "
              "and invariant fractions are undefined")
CONSTANT_LAYER = ("constant layer: the same on every copy of every sample up to round-off, so "
                  "nothing is left "
                  "once its data-set mean is removed and its centred spectrum and invariant "
                  "fraction are undefined")


# -- the grid ------------------------------------------------------------------------

def resolve_grid(domain: Domain, grid: Grid | None, group: str | Group | None, degree: int,
                 kind: str, n: int | None, seed: int | None) -> Grid:
    """The grid of a diagnosis: ``grid`` as given, or the rule of ``degree`` (``kind``;
    ``n`` elements and ``seed`` for Monte Carlo) for ``group`` about the domain's axis
    (default: the domain's first group). Refuses a group the domain does not offer and a
    grid whose second moments are exact to band 0 only (e.g. ``degree=0``, the identity:
    every output would read A = 0, a number that means nothing)."""
    group = domain.group(grid.group if grid is not None else group)
    if grid is None:
        grid = quadrature(group, None if kind == "haar" else degree, kind=kind, n=n, seed=seed)
    if not grid.monte_carlo and (grid.moment_degree or 0) < 1:
        raise SymplugError(f"degree {grid.degree} gives a {grid.kind} grid of {grid.size} "
                           "element(s), exact to band 0 only: a diagnosis needs a grid exact to "
                           "band >= 1 (--degree 1 or more)")
    return grid


def _require_tables(grid: Grid, lmax: int) -> None:
    """Refuse up front a grid whose spectral basis tables (elements x basis functions
    of band ``lmax``, float64) do not fit in the memory budget."""
    functions = 2 * lmax + 1 if grid.group.is_planar else \
        sum((2 * l + 1) ** 2 for l in range(lmax + 1))
    memory.require(8.0 * grid.size * functions,
                   f"the spectral tables of the {grid.kind} grid ({grid.size} elements x "
                   f"{functions} basis functions of band {lmax})",
                   "ask for a lower --degree or --lmax")


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


# -- the outputs ---------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedOutputs:
    """The outputs a diagnosis evaluates, in order: their representations, their units,
    and the domain defaults that may be missing from every sample kept (``optional``)."""

    reps: dict[str, str]
    units: dict[str, str]
    optional: frozenset[str]

    def measured(self, present: Collection[str]) -> list[str]:
        """The outputs to report when ``present`` ones were measured: an optional default
        that only skipped samples had (e.g. stress of the one periodic frame) is left out;
        any other missing one is an error."""
        names = [name for name in self.reps if name in present or name not in self.optional]
        absent = [name for name in names if name not in present]
        if absent:
            raise SymplugError(f"output {absent[0]!r} exists for none of the samples diagnosed")
        return names


def resolve_outputs(model: Callable, domain: Domain, asked: Sequence[str] | None,
                    chosen: Callable[[], list[Collection[str]]],
                    ) -> tuple[Callable, ResolvedOutputs]:
    """The model to evaluate and the outputs to diagnose, decided here only:

    * ``asked``, else the domain's defaults (with ``Domain.select_outputs``, those it
      chooses for some partition: ``chosen()``) and then its declared outputs;
    * a :class:`~symplug.protocols.SelectsOutputs` model is replaced by the copy it
      returns for them, with the names it will compute (it drops defaults it lacks);
    * units: those a :class:`~symplug.protocols.StatesUnits` model states (a tagger's
      score: probability, logit), else the domain's.
    """
    if asked:
        names = list(asked)
    elif domain.select_outputs is not None:
        choices = chosen()
        names = [o for o in domain.outputs if any(o in c for c in choices)]
    else:
        names = list(domain.outputs)
    optional = set() if asked else {o for o in names if o in domain.outputs
                                    and not domain.outputs[o].declared}
    if not asked:
        names += [o for o, out in domain.outputs.items() if out.declared and o not in names]
    unknown = [o for o in names if o not in domain.outputs]
    if unknown:
        raise SymplugError(f"domain {domain.name!r} has no output {unknown[0]!r} "
                           f"(outputs: {', '.join(domain.outputs)})")
    if isinstance(model, SelectsOutputs):
        model, names = model.for_outputs({o: domain.outputs[o].rep for o in names}, optional)
        names = list(names)
        if not names:
            raise SymplugError(f"the model computes none of the outputs {sorted(optional)}")
    stated = dict(model.output_units or {}) if isinstance(model, StatesUnits) else {}
    return model, ResolvedOutputs({o: domain.outputs[o].rep for o in names},
                                  {o: stated.get(o) or domain.outputs[o].units for o in names},
                                  frozenset(optional))


# -- the convergence check -----------------------------------------------------------

class Quantity(NamedTuple):
    """A number compared by the convergence check: its ``value`` and how its change is
    ranked: relative to max(|value|, ``floor``), or, with ``floor`` None, as it is (a
    spectrum fraction is already a share of the total power)."""

    value: float
    floor: float | None = None


def _summaries(sums: GridSums, layers: Sequence[str],
               precision: Precision) -> dict[QuantityKey, Quantity]:
    """{quantity: Quantity} for the convergence comparison: A of every output (floored
    at the round-off of ``precision`` times the output's magnitude,
    :func:`~symplug.precision.equivariant_relative`, so round-off of an equivariant
    output is not a change) and every spectrum fraction."""
    round_off = equivariant_relative(precision)
    flat: dict[QuantityKey, Quantity] = {}
    for name, errors in sums.errors.items():
        err = errors.dataset_error()
        magnitude = err.rmse / err.relative if err.relative > 0 else 0.0
        flat[("outputs", name, "equivariance_rmse")] = Quantity(err.rmse, round_off * magnitude)
        for key, frac in sums.outputs[name].fractions.items():
            flat[("outputs", name, "spectrum", key)] = Quantity(frac)
    for name in layers:
        for key, frac in sums.layers[name].fractions.items():
            flat[("layers", name, "spectrum", key)] = Quantity(frac)
    return flat


def convergence(evaluate: Callable[[Grid], dict[str, Quantity | float]], grid: Grid,
                finer_degree: int | None = None) -> dict:
    """Evaluate ``evaluate(grid)`` (a flat {name: :class:`Quantity` or number}; a plain
    number is compared as it is) on ``grid`` and on :func:`check_grid`, and report the
    changes, ranked relative to each quantity (the README "Result format" record)."""
    def quantities(values: dict) -> dict[str, Quantity]:
        return {k: v if isinstance(v, Quantity) else Quantity(float(v)) for k, v in values.items()}

    check = check_grid(grid, finer_degree)
    return _changes(quantities(evaluate(grid)), quantities(evaluate(check)), check,
                    _method(grid, finer_degree)).to_dict()


def grid_convergence(sums: Sequence[GridSums], grids: Sequence[Grid], layers: Sequence[str],
                     finer_degree: int | None, precision: Precision) -> Convergence:
    """The convergence check of a diagnosis from its sums on the grid and on the check
    grid (``grids[1]``): A of every output (changes below the round-off of
    ``precision`` do not count) and every spectrum fraction."""
    return _changes(_summaries(sums[0], layers, precision),
                    _summaries(sums[1], layers, precision), grids[1],
                    _method(grids[0], finer_degree))


def _method(grid: Grid, finer_degree: int | None) -> str:
    return "resampled" if grid.monte_carlo else "rotated" if finer_degree is None else "finer"


def _changes(first: dict[QuantityKey, Quantity], second: dict[QuantityKey, Quantity],
             check: Grid, method: str) -> Convergence:
    """Absolute and ranked (relative) change of every quantity between two grids."""
    changes = {k: abs(first[k].value - second[k].value) for k in first}
    relative = {}
    for k, change in changes.items():
        floor = first[k].floor  # the larger of both grids' floors: one of them may read 0
        scale = 1.0 if floor is None else max(abs(first[k].value), abs(second[k].value), floor,
                                              second[k].floor)
        relative[k] = change / scale if scale > 0 else 0.0
    worst = max(relative, key=relative.get) if relative else None
    return Convergence(method, check.degree, check.size, check.describe(),
                       max(changes.values()) if changes else 0.0,
                       relative[worst] if worst else 0.0, worst, changes, relative)


# -- the aggregation -----------------------------------------------------------------

def output_diagnosis(name: str, sums: GridSums, outputs: ResolvedOutputs,
                     samples: list[tuple[int, SampleDetails]] | None,
                     convergence: Convergence) -> OutputDiagnosis:
    """Output ``name`` over the data set from the merged ``sums`` (``samples``: the
    per-sample records by data-set index, or None), with its change on the check grid;
    an output with no response at all has its relative numbers stated undefined."""
    errors = sums.errors[name]
    error = errors.dataset_error()
    having = None if samples is None else [(i, d) for i, d in samples if name in d.errors]
    change = convergence.relative_changes.get(("outputs", name, "equivariance_rmse"))
    output = OutputDiagnosis(
        rep=outputs.reps[name], units=outputs.units[name], equivariance_rmse=error.rmse,
        relative_error=error.relative, n_samples=error.n_samples,
        spectrum=SpectrumRecord.of(sums.outputs[name]),
        breaking_spectrum=SpectrumRecord.of(sums.breaking[name]),
        equivariance_rmse_stderr=error.stderr,
        per_sample=None if having is None else {i: d.errors[name] for i, d in having},
        per_sample_spectrum=None if having is None else {i: d.outputs[name] for i, d in having},
        # over the labelled samples: n_labelled of n_samples
        bias_variance=errors.bias_variance() if errors.labelled else None,
        n_labelled=errors.labelled,
        # as metatrain flags it: A moves by > 1 % on the check grid
        grid_change=change,
        grid_converged=None if change is None else change <= EVALUATION_GRID_TOL)
    return output if errors.z2 > 0 else output.as_undefined(ZERO_RESPONSE)


def layer_diagnosis(name: str, sums: GridSums,
                    samples: list[tuple[int, SampleDetails]] | None,
                    precision: Precision) -> LayerDiagnosis:
    """Layer ``name`` over the data set from the merged ``sums``, raw and centred on the
    per-feature data-set mean of its orbit means (``samples`` as for
    :func:`output_diagnosis`); the fractions of a layer with nothing in it are
    undefined: all zero, or nothing left after centring but round-off of ``precision``
    (centred norm below :func:`~symplug.precision.equivariant_relative` of the raw norm:
    a float32 layer that is the same on every sample keeps ~1e-7 of it, whose fractions
    are noise, even above 1)."""
    raw = sums.layers[name]
    centered = centered_aggregate(raw, sums.moments[name])
    layer = LayerDiagnosis(
        spectrum=raw.fractions, power=dict(raw.power), truncation=raw.truncation,
        spectrum_centered=centered.fractions, truncation_centered=centered.truncation,
        invariant_fraction=raw.invariant_fraction,
        invariant_fraction_centered=centered.invariant_fraction,
        per_sample_invariant_fraction=None if samples is None else
        tuple(d.layer_invariant_fractions[name] for _, d in samples),
        per_sample_spectrum=None if samples is None else {i: d.layers[name] for i, d in samples})
    if raw.norm2 <= 0.0:
        return layer.as_undefined(ZERO_LAYER, raw=True)
    if centered.norm2 <= equivariant_relative(precision) ** 2 * raw.norm2:
        return layer.as_undefined(CONSTANT_LAYER, raw=False)
    return layer


def domain_summary(run: Any, domain: Domain, model: Any, states: list, grid: Grid,
                   keep_values: bool, max_memory: int | None,
                   skip_failures: bool) -> tuple[Any, Skipped | None]:
    """The domain's summary (its stages in order, each partition's part computed where
    its samples are) and None; with ``skip_failures`` a failing summary (e.g. the model
    on a larger batch) is (None, the :class:`Skipped` saying why) instead of an error."""
    context, parts = None, [None] * len(states)
    try:
        for stage in domain.summary:  # parts stay with their partitions for the next stage
            parts = [run.submit(summary_part, stage, model, s, grid, keep_values, context,
                                p, max_memory) for s, p in zip(states, parts)]
            context = stage.reduce([p for p in run.gather(parts) if p is not None], context)
        return context, None
    except Exception as exc:
        reason = " ".join((str(exc) if isinstance(exc, SymplugError)
                           else f"{type(exc).__name__}: {exc}").split())
        if not skip_failures:
            raise SymplugError(f"{domain.name} summary failed: {reason}") from exc
        return None, Skipped(None, f"{domain.name} summary skipped: {reason}", stage="summary")


def _skipped_samples(merged: OrbitPass, domain: Domain) -> list[Skipped]:
    """The skipped samples in data order, with their items where the domain counts them."""
    counted = domain.count_items is not None
    return [Skipped(i, merged.skipped[i], items_counted=counted,
                    n_items=merged.skipped_items.get(i) if counted else None)
            for i in sorted(merged.skipped)]


# -- the entry points ----------------------------------------------------------------

def _partitions(samples: Sequence[Any] | Partitions, client: Any, workers: int) -> Partitions:
    """``samples`` as partitions: as given, one (no ``client``), or a few per worker."""
    if not isinstance(samples, Partitions):
        samples = list(samples)
        if not samples:
            raise SymplugError("no samples to diagnose")
        samples = Partitions([samples]) if client is None else partition(samples, 4 * workers)
    if not samples:
        raise SymplugError("no samples to diagnose")
    return samples


def diagnose(model: Callable, samples: Sequence[Any] | Partitions, domain: Domain,
             **options: Any) -> dict:
    """Diagnose ``model`` on ``samples`` of ``domain`` (the arguments of :func:`diagnosis_of`,
    documented there); returns the README "Result format" dictionary, ready for JSON."""
    return diagnosis_of(model, samples, domain, **options).to_dict()


def diagnosis_of(model: Callable, samples: Sequence[Any] | Partitions, domain: Domain, *,
                 group: str | Group | None = None, degree: int = 4, kind: str = "auto",
                 n: int | None = None, seed: int | None = None, lmax: int | None = None,
                 outputs: Sequence[str] | None = None, layers: Sequence[str] = (),
                 finer_degree: int | None = None, check_convergence: bool = True,
                 chunk_size: int = 64, progress: bool = True, skip_failures: bool = False,
                 client: Any = None, per_sample: bool = True, grid: Grid | None = None,
                 max_memory: int | str | None = None, precision: str | None = "auto",
                 ) -> Diagnosis:
    """Diagnose ``model`` on ``samples`` of ``domain``: a typed
    :class:`~symplug.diagnosis.Diagnosis` (spectra keyed by (l, sigma) tuples, the
    convergence check's quantities by tuples), which :func:`diagnose` returns as the
    README "Result format" dictionary.

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

    Precision: the floating-point format the model computes in (``Diagnosis.precision``)
    sets the round-off below which an output counts as equivariant
    (:func:`symplug.precision.equivariant_relative`: float32 1.2e-4, float64 1e-11
    of the output's magnitude). ``precision`` declares it (``"float16"``,
    ``"bfloat16"``, ``"float32"``, ``"float64"``); ``"auto"`` (default) takes the
    dtype of a torch model's floating parameters, else the narrowest dtype holding
    every output value the orbit pass saw (:mod:`symplug.precision`).

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
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
            raise SymplugError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        declared = declared_precision(precision)
        run = executor(client)
        # None: the budget in force where it runs
        worker_budget = run.worker_budget(None if max_memory is None else memory.budget())
        samples = _partitions(samples, client, run.workers)
        grid = resolve_grid(domain, grid, group, degree, kind, n, seed)
        domain_h = run.share(domain)
        parts = [run.load(p) for p in samples]
        model, resolved = resolve_outputs(model, domain, outputs, lambda: run.gather(
            [run.submit(selected_outputs, domain_h, p) for p in parts]))
        model_h = run.share(model)
        if lmax is None:
            lmax = grid.moment_degree if grid.moment_degree is not None else degree
        grids = (grid, check_grid(grid, finer_degree)) if check_convergence else (grid,)
        for g in grids:
            _require_tables(g, lmax)
        keep = tuple(o for o in domain.keep_outputs if o in resolved.reps)
        plan = PassPlan(grids, resolved.reps, tuple(layers), lmax, int(chunk_size), worker_budget,
                     keep, skip_failures, per_sample, progress and client is None,
                     f"{domain.name} {grid.group.name} degree {grid.degree}")
        states, merged = orbit_pass(run, model_h, domain_h, parts,
                                    [len(p) if isinstance(p, list) else None for p in samples],
                                    plan, f"{domain.name} partitions", progress)
        found = resolve_precision(declared, find_module(model),
                                  [d for s in merged.sums for d in s.dtypes.values()],
                                  model.compute_dtype if isinstance(model, StatesPrecision)
                                  else None)
        conv = grid_convergence(merged.sums, grids, layers, finer_degree, found) \
            if check_convergence else Convergence()
        sums = merged.sums[0]
        per = list(zip(merged.kept, merged.details)) if per_sample else None
        results = {name: output_diagnosis(name, sums, resolved, per, conv)
                   for name in resolved.measured(sums.errors)}
        layer_results = {name: layer_diagnosis(name, sums, per, found) for name in layers}
        summary, failed = domain_summary(run, domain, model_h, states, grid, bool(keep),
                                         worker_budget, skip_failures) \
            if domain.summary else (None, None)
        skipped = (_skipped_samples(merged, domain) + ([failed] if failed else [])
                   if skip_failures else None)
        diagnosis = Diagnosis(
            symplug_version=__version__, domain=domain.name, group=grid.group.name,
            grid=grid.describe(), lmax=lmax, n_samples=len(merged.kept), n_items=merged.n_items,
            item_name=domain.item_name, convergence=conv, outputs=results, layers=layer_results,
            skipped=None if skipped is None else tuple(skipped), summary=summary,
            precision=found)
        return replace(diagnosis, findings=tuple(findings(diagnosis)))

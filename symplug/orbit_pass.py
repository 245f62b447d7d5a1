"""The orbit pass over partitions of samples: each partition is evaluated where its
samples are (here, or on a dask worker) into mergeable sums, one :class:`GridSums` per
grid (A's sums, the summed powers of B, the per-feature moments of each layer's orbit
means), plus compact per-sample records unless asked not to; :func:`orbit_pass` merges
them in data order. The domain summary's map stage runs on the same partition states.
One partition in this process is the plain single-process run, through the same code.

The mathematics and design: docs/design.md, section 2.1.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from . import memory
from .diagnosis import SampleError, SampleSpectrum
from .equivariance import ErrorSums
from .errors import SymplugError
from .orbit import OrbitResult, evaluate_orbit
from .precision import widest
from .quadrature import Grid
from .records import Domain
from .spectra import FeatureMoments, Spectrum, aggregate_spectra

@dataclass(frozen=True)
class PassPlan:
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
    the summed spectra of outputs, breaking responses and layers, the per-feature
    moments of each layer's orbit means (for the data-set centred spectrum), and per
    output the narrowest dtype that holds all its values
    (:func:`symplug.precision.values_dtype`; merged: the widest)."""

    errors: dict[str, ErrorSums]
    outputs: dict[str, Spectrum]
    breaking: dict[str, Spectrum]
    layers: dict[str, Spectrum]
    moments: dict[str, FeatureMoments]
    dtypes: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def of(cls, r: OrbitResult, by_components: bool, labels: dict | None) -> "GridSums":
        def summed(spectra: dict[str, Spectrum]) -> dict[str, Spectrum]:
            return {n: aggregate_spectra([s]) for n, s in spectra.items()}  # no orbit mean

        labels = labels or {}
        return cls({n: ErrorSums.of(e, by_components, labels.get(n)) for n, e in r.outputs.items()},
                   summed(r.output_spectra), summed(r.breaking_spectra), summed(r.layers),
                   {n: FeatureMoments.of(s.mean) for n, s in r.layers.items()}, dict(r.dtypes))

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
                        union(self.moments, other.moments, FeatureMoments.merge),
                        union(self.dtypes, other.dtypes, lambda x, y: widest([x, y])))


@dataclass(frozen=True)
class SampleDetails:
    """The per-sample part of the result for one sample (``per_sample``): A and B of
    each output, B and the invariant fraction of each layer."""

    errors: dict[str, SampleError]
    outputs: dict[str, SampleSpectrum]
    layers: dict[str, SampleSpectrum]
    layer_invariant_fractions: dict[str, float]

    @classmethod
    def of(cls, r: OrbitResult) -> "SampleDetails":
        return cls({n: SampleError.of(e) for n, e in r.outputs.items()},
                   {n: SampleSpectrum.of(s) for n, s in r.output_spectra.items()},
                   {n: SampleSpectrum.of(s) for n, s in r.layers.items()},
                   {n: s.invariant_fraction for n, s in r.layers.items()})


@dataclass
class PartitionRecord:
    """What a partition sends to the client: its size, its kept samples (indices within
    the partition), one :class:`GridSums` per grid over them (None if none was kept),
    per-sample records (``per_sample``), the reasons of skipped samples, the user's items
    in the kept samples (``Domain.count_items``; sums over partitions) and in each
    skipped one (None where they could not be counted)."""

    size: int
    kept: list[int]
    sums: list[GridSums] | None
    details: list[SampleDetails] | None
    skipped: dict[int, str]
    n_items: int = 0
    skipped_items: dict[int, int | None] = field(default_factory=dict)


@dataclass
class PartitionState:
    """A partition after its orbit pass; it stays where it was evaluated. Per sample it
    holds only the merged-ready metrics (no per-token orbit means), the per-sample
    records and the kept output values the summary reads."""

    samples: list
    sums: list[dict[int, GridSums]] = field(default_factory=list)  # per grid, per sample
    details: dict[int, SampleDetails] = field(default_factory=dict)
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


def _evaluate_partition(model: Callable, domain: Domain, samples: list, plan: PassPlan,
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
                        state.details[i] = SampleDetails.of(r)
            state.sums.append(sums)
    return state


def _record(state: PartitionState) -> PartitionRecord:
    return state.record()


def selected_outputs(domain: Domain, samples: list) -> list[str]:
    return list(domain.select_outputs(samples))


def summary_part(stage, model: Callable, state: PartitionState, grid: Grid, keep_values: bool,
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


# -- the merge ----------------------------------------------------------------------

@dataclass(frozen=True)
class OrbitPass:
    """The orbit pass of every partition, merged in data order: the data-set indices of
    the kept samples with their per-sample records (empty without ``per_sample``), the
    reasons of the skipped ones and their items, the user's items in the kept samples,
    and one :class:`GridSums` per grid."""

    kept: list[int]
    details: list[SampleDetails]
    skipped: dict[int, str]
    skipped_items: dict[int, int | None]
    n_items: int
    sums: list[GridSums]


def orbit_pass(run: Any, model: Any, domain: Any, parts: list, sizes: list[int | None],
               plan: PassPlan, desc: str, progress: bool) -> tuple[list, OrbitPass]:
    """Evaluate every partition (``parts``, of ``sizes`` samples where known) with
    ``plan`` on ``run`` (``model`` and ``domain`` as shared there) and merge the records.
    Returns the partition states (they stay where they were evaluated) and the merge;
    raises when every sample failed."""
    plan_h = run.share(plan)  # grids with their tables: sent once per worker
    starts = [None if None in sizes[:k + 1] else sum(sizes[:k]) for k in range(len(sizes))]
    states = [run.submit(_evaluate_partition, model, domain, p, plan_h, (k, starts[k]))
              for k, p in enumerate(parts)]
    records = run.gather([run.submit(_record, s) for s in states], desc, progress)
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
    return states, OrbitPass(kept, details, skipped, skipped_items, n_items, sums)



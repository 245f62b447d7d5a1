"""Diagnosis of failure modes: rules that turn a diagnosis result into findings.

Each rule reads a :class:`~symplug.diagnosis.Diagnosis` (:func:`findings` also takes the
README "Result format" dictionary of :func:`symplug.diagnose`, or the same JSON read back)
and returns :class:`Finding` records that quote the numbers they rest on and name a
remedy. Thresholds are the module constants below; ``docs/findings.md`` lists the rules.
Those that separate round-off from breaking scale with the precision the model computes
in (``Diagnosis.precision``): an output counts as equivariant below
:func:`~symplug.precision.equivariant_relative` of it (float32 1.2e-4, float64 1e-11).

The spectral rules read ``outputs[name].breaking_spectrum``: B of the
back-transformed response z(g) = rho(g)^-1 y(g x). Its power outside the
invariant sector is the breaking (it sums to A^2 over all components and
samples), so "share of the breaking power" below means
power[(l, sigma)] / sum A^2, and the share above the resolved l_max is what
the sectors up to l_max miss.

Severity convention:

* ``"info"``: a fact about the model worth knowing; nothing to fix.
* ``"warning"``: a failure mode of the model or of the measurement, with a remedy.
* ``"error"``: the failure mode dominates what the result measures (the
  equivariance error is at least the accuracy error of the symmetrised model, or
  A grows at least tenfold out of distribution).

The mathematics and design: docs/design.md, section 1.8.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Mapping

from .diagnosis import (SEVERITIES, Convergence, Diagnosis, Finding, OutputDiagnosis,
                        as_diagnosis, quantity_name)
from .errors import SymplugError
from .groups import O3, Group
from .precision import Precision, equivariant_relative
from .spectra import Sector, sector_key

# An output whose relative equivariance error A / sqrt(int |z|^2) (dimensionless) is
# below equivariant_relative(result.precision) counts as equivariant (symplug/precision.py:
# 1000 ulps of the precision the model computes in, at least 1e-11, at most 1e-2): the
# spectrum of round-off says nothing about the model, and the spectral, accuracy and
# out-of-distribution rules skip such outputs.

# low-l-breaking: share of the breaking power in rotational sectors 1 <= l <= LOW_L_MAX.
LOW_L_MAX = 1
LOW_L_SHARE = 0.5

# aliasing: share of the (breaking or non-invariant) power above l_max, and at l = l_max
# when some power lies above it. A share above round_off_share() means the quantity is
# not band-limited to l_max: the power that round-off of the model's precision can make
# (its relative size t = equivariant_relative squared, over the power it is a share
# of), and at least BAND_LIMITED, for symplug's own float64 sums (which resolve a
# share of a band-limited quantity to ~1e-15, whatever the model's precision).
TRUNCATION_TOL = 0.01
BAND_EDGE_SHARE = 0.25
BAND_LIMITED = 1e-8
# aliasing from the convergence check: absolute change of a spectrum fraction, and
# relative change of A, on the check grid.
CONVERGENCE_FRACTION_TOL = 0.01
CONVERGENCE_RELATIVE_TOL = 0.05

# odd-parity-breaking: share of the breaking power in sigma = -1 sectors (O3, O2).
ODD_PARITY_SHARE = 0.5

# invariance-reached / invariance-lost: the data-set-centred invariant fraction of a
# layer at which it counts as invariant, and the drop below the best earlier layer
# that counts as a loss (both dimensionless fractions).
INVARIANT_REACHED = 0.99
INVARIANCE_DROP = 0.05

# equivariance-dominates-error: equivariance RMSE / RMSE of the symmetrised model.
COMPARABLE_RATIO = 0.5  # warning
DOMINANT_RATIO = 1.0  # error

# ood-growth: A on the result / A on the in-distribution reference result.
OOD_GROWTH = 2.0  # warning
OOD_GROWTH_ERROR = 10.0  # error


# -- helpers -------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _quantity(value: float, units: str) -> str:
    return f"{value:.3g} {units}".rstrip()


def _a(output: OutputDiagnosis) -> str:
    return "A = " + _quantity(output.equivariance_rmse, output.units)


def _is_broken(output: OutputDiagnosis, precision: Precision) -> bool:
    """Whether ``output`` breaks the symmetry beyond the round-off of ``precision``."""
    relative = output.relative_error  # None: a zero response, nothing to conclude
    return relative is not None and relative >= equivariant_relative(precision)


def round_off_share(precision: Precision, relative: float = 1.0) -> float:
    """The largest share of a power that round-off of ``precision`` can make, where that
    power is ``relative``^2 of the quantity's (an output's breaking power: its relative A;
    a layer's non-invariant power: the square root of its share): (t / relative)^2 with
    t = :func:`~symplug.precision.equivariant_relative`, at least :data:`BAND_LIMITED`."""
    return max(BAND_LIMITED, (equivariant_relative(precision) / relative) ** 2)


def _sectors_list(shares: dict[Sector, float], keep: Callable[[Sector], bool], top: int = 3) -> str:
    """The ``top`` largest kept sectors that round to at least 1%."""
    picked = sorted(((v, k) for k, v in shares.items() if keep(k) and v >= 0.005),
                    reverse=True)[:top]
    return ", ".join(f"({sector_key(k)}) {_pct(v)}" for v, k in picked)


def breaking_shares(output: OutputDiagnosis,
                    group: str | Group) -> tuple[dict[Sector, float], float] | None:
    """Shares of an output's breaking power per non-invariant sector, and the share
    above l_max, from its ``breaking_spectrum``; None when the result has none or the
    output has no breaking. The total is sum A^2 over samples (from ``per_sample``,
    accumulated around a reference response, so without cancellation), or the
    resolved breaking power where a Monte Carlo estimate of it comes out larger."""
    spec = output.breaking_spectrum
    if spec is None or not spec.power:
        return None
    inv = Group.parse(group).invariant_sector
    power = spec.power
    if output.per_sample:
        total = sum(s.variance * s.n_components for s in output.per_sample.values())
    else:
        total = spec.norm2 - power[inv]
    resolved = sum(v for k, v in power.items() if k != inv)
    total = max(total, resolved)  # resolved > A^2 only by Monte Carlo sampling noise
    if total <= 0.0:
        return None
    shares = {k: v / total for k, v in power.items() if k != inv}
    return shares, max(0.0, 1.0 - resolved / total)


def _broken_outputs(result: Diagnosis) -> Iterator[tuple[str, OutputDiagnosis,
                                                         dict[Sector, float], float]]:
    """(name, output, shares, above) for each output above round-off with a breaking spectrum."""
    for name, output in result.outputs.items():
        if not _is_broken(output, result.precision):
            continue
        split = breaking_shares(output, result.group)
        if split is not None:
            yield name, output, *split


# -- rules ---------------------------------------------------------------------------

def low_l_breaking(result: Diagnosis) -> list[Finding]:
    """``low-l-breaking`` (warning): at least :data:`LOW_L_SHARE` of an output's breaking
    power lies in rotational sectors 1 <= l <= :data:`LOW_L_MAX`, the orders that
    augmentation teaches first: the symmetry is under-learned."""
    found = []
    low = (lambda k: 1 <= k[0] <= LOW_L_MAX)
    for name, output, shares, _ in _broken_outputs(result):
        share = sum(v for k, v in shares.items() if low(k))
        if share >= LOW_L_SHARE:
            found.append(Finding(
                "low-l-breaking", "warning",
                f"{_pct(share)} of the breaking power of output '{name}' is in "
                f"{'l = 1' if LOW_L_MAX == 1 else f'1 <= l <= {LOW_L_MAX}'} sectors "
                f"({_sectors_list(shares, low)}); {_a(output)}",
                "the symmetry is under-learned at the lowest orders, which augmentation removes "
                "first: train or fine-tune with random group elements (augmented fine-tuning), "
                f"or average the model over a degree-{LOW_L_MAX} grid at inference",
                f"outputs.{name}"))
    return found


def _band_finding(what: str, shares: dict[Sector, float], above: float, lmax: int,
                  where: str, round_off: float) -> Finding | None:
    """``aliasing`` when ``above`` (share beyond l_max) exceeds :data:`TRUNCATION_TOL`,
    or power reaches the band edge l = l_max and some lies beyond it; a share up to
    ``round_off`` (:func:`round_off_share`) is round-off, never evidence."""
    edge = sum(v for k, v in shares.items() if k[0] == lmax)
    if above > max(TRUNCATION_TOL, round_off):
        evidence = f"{_pct(above)} of {what} lies above the resolved l_max = {lmax}"
    elif edge >= BAND_EDGE_SHARE and above > round_off:
        evidence = (f"{_pct(edge)} of {what} is at the band edge l = l_max = {lmax} and "
                    f"{above:.1e} above it")
    else:
        return None
    return Finding("aliasing", "warning", evidence,
                   f"the grid does not resolve it: raise the degree (and l_max) above {lmax} "
                   "until the convergence check agrees, or band-limit the input embedding "
                   "(smoother cutoffs, fewer high-frequency angular features)", where)


def aliasing(result: Diagnosis) -> list[Finding]:
    """``aliasing`` (warning): power at or beyond the grid's band limit.

    * per output: more than :data:`TRUNCATION_TOL` of the breaking power above l_max,
      or at least :data:`BAND_EDGE_SHARE` of it at l = l_max with some above (more
      than round-off can make, :func:`round_off_share`);
    * per layer: the same on the non-invariant part of the raw spectrum, where that
      part is more than round-off;
    * the convergence check: a spectrum fraction changing by more than
      :data:`CONVERGENCE_FRACTION_TOL`, or A by more than :data:`CONVERGENCE_RELATIVE_TOL`
      of itself, on the finer grid.
    """
    lmax, precision = result.lmax, result.precision
    found = []
    for name, output, shares, above in _broken_outputs(result):
        f = _band_finding(f"the breaking power of output '{name}' ({_a(output)})", shares,
                          above, lmax, f"outputs.{name}",
                          round_off_share(precision, output.relative_error))
        if f:
            found.append(f)
    inv = Group.parse(result.group).invariant_sector
    for name, layer in result.layers.items():
        if layer.truncation is None:  # a zero layer: no spectrum
            continue
        rest = 1.0 - layer.spectrum[inv]
        if rest <= round_off_share(precision):  # invariant up to round-off
            continue
        shares = {k: v / rest for k, v in layer.spectrum.items() if k != inv}
        f = _band_finding(f"the non-invariant power of layer '{name}'", shares,
                          max(0.0, layer.truncation) / rest, lmax, f"layers.{name}",
                          round_off_share(precision, math.sqrt(rest)))
        if f:
            found.append(f)
    found.extend(_convergence_findings(result))
    return found


def _convergence_excess(result: Diagnosis) -> tuple[float, str]:
    """(largest change over its tolerance, its text) of the convergence check: a spectrum
    fraction against :data:`CONVERGENCE_FRACTION_TOL`, A relative to itself (floored at
    round-off of the output's magnitude) against :data:`CONVERGENCE_RELATIVE_TOL`."""
    relative = result.convergence.relative_changes
    outputs = result.outputs
    worst, worst_text = 0.0, ""
    for key, change in result.convergence.changes.items():
        if not isinstance(key, tuple):  # a quantity of the caller's, not of a diagnosis
            continue
        kind, name, quantity = key[:3]
        if quantity == "spectrum":
            excess = change / CONVERGENCE_FRACTION_TOL
            text = f"{quantity_name(key)} changes by {change:.2e}"
        elif (kind == "outputs" and quantity == "equivariance_rmse" and name in outputs
              and (key in relative or _is_broken(outputs[name], result.precision))):
            # the check's relative change is floored at round-off, so it also catches an
            # A that aliases to zero on the grid (an output that looks unbroken there)
            rel = relative[key] if key in relative else change / outputs[name].equivariance_rmse
            excess = rel / CONVERGENCE_RELATIVE_TOL
            text = f"A of output '{name}' changes by {_pct(rel)} ({_a(outputs[name])})"
        else:
            continue
        if excess > worst:
            worst, worst_text = excess, text
    return worst, worst_text


def _check_grid_text(conv: Convergence) -> str:
    size = f"{'?' if conv.finer_size is None else conv.finer_size} elements"
    if conv.method == "rotated":
        return f"the same rule turned by a random rotation, {size}"
    if conv.method == "resampled":
        return f"another Monte Carlo sample, {size}"
    return f"degree {conv.finer_degree}, {size}"


def _items_text(n_samples: int | str, n_items: int | str, name: str | None) -> str:
    name = name or "samples"
    if n_items == n_samples or name == "samples":
        return f"{n_items} {name}"
    return f"{n_items} {name} ({n_samples} engine sample{'' if n_samples == 1 else 's'})"


def items_text(result: Mapping) -> str:
    """How much data a diagnosis result covers, in the user's items (``n_items``,
    ``item_name``): "5 structures", or "450 jets (29 engine samples)" where a sample
    holds several items. A result without them (an older symplug) counts samples."""
    n_samples = result.get("n_samples", "?")
    return _items_text(n_samples, result.get("n_items", n_samples), result.get("item_name"))


def sample_word(result: Mapping) -> str:
    """What one engine sample is called in text: the item name where every sample holds
    one item (``n_items`` == ``n_samples``, e.g. "structures"), else "samples"."""
    name = result.get("item_name") or "samples"
    return name if result.get("n_items", result.get("n_samples")) == result.get("n_samples") \
        else "samples"


def skipped_text(result: Mapping) -> str | None:
    """The samples a diagnosis left out (``skipped``), in the user's items: "2 failed
    structures", or "2 failed samples (32 jets)" where a sample holds several items;
    None when no sample failed (only e.g. the domain summary)."""
    failed = [s for s in result.get("skipped") or [] if s.get("index") is not None]
    if not failed:
        return None
    name = result.get("item_name") or "samples"
    if not any("n_items" in s for s in failed):  # one item per sample
        return f"{len(failed)} failed {name}"
    known = [s["n_items"] for s in failed if s.get("n_items") is not None]
    count = (f"{sum(known)} {name}" if len(known) == len(failed) else
             f"at least {sum(known)} {name}" if known else f"{name} not counted")
    return f"{len(failed)} failed sample{'' if len(failed) == 1 else 's'} ({count})"


PRECISION_SOURCES = {"declared": "declared", "model": "as the model states",
                     "parameters": "from its parameters",
                     "outputs": "from its output values",
                     "assumed": "assumed: the result does not state it"}


def precision_text(result: Diagnosis | Mapping) -> str:
    """One line on the precision a result's model computes in and the round-off it sets:
    "float32 (from its parameters): relative A below 1.2e-04 is round-off"."""
    precision = result.precision if isinstance(result, Diagnosis) else \
        Precision.from_dict(result.get("precision"))
    return (f"{precision.dtype} ({PRECISION_SOURCES[precision.source]}): relative A below "
            f"{equivariant_relative(precision):.1e} is round-off")


def convergence_verdict(result: Diagnosis | Mapping) -> str | None:
    """One line on the convergence check: the grid it used, the largest change relative
    to its tolerance and the verdict; None when the check did not run."""
    result = as_diagnosis(result)
    if not result.convergence.checked:
        return None
    worst, text = _convergence_excess(result)
    verdict = "not converged" if worst > 1.0 else "converged"
    detail = f"; largest: {text}" if text else ""
    return (f"grid convergence ({_check_grid_text(result.convergence)}): {verdict} "
            f"(tolerance: {_pct(CONVERGENCE_RELATIVE_TOL)} of A, {CONVERGENCE_FRACTION_TOL} "
            f"of a spectrum fraction){detail}")


def _convergence_findings(result: Diagnosis) -> list[Finding]:
    worst, worst_text = _convergence_excess(result)
    if worst <= 1.0:
        return []
    return [Finding("aliasing", "warning",
                    f"not converged: on the check grid ({_check_grid_text(result.convergence)}) "
                    f"{worst_text}",
                    f"the grid ({result.grid['size']} elements) does not resolve the "
                    "response: raise the degree until the convergence check agrees, or "
                    "band-limit the input embedding", "convergence")]


def odd_parity_breaking(result: Diagnosis) -> list[Finding]:
    """``odd-parity-breaking`` (warning; groups with improper elements): at least
    :data:`ODD_PARITY_SHARE` of an output's breaking power lies in sigma = -1 sectors.
    All of it in (0, -1) is the signature of a model that is rotation-equivariant on
    each coset but whose two cosets disagree: augmentation without inversion."""
    group = Group.parse(result.group)
    if not group.has_improper:
        return []
    improper, op = group.improper_name, group.improper_symbol
    found = []
    odd = (lambda k: k[1] == -1)
    for name, output, shares, _ in _broken_outputs(result):
        share = sum(v for k, v in shares.items() if odd(k))
        if share < ODD_PARITY_SHARE:
            continue
        remedy = (f"augment with {group.name} ({improper}s as well as rotations), not with "
                  f"{group.proper.name} alone, or symmetrise over the {improper}: "
                  f"y(x) -> (y(x) + rho({op})^-1 y({op} x)) / 2 at twice the cost")
        if isinstance(group, O3):  # that average removes exactly the sectors with sigma (-1)^l = -1
            removed = sum(v for k, v in shares.items() if k[1] * (-1) ** k[0] == -1)
            remedy += (f", which removes the inversion-odd sectors (0,-1), (1,+1), (2,-1), ...: "
                       f"{_pct(removed)} of this breaking")
        found.append(Finding(
            "odd-parity-breaking", "warning",
            f"{_pct(share)} of the breaking power of output '{name}' is in sigma = -1 sectors "
            f"({_sectors_list(shares, odd)}); {_a(output)}", remedy, f"outputs.{name}"))
    return found


def layer_invariance(result: Diagnosis) -> list[Finding]:
    """Across the named layers in order, on the data-set-centred invariant fraction:

    * ``invariance-reached`` (info): the first layer at or above :data:`INVARIANT_REACHED`;
    * ``invariance-lost``: the first layer more than :data:`INVARIANCE_DROP` below the best
      earlier one; a warning once invariance had been reached (invariant features do
      not become covariant unless raw covariant input is fed back in), info otherwise
      (an equivariant network may turn invariant content into covariant features).
    """
    found: list[Finding] = []
    history: list[tuple[str, float]] = []
    reached = lost = None
    for name, layer in result.layers.items():
        frac = layer.invariant_fraction_centered
        if frac is None:  # undefined (a zero or constant layer): no evidence either way
            continue
        best = max(history, key=lambda h: h[1]) if history else None
        trail = ", ".join(f"'{n}' {_pct(f)}" for n, f in history + [(name, frac)])
        if reached is None and frac >= INVARIANT_REACHED:
            reached = name
            found.append(Finding(
                "invariance-reached", "info",
                f"layer '{name}' is the first invariant one: centred invariant fraction "
                f"{frac:.4f} (layers in order: {trail})",
                "none needed; layers from here on can be read as invariant features",
                f"layers.{name}"))
        elif lost is None and best is not None and frac < best[1] - INVARIANCE_DROP:
            lost = name
            was_invariant = best[1] >= INVARIANT_REACHED
            found.append(Finding(
                "invariance-lost", "warning" if was_invariant else "info",
                f"layer '{name}' has centred invariant fraction {frac:.4f}, down from "
                f"{best[1]:.4f} at layer '{best[0]}' (layers in order: {trail})",
                f"layer '{name}' mixes non-invariant input back in (a skip connection from raw "
                "coordinates, an absolute-position feature): make that input invariant, or "
                "augment so that it is learned" if was_invariant else
                "none needed if the network carries covariant features on purpose; otherwise "
                f"find what layer '{name}' adds that is not invariant",
                f"layers.{name}"))
        history.append((name, frac))
    return found


def equivariance_vs_accuracy(result: Diagnosis) -> list[Finding]:
    """``equivariance-dominates-error``: from the bias-variance split
    (random-orientation RMSE^2 = symmetrised RMSE^2 + equivariance RMSE^2), the
    equivariance RMSE is at least :data:`COMPARABLE_RATIO` (warning) or
    :data:`DOMINANT_RATIO` (error) times the error of the symmetrised model."""
    found = []
    for name, output in result.outputs.items():
        split = output.bias_variance
        if split is None or not _is_broken(output, result.precision):
            continue
        eq, sym = split.equivariance_rmse, split.symmetrized_rmse
        total, units = split.total_rmse, output.units
        ratio = eq / sym if sym > 0 else math.inf
        if ratio < COMPARABLE_RATIO:
            continue
        share = eq * eq / (total * total) if total > 0 else 1.0
        found.append(Finding(
            "equivariance-dominates-error", "error" if ratio >= DOMINANT_RATIO else "warning",
            f"equivariance RMSE of output '{name}' {_quantity(eq, units)} is {ratio:.2f}x the "
            f"error of the symmetrised model {_quantity(sym, units)} (random-orientation RMSE "
            f"{_quantity(total, units)}): symmetry breaking makes {_pct(share)} of the squared "
            "error",
            "the symmetrised (group-averaged) model removes this part of the error at the cost "
            "of one evaluation per grid element; augmented fine-tuning removes it at no "
            "inference cost", f"outputs.{name}"))
    return found


def ood_growth(result: Diagnosis, reference: Diagnosis) -> list[Finding]:
    """``ood-growth``: A of an output on ``result`` is at least :data:`OOD_GROWTH`
    (warning) or :data:`OOD_GROWTH_ERROR` (error) times A on ``reference``, an
    in-distribution result of the same model, domain and group (e.g. MD frames
    against the test set). Raises :class:`SymplugError` if they are not comparable."""
    for key in ("domain", "group"):
        if getattr(result, key) != getattr(reference, key):
            raise SymplugError(f"cannot compare results of different {key}s: "
                               f"{getattr(result, key)!r} vs reference "
                               f"{getattr(reference, key)!r}")
    found = []
    for name, output in result.outputs.items():
        ref = reference.outputs.get(name)
        if ref is None or not _is_broken(output, result.precision):
            continue
        units = output.units
        if ref.units != units:
            raise SymplugError(f"output {name!r} is in {units!r} here and in "
                               f"{ref.units!r} in the reference")
        a, a_ref = output.equivariance_rmse, ref.equivariance_rmse
        growth = a / a_ref if a_ref > 0 else math.inf
        if growth < OOD_GROWTH:
            continue
        found.append(Finding(
            "ood-growth", "error" if growth >= OOD_GROWTH_ERROR else "warning",
            f"A of output '{name}' grows {growth:.2f}x out of distribution: "
            f"{_quantity(a, units)} on "
            f"{_items_text(result.n_samples, result.n_items, result.item_name)} vs "
            f"{_quantity(a_ref, units)} on the reference's "
            f"{_items_text(reference.n_samples, reference.n_items, reference.item_name)}",
            "the learned symmetry does not extrapolate: add such inputs to training with "
            "augmentation (augmented fine-tuning), or run the symmetrised (group-averaged) "
            "model on them", f"outputs.{name}"))
    return found


RULES: tuple[Callable[[Diagnosis], list[Finding]], ...] = (
    low_l_breaking, aliasing, odd_parity_breaking, layer_invariance, equivariance_vs_accuracy)


def findings(result: Diagnosis | Mapping, *,
             reference: Diagnosis | Mapping | None = None) -> list[Finding]:
    """All findings of a diagnosis ``result`` (a :class:`~symplug.diagnosis.Diagnosis`, or
    its README "Result format" dictionary), most severe first (stable within a severity,
    in the order of :data:`RULES`); with ``reference``, an in-distribution result to
    compare against, also :func:`ood_growth`."""
    result = as_diagnosis(result)
    found = [f for rule in RULES for f in rule(result)]
    if reference is not None:
        found.extend(ood_growth(result, as_diagnosis(reference)))
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))

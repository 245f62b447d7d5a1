"""The typed result of a diagnosis (:func:`symplug.diagnose.diagnosis_of`) and its JSON form.

Inside symplug a sector is an ``(l, sigma)`` tuple and a quantity of the convergence
check a tuple: ``("outputs", NAME, "equivariance_rmse")`` or ``("outputs" | "layers",
NAME, "spectrum", (l, sigma))``. Only :meth:`Diagnosis.to_dict` (the README "Result
format" dictionary) writes them as strings, ``"2,+1"`` and ``"layers.NAME.spectrum.2,+1"``;
:meth:`Diagnosis.from_dict` reads such a dictionary (e.g. JSON read from disk) back.
Spectra are fractions of the quantity's power (dimensionless) and powers in its units
squared; A is in the output's units.

The mathematics and design: docs/design.md, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Union

from .equivariance import BiasVariance, EquivarianceError
from .errors import SymplugError
from .groups import Sector
from .precision import ASSUMED, Precision
from .spectra import Spectrum, parse_sector_key, sector_key

SEVERITIES = ("error", "warning", "info")  # most severe first; findings are sorted so

# A quantity of the convergence check: a tuple as in the module docstring, or, for
# symplug.diagnose.convergence on the caller's own numbers, the caller's name.
QuantityKey = Union[tuple, str]


def quantity_name(key: QuantityKey) -> str:
    """The JSON name of a convergence quantity: its parts joined by dots, a sector
    written ``"l,sigma"`` (``("layers", "embed", "spectrum", (2, 1))`` ->
    ``"layers.embed.spectrum.2,+1"``); a string as it is."""
    if isinstance(key, str):
        return key
    return ".".join(sector_key(part) if isinstance(part, tuple) else str(part) for part in key)


def parse_quantity_name(name: str) -> QuantityKey:
    """Inverse of :func:`quantity_name` for the quantities of a diagnosis (a name may
    hold dots; the sector key holds none); any other name is returned as it is."""
    kind, _, rest = name.partition(".")
    if kind == "outputs" and rest.endswith(".equivariance_rmse"):
        return (kind, rest[: -len(".equivariance_rmse")], "equivariance_rmse")
    if kind in ("outputs", "layers") and ".spectrum." in rest:
        owner, _, sector = rest.rpartition(".spectrum.")
        return (kind, owner, "spectrum", parse_sector_key(sector))
    return name


def _sector_keys(values: Mapping) -> dict:
    """{(l, sigma): v} as {"l,sigma": v}; other keys (a standard error's "truncation") as is."""
    return {sector_key(k) if isinstance(k, tuple) else k: v for k, v in values.items()}


def _sectors(values: Mapping) -> dict:
    """Inverse of :func:`_sector_keys`."""
    return {parse_sector_key(k) if "," in k else k: v for k, v in values.items()}


@dataclass(frozen=True)
class Finding:
    """One diagnosed failure mode (or fact): a stable ``code``, a ``severity``
    (``"info"``, ``"warning"`` or ``"error"``), the ``evidence`` with the numbers,
    the ``remedy``, and ``where`` (``"outputs.NAME"``, ``"layers.NAME"``,
    ``"convergence"``) when it concerns one part of the result."""

    code: str
    severity: str
    evidence: str
    remedy: str
    where: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise SymplugError(f"finding {self.code!r}: severity {self.severity!r} is not one "
                               f"of {', '.join(SEVERITIES)}")

    def to_dict(self) -> dict:
        """The README "Result format" record: code, severity, evidence, remedy, where."""
        return {"code": self.code, "severity": self.severity, "evidence": self.evidence,
                "remedy": self.remedy, "where": self.where}


@dataclass(frozen=True)
class SpectrumRecord:
    """B of a quantity as a result states it: ``fractions`` (JSON ``"spectrum"``) and
    ``power`` per (l, sigma) sector, the share ``truncation`` above l_max, ``norm2`` (the
    Haar mean of |u|^2), the invariant fraction, and on Monte Carlo grids the jackknife
    standard errors (per sector and ``"truncation"``). None: undefined (a zero response)."""

    fractions: dict[Sector, float | None]
    power: dict[Sector, float]
    truncation: float | None
    norm2: float
    invariant_fraction: float | None
    stderr: dict[Sector | str, float] | None = None

    @classmethod
    def of(cls, spectrum: Spectrum) -> SpectrumRecord:
        return cls(spectrum.fractions, dict(spectrum.power), spectrum.truncation,
                   spectrum.norm2, spectrum.invariant_fraction,
                   None if spectrum.stderr is None else dict(spectrum.stderr))

    def to_dict(self) -> dict:
        out = {"spectrum": _sector_keys(self.fractions), "power": _sector_keys(self.power),
               "truncation": self.truncation, "norm2": self.norm2,
               "invariant_fraction": self.invariant_fraction}
        if self.stderr is not None:
            out["stderr"] = _sector_keys(self.stderr)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> SpectrumRecord:
        return cls(_sectors(d.get("spectrum") or {}), _sectors(d.get("power") or {}),
                   d.get("truncation"), d.get("norm2", 0.0), d.get("invariant_fraction"),
                   None if d.get("stderr") is None else _sectors(d["stderr"]))


@dataclass(frozen=True)
class SampleError:
    """A of one output on one sample: RMSE (output's units), relative error (None for a
    zero response), ``variance`` A^2/d over the d = ``n_components`` components, and its
    jackknife standard error on Monte Carlo grids."""

    rep: str
    equivariance_rmse: float
    relative_error: float | None
    variance: float
    n_components: int
    variance_stderr: float | None = None

    @classmethod
    def of(cls, error: EquivarianceError) -> SampleError:
        d = error.to_dict()
        return cls(d["rep"], d["equivariance_rmse"], d["relative_error"], d["variance"],
                   d["n_components"], d.get("variance_stderr"))

    def to_dict(self) -> dict:
        out = {"rep": self.rep, "equivariance_rmse": self.equivariance_rmse,
               "relative_error": self.relative_error, "variance": self.variance,
               "n_components": self.n_components}
        if self.variance_stderr is not None:
            out["variance_stderr"] = self.variance_stderr
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> SampleError:
        return cls(d.get("rep", ""), d["equivariance_rmse"], d.get("relative_error"),
                   d["variance"], d["n_components"], d.get("variance_stderr"))


@dataclass(frozen=True)
class SampleSpectrum:
    """B of a quantity on one sample: fractions and power per (l, sigma) sector."""

    fractions: dict[Sector, float]
    power: dict[Sector, float]

    @classmethod
    def of(cls, spectrum: Spectrum) -> SampleSpectrum:
        return cls(spectrum.fractions, dict(spectrum.power))

    def to_dict(self) -> dict:
        return {"spectrum": _sector_keys(self.fractions), "power": _sector_keys(self.power)}

    @classmethod
    def from_dict(cls, d: Mapping) -> SampleSpectrum:
        return cls(_sectors(d["spectrum"]), _sectors(d["power"]))


def _indexed(records: Mapping[int, Any]) -> list[dict]:
    return [{"index": i, **r.to_dict()} for i, r in records.items()]


def _by_index(records: list[Mapping] | None, of: Any) -> dict[int, Any] | None:
    return None if records is None else {r["index"]: of(r) for r in records}


@dataclass(frozen=True)
class OutputDiagnosis:
    """One output over the data set: its representation and units, A (RMSE in the
    output's units, relative error, samples, Monte Carlo standard error), B of the output
    and of its breaking response rho(g)^-1 y(g x), per sample by data-set index (None
    unless ``per_sample``), the bias-variance split over the ``n_labelled`` samples with
    labels, the relative change of A on the check grid and whether it is within the
    evaluation's 1 %, and the reason why its relative numbers are ``undefined``."""

    rep: str
    units: str
    equivariance_rmse: float
    relative_error: float | None
    n_samples: int
    spectrum: SpectrumRecord
    breaking_spectrum: SpectrumRecord | None = None
    equivariance_rmse_stderr: float | None = None
    per_sample: dict[int, SampleError] | None = None
    per_sample_spectrum: dict[int, SampleSpectrum] | None = None
    bias_variance: BiasVariance | None = None
    n_labelled: int = 0
    grid_change: float | None = None
    grid_converged: bool | None = None
    undefined: str | None = None

    def as_undefined(self, reason: str) -> OutputDiagnosis:
        """This output with its relative error, invariant fraction, truncation and
        spectrum fractions undefined (None), ``reason`` stating why."""
        spectrum = replace(self.spectrum, fractions={k: None for k in self.spectrum.fractions},
                           truncation=None, invariant_fraction=None)
        return replace(self, relative_error=None, spectrum=spectrum, undefined=reason)

    def to_dict(self) -> dict:
        out = {"rep": self.rep, "units": self.units, "equivariance_rmse": self.equivariance_rmse,
               "relative_error": self.relative_error, "n_samples": self.n_samples}
        if self.equivariance_rmse_stderr is not None:
            out["equivariance_rmse_stderr"] = self.equivariance_rmse_stderr
        out.update(self.spectrum.to_dict())
        if self.breaking_spectrum is not None:
            out["breaking_spectrum"] = self.breaking_spectrum.to_dict()
        if self.per_sample is not None:
            out["per_sample"] = _indexed(self.per_sample)
        if self.per_sample_spectrum is not None:
            out["per_sample_spectrum"] = _indexed(self.per_sample_spectrum)
        if self.bias_variance is not None:
            out["bias_variance"] = {**self.bias_variance.to_dict(), "n_labelled": self.n_labelled}
        if self.grid_change is not None:
            out["grid_change"] = self.grid_change
            out["grid_converged"] = self.grid_converged
        if self.undefined is not None:
            out["undefined"] = self.undefined
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> OutputDiagnosis:
        bv = d.get("bias_variance")
        breaking = d.get("breaking_spectrum")
        return cls(
            rep=d.get("rep", ""), units=d.get("units", ""),
            equivariance_rmse=d["equivariance_rmse"], relative_error=d.get("relative_error"),
            n_samples=d.get("n_samples", 0), spectrum=SpectrumRecord.from_dict(d),
            breaking_spectrum=SpectrumRecord.from_dict(breaking) if breaking else None,
            equivariance_rmse_stderr=d.get("equivariance_rmse_stderr"),
            per_sample=_by_index(d.get("per_sample"), SampleError.from_dict),
            per_sample_spectrum=_by_index(d.get("per_sample_spectrum"), SampleSpectrum.from_dict),
            bias_variance=BiasVariance(bv["random_orientation_rmse"], bv["symmetrized_rmse"],
                                       bv["equivariance_rmse"], bv["symmetrized_mae"])
            if bv else None,
            n_labelled=bv.get("n_labelled", 0) if bv else 0, grid_change=d.get("grid_change"),
            grid_converged=d.get("grid_converged"), undefined=d.get("undefined"))


@dataclass(frozen=True)
class LayerDiagnosis:
    """B of one layer over the data set, raw and data-set centred (the per-feature
    data-set mean of the orbit means removed: only the invariant sector changes), and
    per sample in data order (None unless ``per_sample``). Fractions of nothing are
    None, with the reason in ``undefined``: all of them for a layer that is 0 everywhere,
    the centred ones for a layer that is the same on every copy of every sample."""

    spectrum: dict[Sector, float]
    power: dict[Sector, float]
    truncation: float
    spectrum_centered: dict[Sector, float]
    truncation_centered: float
    invariant_fraction: float
    invariant_fraction_centered: float
    per_sample_invariant_fraction: tuple[float | None, ...] | None = None
    per_sample_spectrum: dict[int, SampleSpectrum] | None = None
    undefined: str | None = None

    def as_undefined(self, reason: str, raw: bool) -> LayerDiagnosis:
        """This layer with its centred spectrum, truncation and invariant fraction
        undefined (None), and with ``raw`` its raw ones and per-sample fractions too;
        ``reason`` stating why."""
        layer = replace(self, spectrum_centered={k: None for k in self.spectrum_centered},
                        truncation_centered=None, invariant_fraction_centered=None,
                        undefined=reason)
        if not raw:
            return layer
        samples = self.per_sample_spectrum
        return replace(
            layer, spectrum={k: None for k in self.spectrum}, truncation=None,
            invariant_fraction=None,
            per_sample_invariant_fraction=None if self.per_sample_invariant_fraction is None
            else tuple(None for _ in self.per_sample_invariant_fraction),
            per_sample_spectrum=None if samples is None else {
                i: replace(r, fractions={k: None for k in r.fractions}) for i, r in samples.items()})

    def to_dict(self) -> dict:
        out = {"spectrum": _sector_keys(self.spectrum), "power": _sector_keys(self.power),
               "truncation": self.truncation,
               "spectrum_centered": _sector_keys(self.spectrum_centered),
               "truncation_centered": self.truncation_centered,
               "invariant_fraction": self.invariant_fraction,
               "invariant_fraction_centered": self.invariant_fraction_centered}
        if self.per_sample_invariant_fraction is not None:
            out["per_sample_invariant_fraction"] = list(self.per_sample_invariant_fraction)
        if self.per_sample_spectrum is not None:
            out["per_sample_spectrum"] = _indexed(self.per_sample_spectrum)
        if self.undefined is not None:
            out["undefined"] = self.undefined
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerDiagnosis:
        fractions = d.get("per_sample_invariant_fraction")
        return cls(_sectors(d["spectrum"]), _sectors(d.get("power") or {}), d["truncation"],
                   _sectors(d.get("spectrum_centered") or {}), d.get("truncation_centered"),
                   d.get("invariant_fraction"), d["invariant_fraction_centered"],
                   None if fractions is None else tuple(fractions),
                   _by_index(d.get("per_sample_spectrum"), SampleSpectrum.from_dict),
                   d.get("undefined"))


@dataclass(frozen=True)
class Convergence:
    """The grid-convergence check: how it made the check grid (``method``: "rotated",
    "finer" or "resampled"; None: not checked), that grid, and per quantity the absolute
    change and the change relative to the quantity (:data:`QuantityKey`), with the
    largest of each and the quantity of the largest relative one."""

    method: str | None = None
    finer_degree: int | None = None
    finer_size: int | None = None
    check_grid: dict | None = None
    max_abs_change: float | None = None
    max_rel_change: float | None = None
    worst_quantity: QuantityKey | None = None
    changes: dict[QuantityKey, float] = field(default_factory=dict)
    relative_changes: dict[QuantityKey, float] = field(default_factory=dict)

    @property
    def checked(self) -> bool:
        return self.method is not None

    def to_dict(self) -> dict:
        if not self.checked:
            return {"finer_degree": None, "max_abs_change": None}
        return {"method": self.method, "finer_degree": self.finer_degree,
                "finer_size": self.finer_size, "check_grid": self.check_grid,
                "max_abs_change": self.max_abs_change, "max_rel_change": self.max_rel_change,
                "worst_quantity": None if self.worst_quantity is None
                else quantity_name(self.worst_quantity),
                "changes": {quantity_name(k): v for k, v in self.changes.items()},
                "relative_changes": {quantity_name(k): v for k, v in self.relative_changes.items()}}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Convergence:
        d = d or {}
        method = d.get("method") or ("finer" if d.get("finer_degree") is not None else None)
        if method is None:
            return cls()
        worst = d.get("worst_quantity")
        return cls(method, d.get("finer_degree"), d.get("finer_size"), d.get("check_grid"),
                   d.get("max_abs_change"), d.get("max_rel_change"),
                   None if worst is None else parse_quantity_name(worst),
                   {parse_quantity_name(k): v for k, v in (d.get("changes") or {}).items()},
                   {parse_quantity_name(k): v
                    for k, v in (d.get("relative_changes") or {}).items()})


@dataclass(frozen=True)
class Skipped:
    """A part of a run left out: a sample (data-set ``index``) with the ``reason`` and,
    where the domain counts items (``items_counted``), its ``n_items`` (None: it could
    not be counted); or a ``stage`` of the domain's summary (``index`` None)."""

    index: int | None
    reason: str
    stage: str | None = None
    items_counted: bool = False
    n_items: int | None = None

    def to_dict(self) -> dict:
        if self.stage is not None:
            return {"index": self.index, "stage": self.stage, "reason": self.reason}
        return {"index": self.index, "reason": self.reason,
                **({"n_items": self.n_items} if self.items_counted else {})}

    @classmethod
    def from_dict(cls, d: Mapping) -> Skipped:
        return cls(d.get("index"), d.get("reason", ""), d.get("stage"), "n_items" in d,
                   d.get("n_items"))


@dataclass(frozen=True)
class Diagnosis:
    """A diagnosis of a model on a data set (README "Result format"): the domain, the
    group (its name), the grid (``Grid.describe()``) and band ``lmax`` of the spectra,
    the ``n_samples`` samples kept and the user's ``n_items`` in them (``item_name``),
    the convergence check, every output and layer in order, the parts left out (None
    without ``skip_failures``), the domain's summary (None: none) and the findings."""

    symplug_version: str
    domain: str
    group: str
    grid: dict
    lmax: int
    n_samples: int
    n_items: int
    item_name: str
    convergence: Convergence
    outputs: dict[str, OutputDiagnosis]
    layers: dict[str, LayerDiagnosis]
    skipped: tuple[Skipped, ...] | None = None
    summary: dict | None = None
    findings: tuple[Finding, ...] = ()
    precision: Precision = ASSUMED

    def to_dict(self) -> dict:
        """The README "Result format" dictionary (JSON-ready)."""
        out: dict[str, Any] = {"symplug_version": self.symplug_version, "kind": "diagnosis",
                               "domain": self.domain, "group": self.group, "grid": self.grid,
                               "lmax": self.lmax, "n_samples": self.n_samples,
                               "n_items": self.n_items, "item_name": self.item_name,
                               "precision": self.precision.to_dict(),
                               "convergence": self.convergence.to_dict()}
        if self.skipped is not None:
            out["skipped"] = [s.to_dict() for s in self.skipped]
        out["outputs"] = {name: o.to_dict() for name, o in self.outputs.items()}
        out["layers"] = {name: layer.to_dict() for name, layer in self.layers.items()}
        if self.summary is not None:
            out["summary"] = self.summary
        out["findings"] = [f.to_dict() for f in self.findings]
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Diagnosis:
        """The diagnosis of a result dictionary (:meth:`to_dict`, or the JSON of an
        earlier symplug: keys it lacks read as absent, a missing precision as float64,
        source ``"assumed"``)."""
        skipped = d.get("skipped")
        return cls(
            symplug_version=d.get("symplug_version", ""), domain=d.get("domain", ""),
            group=d["group"], grid=d["grid"], lmax=d.get("lmax", d["grid"].get("degree")),
            n_samples=d.get("n_samples", 0), n_items=d.get("n_items", d.get("n_samples", 0)),
            item_name=d.get("item_name") or "samples",
            convergence=Convergence.from_dict(d.get("convergence")),
            outputs={n: OutputDiagnosis.from_dict(o) for n, o in (d.get("outputs") or {}).items()},
            layers={n: LayerDiagnosis.from_dict(v) for n, v in (d.get("layers") or {}).items()},
            skipped=None if skipped is None else tuple(Skipped.from_dict(s) for s in skipped),
            summary=d.get("summary"),
            findings=tuple(Finding(**f) for f in d.get("findings") or ()),
            precision=Precision.from_dict(d.get("precision")))


def as_diagnosis(result: Diagnosis | Mapping) -> Diagnosis:
    """``result`` as a :class:`Diagnosis` (a result dictionary is read with
    :meth:`Diagnosis.from_dict`)."""
    return result if isinstance(result, Diagnosis) else Diagnosis.from_dict(result)

"""A diagnosis as metatomic's ``SymmetrizedModel`` writes it, and back.

metatomic's ``SymmetrizedModel`` returns, for an output ``<name>``:

* ``o3::variance::<name>``: A^2/d, the orbit variance averaged over the components of
  each sample. Keys ``(o3_lambda, o3_sigma)``, the representation of the target (``_``
  for a target it does not decompose); samples as the output (``system``, or
  ``system, atom``); no components; the output's properties.
* ``o3::character_projection::<name>``: B_{l,sigma}, the power of the orbit
  y(g x) in the O(3) sector (l, sigma), unnormalised (in the output's units
  squared; summed over all sectors, the Haar mean of |y|^2). Keys ``(o3_lambda,
  o3_sigma, chi_lambda, chi_sigma)``: the target's representation, then the sector;
  samples as the output; components the target's ``o3_mu``; the output's properties.

These are the numbers of a symplug O3 diagnosis, with the same quadrature. symplug's
result keeps per-structure totals, so :func:`to_tensormaps` writes one sample per
structure (``system``, the sample's index in the data set), A^2/d averaged over all
components of the structure, and B summed over them: exactly metatomic's layout for
a per-structure scalar (e.g. ``energy``); for a per-atom or vector output, the atoms
and the ``o3_mu`` components are summed (B) or averaged (A^2/d). A representation that
is not one irreducible block keeps no target columns in the keys. Properties: one,
named after the output, value 0 (as metatomic models label an energy).

:func:`from_tensormaps` reads either layout back into the ``"outputs"`` form of
:func:`symplug.diagnose`: per structure, A^2/d is the component-weighted mean of its
rows (a block of a ``(o3_lambda, o3_sigma)`` key weighs 2 o3_lambda + 1) and
B_{l,sigma} the sum of its rows. The data-set numbers follow :func:`symplug.diagnose`
(A RMSE over structures, powers summed). The spectrum fractions divide by the Haar
mean of |y|^2, which needs the O(3) average ``<name>`` (|Pi|^2 + A^2); without it they
are fractions of the power up to the highest chi_lambda (truncation 0).

Units: values are in the squared units of the result, times ``scale`` (per output: a
number, or one per structure indexed by the ``system`` label) when the TensorMaps use
other units, e.g. eV for a result in meV/atom.

:func:`sector_tensormap` is the one builder of symplug's own spectra TensorMaps (the
report's ``<name>_spectra.mts``, the training track's ``track.mts``): keys ``(chi_lambda,
chi_sigma)``, one block per sector.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import quote, unquote

import numpy as np

from .errors import SymplugError
from .representations import representation
from .spectra import parse_sector_key, sector_key, sectors

if TYPE_CHECKING:
    import metatensor

VARIANCE = "o3::variance::"
CHARACTER_PROJECTION = "o3::character_projection::"

Scale = Mapping[str, "float | Sequence[float]"]


def _factor(scale: Scale | None, name: str, system: int) -> float:
    """The factor from the TensorMaps' squared units to the result's, for ``system``."""
    value = (scale or {}).get(name, 1.0)
    return float(value) if np.isscalar(value) else float(value[system])


def _labels(names: Sequence[str], rows) -> metatensor.Labels:
    import metatensor

    return metatensor.Labels(list(names), np.asarray(rows, dtype=np.int32).reshape(-1, len(names)))


def sector_tensormap(sectors: Sequence[tuple[int, int]], sample_names: Sequence[str],
                     samples: Sequence[Sequence[int]], values: Sequence[Any],
                     property_name: str, torch: bool = False):
    """A TensorMap of per-sector values: keys ``(chi_lambda, chi_sigma)`` (the O(3) sector
    of the orbit content as metatomic names it, sigma 0 without parity), one block per
    entry of ``sectors``, in that order; in every block the rows ``samples`` (named
    ``sample_names``), no components and properties ``property_name`` 0 .. n-1;
    ``values[i]``: the (rows, n) float64 values of sector ``i``. metatensor-core, or
    metatensor-torch with ``torch``."""
    if torch:
        import torch as backend
        from metatensor.torch import Labels, TensorBlock, TensorMap

        def array(rows, dtype: str):
            return backend.tensor(rows, dtype=getattr(backend, dtype))
    else:
        from metatensor import Labels, TensorBlock, TensorMap

        def array(rows, dtype: str):
            return np.asarray(rows, dtype=dtype)

    blocks = [array(v, "float64") for v in values]
    rows = Labels(list(sample_names), array(samples, "int32"))
    properties = Labels([property_name],
                        array([[k] for k in range(blocks[0].shape[1] if blocks else 0)], "int32"))
    keys = Labels(["chi_lambda", "chi_sigma"], array([list(s) for s in sectors], "int32"))
    return TensorMap(keys, [TensorBlock(values=v, samples=rows, components=[],
                                        properties=properties) for v in blocks])


def to_tensormaps(result: dict, names: Mapping[str, str] | None = None,
                  scale: Scale | None = None,
                  units: Mapping[str, str] | None = None) -> dict[str, metatensor.TensorMap]:
    """``o3::variance::<name>`` and ``o3::character_projection::<name>`` metatensor-core
    TensorMaps of every output of an O3 ``result`` (:func:`symplug.diagnose`, with its
    per-sample lists).

    ``names`` maps symplug output names to the names written (default: the same);
    the values are the result's divided by ``scale`` (see the module docstring).
    Each TensorMap's info ``unit`` is ``(unit)^2``, as metatomic declares these
    outputs: ``units[name]``, else the result's units when ``scale`` leaves the
    output alone, else empty.
    """
    import metatensor

    if result.get("group") != "O3":
        raise SymplugError(f"metatomic's O(3) TensorMaps need an O3 diagnosis, not "
                           f"{result.get('group')!r}")
    names, units = dict(names or {}), dict(units or {})
    tensors = {}
    for name, entry in result["outputs"].items():
        if "per_sample" not in entry:
            raise SymplugError(f"output {name!r} has no per-sample results (per_sample=False)")
        written = names.get(name, name)
        unit = units.get(name, "" if name in (scale or {}) else entry.get("units") or "")
        rep = representation(entry["rep"]).sectors
        target = [list(rep[0])] if len(rep) == 1 else []  # one irreducible block, or none
        scalar = bool(target) and target[0][0] == 0
        properties = _labels([written], [[0]])

        rows = entry["per_sample"]
        samples = _labels(["system"], [[r["index"]] for r in rows])
        values = np.array([[r["variance"] / _factor(scale, name, r["index"])] for r in rows])
        keys = _labels(["o3_lambda", "o3_sigma"], target) if target else _labels(["_"], [[0]])
        block = metatensor.TensorBlock(values, samples, [], properties)
        variance = metatensor.TensorMap(keys, [block])

        rows = entry["per_sample_spectrum"]
        samples = _labels(["system"], [[r["index"]] for r in rows])
        components = [_labels(["o3_mu"], [[0]])] if scalar else []
        blocks, key_rows = [], []
        for l, sigma in sectors("O3", result["lmax"]):
            power = [r["power"][sector_key((l, sigma))] / _factor(scale, name, r["index"])
                     for r in rows]
            shape = (len(rows), 1, 1) if scalar else (len(rows), 1)
            blocks.append(metatensor.TensorBlock(np.array(power).reshape(shape), samples,
                                                 components, properties))
            key_rows.append([*(target[0] if target else []), l, sigma])
        columns = (["o3_lambda", "o3_sigma"] if target else []) + ["chi_lambda", "chi_sigma"]
        projection = metatensor.TensorMap(_labels(columns, key_rows), blocks)

        for tensor in (variance, projection):
            tensor.set_info("unit", f"({unit})^2" if unit else "")
        tensors[VARIANCE + written] = variance
        tensors[CHARACTER_PROJECTION + written] = projection
    return tensors


def _per_system(items, scale: Scale | None, name: str, weighted: bool = False,
                square: bool = False) -> dict[int, tuple[float, float]]:
    """{system: (sum of w * value, sum of w)} over the rows of the (key, block) pairs
    ``items``, every component and property counted (values squared with ``square``),
    w = 2 o3_lambda + 1 when ``weighted`` and the key names it, else 1; values times
    ``scale``."""
    sums: dict[int, list[float]] = {}
    for key, block in items:
        weight = 1.0
        if weighted and "o3_lambda" in key.names:
            weight = 2.0 * int(key["o3_lambda"]) + 1.0
        values = np.asarray(block.values, dtype=np.float64).reshape(len(block.samples), -1)
        values = values ** 2 if square else values
        for system, row in zip(np.asarray(block.samples.column("system")).tolist(), values):
            total = sums.setdefault(int(system), [0.0, 0.0])
            total[0] += weight * float(row.sum()) * _factor(scale, name, int(system))
            total[1] += weight * row.size
    return {s: (v[0], v[1]) for s, v in sums.items()}


def from_tensormaps(tensors: Mapping[str, object], names: Mapping[str, str] | None = None,
                    scale: Scale | None = None) -> dict:
    """The ``{"outputs": {name: entry}}`` of a diagnosis from metatomic-style TensorMaps
    (``o3::variance::<name>``, optionally ``o3::character_projection::<name>`` and the
    O(3) average ``<name>``; metatensor-core TensorMaps, or any with the same API and
    array-convertible values).

    ``names`` maps symplug output names to the names in ``tensors`` (default: the
    same); ``scale`` multiplies the values into the result's squared units, keyed by
    the symplug name. Each entry holds ``equivariance_rmse`` (sqrt of the mean A^2/d
    over structures), ``n_samples`` and ``per_sample`` (``index``, ``variance``,
    ``equivariance_rmse``); with the average, ``relative_error`` and ``norm2``; with
    the projections, ``power``, ``spectrum``, ``truncation``, ``invariant_fraction``
    and ``per_sample_spectrum`` (``index``, ``spectrum``, ``power``).
    """
    back = {v: k for k, v in (names or {}).items()}
    outputs = {}
    for request in tensors:
        if not request.startswith(VARIANCE):
            continue
        source = request[len(VARIANCE):]
        name = back.get(source, source)
        sums = _per_system(tensors[request].items(), scale, name, weighted=True)
        variance = {s: total / weight for s, (total, weight) in sorted(sums.items())}
        entry = {"equivariance_rmse": math.sqrt(sum(variance.values()) / len(variance)),
                 "n_samples": len(variance),
                 "per_sample": [{"index": s, "variance": v, "equivariance_rmse": math.sqrt(v)}
                                for s, v in variance.items()]}
        norm2 = None
        if source in tensors:  # int |y|^2 = |Pi|^2 + A^2 per structure, A^2 = d A^2/d
            mean = _per_system(tensors[source].items(), scale, name, square=True)
            a2 = {s: v * mean[s][1] for s, v in variance.items()}
            norm2 = {s: mean[s][0] + a2[s] for s in variance}
            total = sum(norm2.values())
            entry["relative_error"] = math.sqrt(sum(a2.values()) / total) if total else 0.0
            entry["norm2"] = total
        if CHARACTER_PROJECTION + source in tensors:
            entry.update(_spectra(tensors[CHARACTER_PROJECTION + source], list(variance),
                                  norm2, scale, name))
        outputs[name] = entry
    return {"outputs": outputs}


def _spectra(tensor, systems: list[int], norm2: dict[int, float] | None,
             scale: Scale | None, name: str) -> dict:
    """Power per sector ``"l,sigma"`` and the spectrum: per structure and summed; the
    fractions of ``norm2`` (per structure), else of the power resolved."""
    power: dict[int, dict[str, float]] = {s: {} for s in systems}
    for key, block in tensor.items():
        sector = sector_key((int(key["chi_lambda"]), int(key["chi_sigma"])))
        for s, (value, _) in _per_system([(key, block)], scale, name).items():
            power[s][sector] = power[s].get(sector, 0.0) + value
    order = sorted({k for p in power.values() for k in p},
                   key=lambda k: (parse_sector_key(k)[0], -parse_sector_key(k)[1]))

    def record(p: dict[str, float], n2: float) -> dict:
        return {"spectrum": {k: p.get(k, 0.0) / n2 if n2 > 0 else 0.0 for k in order},
                "power": {k: p.get(k, 0.0) for k in order}}

    norms = norm2 or {s: sum(power[s].values()) for s in systems}
    out = record({k: sum(power[s].get(k, 0.0) for s in systems) for k in order},
                 sum(norms.values()))
    out["truncation"] = 1.0 - sum(out["spectrum"].values()) if sum(norms.values()) > 0 else 0.0
    out["invariant_fraction"] = out["spectrum"].get("0,+1", 0.0)
    out["per_sample_spectrum"] = [{"index": s, **record(power[s], norms[s])} for s in systems]
    return out


def save(tensors: Mapping[str, object], folder: str | Path) -> dict[str, Path]:
    """Write each TensorMap to ``folder/<name>.mts``, the name percent-encoded
    (``o3%3A%3Avariance%3A%3Aenergy.mts``) so that ``::`` and ``/`` are safe in a file
    name; returns {name: path}."""
    import metatensor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, tensor in tensors.items():
        paths[name] = folder / f"{quote(name, safe='')}.mts"
        metatensor.save(str(paths[name]), tensor)
    return paths


def load(folder: str | Path) -> dict[str, metatensor.TensorMap]:
    """The TensorMaps :func:`save` wrote to ``folder``, by name."""
    import metatensor

    folder = Path(folder)
    if not folder.is_dir():
        raise SymplugError(f"{folder}: no such folder")
    return {unquote(path.name[:-len(".mts")]): metatensor.load(str(path))
            for path in sorted(folder.glob("*.mts"))}

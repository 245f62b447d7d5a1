"""Jets from ROOT files in the JetClass / weaver layout, and weaver-style predictions.

Input: TTree ``tree`` with jagged ``part_px``, ``part_py``, ``part_pz``, ``part_energy``
(GeV), optional ``jet_*`` observers and one-hot ``label_*`` branches. Jets are padded
to ``max_particles`` constituents (the leading ones in pT) with a mask; a constituent
that is exactly (0, 0, 0, 0) is padding (fixed-length layouts), not a particle.

Constituents must be physical: finite, |E|, |p| <= :data:`MAX_MOMENTUM`, E >= 0 and
E >= |p| within the tolerance m^2 >= -:data:`MASS2_TOLERANCE` E^2 - 1e-9 GeV^2 (about
|p| <= E (1 + 5e-4): massless particles stored in float32 or rounded energies pass).
Jets without constituents, with zero summed pT (no jet axis) or with an unphysical
constituent are skipped and counted (``JetSet.skipped``, by entry), never silently
dropped. Labels are refused, as an error naming the file, branch and jet, unless they
are one-hot: every ``label_*`` value 0 or 1 and exactly one set per jet (one label
branch alone: 0 or 1). Soft, smoothed, multi-hot, NaN or out-of-range labels are
never thresholded. A missing branch, a branch of the wrong type or jaggedness, a
non-ROOT or truncated file, a missing or empty tree, or constituent branches of
inconsistent lengths are errors naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import awkward as ak
import numpy as np
import uproot

from symplug import SymplugError

from .action import momenta

P4_BRANCHES = ("part_energy", "part_px", "part_py", "part_pz")
MASS2_TOLERANCE = 1e-3  # relative to E^2: m^2 < -tol * E^2 - 1e-9 GeV^2 is unphysical
ENERGY_TOLERANCE = 1e-9  # GeV: E < -tol is a negative energy
MAX_MOMENTUM = 1e6  # GeV (1 PeV, far above any collider): larger components are corrupt


@dataclass
class JetSet:
    """Padded jets: ``p4`` (N, P, 4) as (E, px, py, pz) in GeV, ``mask`` (N, P),
    ``labels`` (N, C) one-hot with ``label_names``, ``observers`` {name: (N,)},
    ``index`` the entry of each jet in the file, ``skipped`` [(entry, reason)]."""

    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    observers: dict[str, np.ndarray] = field(default_factory=dict)
    index: np.ndarray | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return int(self.p4.shape[0])

    def subset(self, rows: np.ndarray) -> "JetSet":
        return JetSet(self.p4[rows], self.mask[rows],
                      None if self.labels is None else self.labels[rows], list(self.label_names),
                      {k: v[rows] for k, v in self.observers.items()},
                      None if self.index is None else self.index[rows], [], self.source)


def concatenate(sets: Sequence[JetSet]) -> JetSet:
    """One :class:`JetSet` of ``sets`` in order (the same particle count, label names and
    observers; entries keep their files' indices)."""
    first = sets[0]
    for other in sets[1:]:
        if other.p4.shape[1] != first.p4.shape[1] or other.label_names != first.label_names \
                or sorted(other.observers) != sorted(first.observers):
            raise SymplugError(f"{other.source}: cannot join with {first.source} (particles "
                               f"{other.p4.shape[1]} vs {first.p4.shape[1]}, labels "
                               f"{other.label_names} vs {first.label_names})")
    labels = None if first.labels is None else np.concatenate([s.labels for s in sets])
    index = None if first.index is None else np.concatenate([s.index for s in sets])
    return JetSet(np.concatenate([s.p4 for s in sets]), np.concatenate([s.mask for s in sets]),
                  labels, list(first.label_names),
                  {k: np.concatenate([s.observers[k] for s in sets]) for k in first.observers},
                  index, [x for s in sets for x in s.skipped],
                  ", ".join(s.source for s in sets))


def _open_tree(path: Path, tree: str):
    if not path.exists():
        raise SymplugError(f"{path}: no such file")
    if path.is_dir():
        raise SymplugError(f"{path}: a folder, not a ROOT file")
    try:
        handle = uproot.open(path)
        found = handle.keys(cycle=False)
        ttree = handle[tree] if tree in handle else None
    except Exception as exc:
        raise SymplugError(f"{path}: not a readable ROOT file ({type(exc).__name__}: "
                           f"{_one_line(exc)})") from exc
    if ttree is None:
        raise SymplugError(f"{path}: no TTree {tree!r} (found {', '.join(found) or 'none'})")
    if not isinstance(ttree, (uproot.behaviors.TBranch.HasBranches,
                              uproot.behaviors.RNTuple.HasFields)):
        raise SymplugError(f"{path}: {tree!r} is a {getattr(ttree, 'classname', 'object')}, "
                           "not a TTree")
    return ttree


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (uproot's name the file over several)."""
    return " ".join(str(exc).split())[:300]


def _branches(ttree, path: Path, tree: str,
              labels: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(label branches, observer branches) of a TTree, its constituent branches checked."""
    names = set(ttree.keys())
    missing = [b for b in P4_BRANCHES if b not in names]
    if missing:
        raise SymplugError(f"{path}: TTree {tree!r} has no branch {missing[0]!r} "
                           f"(needs {', '.join(P4_BRANCHES)})")
    label_names = list(labels) if labels is not None else sorted(n for n in names
                                                                 if n.startswith("label_"))
    unknown = [n for n in label_names if n not in names]
    if unknown:
        raise SymplugError(f"{path}: unknown label branch {unknown[0]!r} "
                           f"(label branches: {', '.join(sorted(n for n in names if n.startswith('label_'))) or 'none'})")
    return label_names, sorted(n for n in names if n.startswith("jet_"))


def read_root(path: str | Path, tree: str = "tree", max_particles: int = 128,
              labels: Sequence[str] | None = None, entry_stop: int | None = None) -> JetSet:
    """Read and validate jets from a ROOT file (see the module docstring)."""
    path = Path(path)
    if int(max_particles) < 1:
        raise SymplugError(f"max_particles must be >= 1, got {max_particles}")
    ttree = _open_tree(path, tree)
    label_names, observers = _branches(ttree, path, tree, labels)
    if ttree.num_entries == 0:
        raise SymplugError(f"{path}: TTree {tree!r} has no entries (no jets)")
    try:
        arrays = ttree.arrays([*P4_BRANCHES, *label_names, *observers], entry_stop=entry_stop,
                              library="ak")
    except Exception as exc:
        raise SymplugError(f"{path}: cannot read TTree {tree!r}, truncated or corrupt? "
                           f"({type(exc).__name__}: {_one_line(exc)})") from exc
    return jets_from_arrays(arrays, label_names, observers, path, max_particles)


def jets_from_arrays(arrays: ak.Array, label_names: Sequence[str], observers: Sequence[str],
                     path: str | Path, max_particles: int = 128, first_entry: int = 0) -> JetSet:
    """Padded, validated jets from the branches of entries ``first_entry, ...`` of
    ``path`` (an awkward record array, e.g. one partition of :func:`read_root_dask`)."""
    path = Path(path)
    _check_layout(arrays, label_names, observers, path)
    counts = [ak.num(arrays[b]) for b in P4_BRANCHES]
    for b, c in zip(P4_BRANCHES[1:], counts[1:]):
        bad = np.nonzero(ak.to_numpy(c != counts[0]))[0]
        if len(bad):
            raise SymplugError(f"{path}: jet {first_entry + int(bad[0])} has {int(c[bad[0]])} "
                               f"entries in {b!r} but {int(counts[0][bad[0]])} in 'part_energy'")
    e, px, py, pz = (arrays[b] for b in P4_BRANCHES)
    pt = np.hypot(px, py)
    order = ak.argsort(pt, axis=1, ascending=False)  # keep the leading constituents
    p4 = [ak.to_numpy(ak.fill_none(ak.pad_none(x[order], max_particles, clip=True), 0.0))
          for x in (e, px, py, pz)]
    p4 = np.stack(p4, axis=-1).astype(np.float64).reshape(len(arrays), max_particles, 4)
    n_part = np.minimum(ak.to_numpy(counts[0]), max_particles)
    mask = (np.arange(max_particles)[None, :] < n_part[:, None]) & (p4 != 0).any(axis=-1)
    label_array = (np.stack([ak.to_numpy(arrays[n]).astype(np.float64) for n in label_names], 1)
                   if label_names else None)
    return _checked(p4, mask, label_array, list(label_names),
                    {n: ak.to_numpy(arrays[n]).astype(np.float64) for n in observers}, path,
                    first_entry)


def _numeric_depth(array: ak.Array) -> tuple[int, str]:
    """(list depth, dtype kind) of a branch read as an awkward array."""
    flat = ak.flatten(array, axis=None)
    try:
        kind = ak.to_numpy(flat).dtype.kind
    except Exception:  # records, strings
        kind = "O"
    return array.ndim - 1, kind


def _check_layout(arrays: ak.Array, label_names: Sequence[str], observers: Sequence[str],
                  path: Path) -> None:
    """Constituent branches: one list of numbers per jet; label and observer branches:
    one number per jet (bool, integer or float)."""
    for names, depth, what in ((P4_BRANCHES, 1, "a list of numbers per jet (jagged or "
                                "fixed-length)"),
                               ([*label_names, *observers], 0, "one number per jet")):
        for name in names:
            found, kind = _numeric_depth(arrays[name])
            if found != depth or kind not in "biuf":
                raise SymplugError(f"{path}: branch {name!r} is {ak.type(arrays[name]).content}"
                                   f", expected {what}")


def _check_labels(labels: np.ndarray, names: Sequence[str], path: Path,
                  first_entry: int) -> None:
    """Labels one-hot (see the module docstring), else an error naming the branch and jet."""
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        i, k = (int(x[0]) for x in np.nonzero(bad))
        raise SymplugError(f"{path}: jet {first_entry + i}: label branch {names[k]!r} is "
                           f"{labels[i, k]:g}; labels must be 0 or 1 (one-hot; soft or "
                           "smoothed labels are refused, not thresholded)")
    if len(names) > 1:
        hot = labels.sum(axis=1)
        wrong = np.nonzero(hot != 1)[0]
        if len(wrong):
            i = int(wrong[0])
            raise SymplugError(f"{path}: jet {first_entry + i} has {int(hot[i])} of the label "
                               f"branches {', '.join(names)} set; labels must be one-hot "
                               f"({'multi-hot' if hot[i] > 1 else 'unlabelled'} jets are "
                               "refused; select branches with labels=...)")


def _unphysical(p4: np.ndarray, mask: np.ndarray) -> dict[int, str]:
    """{row: reason} of jets that cannot be diagnosed (see the module docstring)."""
    reasons: dict[int, str] = {}
    finite = np.isfinite(p4).all(axis=(1, 2))
    huge = (np.abs(np.where(np.isfinite(p4), p4, 0.0)) > MAX_MOMENTUM).any(axis=(1, 2))
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite, huge: counted first
        m2 = momenta(p4).tau2
        jet = (p4 * mask[..., None]).sum(axis=1)
        negative_m2 = ((m2 < -MASS2_TOLERANCE * p4[..., 0] ** 2 - 1e-9) & mask).any(axis=1)
    negative_e = ((p4[..., 0] < -ENERGY_TOLERANCE) & mask).any(axis=1)
    no_axis = np.hypot(jet[:, 1], jet[:, 2]) < 1e-9
    checks = ((~mask.any(axis=1), "no constituents"),
              (~finite, "non-finite constituent momenta"),
              (huge, f"constituent momentum above {MAX_MOMENTUM:g} GeV"),
              (negative_e, "constituent with negative energy"),
              (negative_m2, f"constituent with E < |p| (m^2 < -{MASS2_TOLERANCE:g} E^2)"),
              (no_axis, "zero summed pT (no jet axis)"))
    for bad, reason in checks:
        for i in np.nonzero(bad)[0]:
            reasons.setdefault(int(i), reason)
    return reasons


def read_root_dask(paths: Sequence[str | Path], tree: str = "tree", max_particles: int = 128,
                   labels: Sequence[str] | None = None, step_size: int = 100_000) -> list:
    """Jets of many ROOT files as lazy partitions: ``uproot.dask`` splits the files into
    chunks of about ``step_size`` entries (dask-awkward partitions, never across files),
    and each becomes a ``dask.delayed`` :class:`JetSet` read and validated where it is
    computed. The branches of every file are checked here first (metadata only)."""
    import dask
    import uproot as up

    paths = [Path(p) for p in paths]
    if not paths:
        raise SymplugError("no ROOT files given")
    layout, sizes = None, []
    for path in paths:
        ttree = _open_tree(path, tree)
        found = _branches(ttree, path, tree, labels)
        if layout is not None and found != layout:
            raise SymplugError(f"{path}: branches {found} differ from {paths[0]}'s {layout}")
        layout = found
        sizes.append(int(ttree.num_entries))
    label_names, observers = layout
    lazy = up.dask({str(p): tree for p in paths}, step_size=int(step_size), open_files=True,
                   filter_name=[*P4_BRANCHES, *label_names, *observers])
    starts = np.cumsum([0] + sizes)
    out = []
    for part, first in zip(lazy.to_delayed(), lazy.divisions[:-1]):
        file = int(np.searchsorted(starts, first, side="right") - 1)
        out.append(dask.delayed(jets_from_arrays)(part, label_names, observers, paths[file],
                                                  max_particles, int(first - starts[file])))
    return out


def _checked(p4: np.ndarray, mask: np.ndarray, labels: np.ndarray | None,
             label_names: list[str], observers: dict[str, np.ndarray], path: Path,
             first_entry: int = 0) -> JetSet:
    """The usable jets, padding zeroed; jets without constituents or axis, or with an
    unphysical constituent (:func:`_unphysical`) are skipped and counted
    (by entry: ``first_entry`` is the entry of the first row); labels that are not
    one-hot are an error."""
    if labels is not None:
        _check_labels(labels, label_names, path, first_entry)
    reasons = _unphysical(p4, mask)
    jets = JetSet(np.where(mask[..., None], p4, 0.0), mask, labels, list(label_names), observers,
                  first_entry + np.arange(len(p4)), [], str(path))
    kept = jets.subset(np.array([i for i in range(len(p4)) if i not in reasons], dtype=int))
    kept.skipped = sorted((first_entry + i, r) for i, r in reasons.items())
    if len(kept) == 0:  # also for a partition: its skipped jets must not vanish unseen
        raise SymplugError(f"{path}: no usable jets in entries {first_entry} to "
                           f"{first_entry + len(p4) - 1} ({len(reasons)} skipped; first: "
                           f"{kept.skipped[0][1] if kept.skipped else 'empty'})")
    return kept


def write_root(path: str | Path, constituents: Sequence[np.ndarray], labels: dict[str, np.ndarray],
               observers: dict[str, np.ndarray] | None = None, tree: str = "tree") -> Path:
    """Write jets in the JetClass layout: ``constituents[i]`` (n_i, 4) as (E, px, py, pz)."""
    path = Path(path)
    parts = {b: ak.Array([c[:, k].astype(np.float64) for c in constituents])
             for k, b in enumerate(P4_BRANCHES)}
    with uproot.recreate(path) as handle:
        flat = {**{n: np.asarray(v) for n, v in labels.items()},
                **{n: np.asarray(v, dtype=np.float64) for n, v in (observers or {}).items()}}
        handle.mktree(tree, {**{b: ak.types.ListType(ak.types.NumpyType("float64"))
                                for b in parts}, **{n: v.dtype for n, v in flat.items()}})
        handle[tree].extend({**parts, **flat})
    return path


def write_jets(path: str | Path, jets: JetSet, tree: str = "tree") -> Path:
    """Write a labelled :class:`JetSet` (its unmasked constituents, one-hot labels as
    int32 and observers) in the JetClass layout: :func:`write_root` of its arrays."""
    constituents = [p[m] for p, m in zip(jets.p4, jets.mask)]
    labels = {n: jets.labels[:, k].astype(np.int32) for k, n in enumerate(jets.label_names)}
    return write_root(path, constituents, labels, jets.observers, tree)


def write_predictions(path: str | Path, jets: JetSet, scores: np.ndarray,
                      class_names: Sequence[str]) -> Path:
    """A weaver-style prediction file: TTree ``Events`` with ``label_*`` (truth),
    ``score_label_*`` and the ``jet_*`` observer branches, one entry per kept jet."""
    scores = np.asarray(scores, dtype=np.float64).reshape(len(jets), -1)
    if scores.shape[1] != len(class_names):
        raise SymplugError(f"{scores.shape[1]} score columns for {len(class_names)} classes")
    data = {f"score_{name}": scores[:, k] for k, name in enumerate(class_names)}
    if jets.labels is not None:
        data.update({name: jets.labels[:, k].astype(np.int32)
                     for k, name in enumerate(jets.label_names)})
    data.update(jets.observers)
    if jets.index is not None:
        data["entry"] = jets.index.astype(np.int64)
    with uproot.recreate(path) as handle:
        handle.mktree("Events", {k: np.asarray(v).dtype for k, v in data.items()})
        handle["Events"].extend(data)
    return Path(path)


def read_top_tagging_h5(path: str | Path, key: str = "table", max_particles: int = 200,
                        entry_stop: int | None = None) -> JetSet:
    """Jets from the Top Quark Tagging reference data layout: a pandas HDF5 table with
    columns ``E_i``, ``PX_i``, ``PY_i``, ``PZ_i`` (i = 0..199, zero-padded, GeV) and
    ``is_signal_new`` (1 for top). Labels become ``label_Top`` / ``label_QCD``; the same
    checks as :func:`read_root` apply."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise SymplugError(f"{path}: no such file")
    try:
        frame = pd.read_hdf(path, key=key, stop=entry_stop)
    except Exception as exc:  # pytables' HDF5ExtError, a torn file, another pandas key
        raise SymplugError(f"{path}: not a readable HDF5 table {key!r} ({type(exc).__name__}: "
                           f"{_one_line(exc)})") from exc
    columns = set(frame.columns)
    n = 0
    while f"E_{n}" in columns:
        n += 1
    missing = [c for c in ("E_0", "PX_0", "PY_0", "PZ_0", "is_signal_new") if c not in columns]
    if missing:
        raise SymplugError(f"{path}: table {key!r} has no column {missing[0]!r}")
    n = min(n, max_particles)
    parts = [frame[[f"{c}_{i}" for i in range(n)]].to_numpy(np.float64) for c in ("E", "PX", "PY", "PZ")]
    p4 = np.stack(parts, axis=-1)
    present = p4[..., 0] > 0
    # order the constituents by pT, as read_root does
    pt = np.where(present, np.hypot(p4[..., 1], p4[..., 2]), -1.0)
    order = np.argsort(-pt, axis=1, kind="stable")
    p4 = np.take_along_axis(p4, order[..., None], axis=1)
    mask = np.take_along_axis(present, order, axis=1)
    is_top = frame["is_signal_new"].to_numpy().astype(np.float64)
    bad = np.nonzero(~np.isin(is_top, (0.0, 1.0)))[0]
    if len(bad):
        raise SymplugError(f"{path}: jet {int(bad[0])}: column 'is_signal_new' is "
                           f"{is_top[bad[0]]:g}; it must be 0 or 1")
    return _checked(p4, mask, np.stack([1 - is_top, is_top], 1), ["label_QCD", "label_Top"],
                    {}, path)

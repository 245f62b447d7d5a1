"""Jets from ROOT files in the JetClass / weaver layout, and weaver-style predictions.

Input: TTree ``tree`` with jagged ``part_px``, ``part_py``, ``part_pz``, ``part_energy``
(GeV), optional ``jet_*`` observers and one-hot ``label_*`` branches. Jets are padded
to ``max_particles`` constituents (the leading ones in pT) with a mask. Jets without
constituents, with non-finite momenta or with a clearly negative constituent mass
squared are skipped and counted, never silently dropped; a missing branch, a
non-ROOT or truncated file, or constituent branches of inconsistent lengths are errors
naming the file and the field.
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
MASS2_TOLERANCE = 1e-3  # GeV^2, relative to E^2: m^2 < -tol * E^2 is unphysical


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


def _open_tree(path: Path, tree: str):
    if not path.exists():
        raise SymplugError(f"{path}: no such file")
    try:
        handle = uproot.open(path)
    except Exception as exc:
        raise SymplugError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from exc
    if tree not in handle:
        raise SymplugError(f"{path}: no TTree {tree!r} (found {', '.join(handle.keys()) or 'none'})")
    return handle[tree]


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
    ttree = _open_tree(path, tree)
    label_names, observers = _branches(ttree, path, tree, labels)
    try:
        arrays = ttree.arrays([*P4_BRANCHES, *label_names, *observers], entry_stop=entry_stop,
                              library="ak")
    except Exception as exc:
        raise SymplugError(f"{path}: cannot read TTree {tree!r}, truncated or corrupt? "
                           f"({type(exc).__name__}: {exc})") from exc
    return jets_from_arrays(arrays, label_names, observers, path, max_particles)


def jets_from_arrays(arrays: ak.Array, label_names: Sequence[str], observers: Sequence[str],
                     path: str | Path, max_particles: int = 128, first_entry: int = 0) -> JetSet:
    """Padded, validated jets from the branches of entries ``first_entry, ...`` of
    ``path`` (an awkward record array, e.g. one partition of :func:`read_root_dask`)."""
    path = Path(path)
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
    mask = np.arange(max_particles)[None, :] < n_part[:, None]
    label_array = (np.stack([ak.to_numpy(arrays[n]).astype(np.float64) for n in label_names], 1)
                   if label_names else None)
    return _checked(p4, mask, label_array, list(label_names),
                    {n: ak.to_numpy(arrays[n]).astype(np.float64) for n in observers}, path,
                    first_entry)


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
    """The usable jets, padding zeroed; jets without constituents, with non-finite
    momenta or a constituent of clearly negative mass squared are skipped and counted
    (by entry: ``first_entry`` is the entry of the first row)."""
    reasons: dict[int, str] = {}
    for i in np.nonzero(~mask.any(axis=1))[0]:
        reasons[int(i)] = "no constituents"
    finite = np.isfinite(p4).all(axis=(1, 2))
    for i in np.nonzero(~finite)[0]:
        reasons.setdefault(int(i), "non-finite constituent momenta")
    with np.errstate(invalid="ignore"):  # non-finite jets are counted above
        m2 = momenta(p4).tau2
    negative = ((m2 < -MASS2_TOLERANCE * p4[..., 0] ** 2 - 1e-9) & mask).any(axis=1) & finite
    for i in np.nonzero(negative)[0]:
        reasons.setdefault(int(i), "constituent with negative mass squared")
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
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise SymplugError(f"{path}: not a readable HDF5 table {key!r} ({type(exc).__name__}: {exc})") from exc
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
    return _checked(p4, mask, np.stack([1 - is_top, is_top], 1), ["label_QCD", "label_Top"],
                    {}, path)

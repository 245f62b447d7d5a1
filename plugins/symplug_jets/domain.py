"""The jets domains and the tagger diagnosis: A and B of the score under a compact
group, flip rate, AUC and background rejection, and boost scans.

The engine's samples are blocks of :data:`BLOCK` jets (one model call sees many jets);
everything a user reads counts jets: ``summary.n_jets``, ``n_signal``,
``n_background``, 1/eps_B with its resolution on the background jets
(:func:`symplug_jets.metrics.rejection`) and the grid in the field's words
(``summary.rotations``, :func:`grid_text`).
"""

from __future__ import annotations

import math
import re
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import symplug
from symplug import Group, SymplugError

from .action import boost, rotate_jets
from .metrics import auc, rejection, roc, undefined
from .rootio import JetSet, read_root, read_root_dask, read_top_tagging_h5
from .record import jets_domain
from .taggers import CallableTagger

BLOCK = 16  # jets per orbit sample: a model call sees chunk_size x BLOCK jets
SCORE_CHUNK = 256  # jets per scoring call at most (fewer where the memory budget says so):
# the peak of a tagger with pairwise features is then the same for any file size
MAX_PARTITION = 100_000  # entries per data-parallel partition at most (memory of a worker)
PARTITIONS_PER_WORKER = 4  # default partitions per dask worker (load balance)
DEFAULT_PARTITIONS = 16  # default partitions of the data when the worker count is unknown
FINITE_NAMES = {"D2": "dihedral D2", "T": "tetrahedral", "O": "octahedral", "I": "icosahedral"}
WORKING_POINTS = (0.3, 0.5)
FLIP_TOLERANCE = 1e-12  # a copy flips class only if its score moved by more (not round-off)
ROC_POINTS = 200  # ROC points kept in a result (for the report's curve)
SHIFT_EDGES = np.linspace(-1.0, 1.0, 81)  # score-shift histogram bins


def _roc_record(score: np.ndarray, is_signal: np.ndarray) -> dict:
    """The ROC (eps_S, eps_B), thinned to about :data:`ROC_POINTS` points."""
    eps_s, eps_b = roc(score, is_signal)
    keep = np.unique(np.linspace(0, len(eps_s) - 1, ROC_POINTS).round().astype(int))
    return {"eps_s": eps_s[keep].tolist(), "eps_b": eps_b[keep].tolist()}


def blocks(jets: JetSet, size: int = BLOCK) -> list[dict]:
    """Jet blocks, the samples of the jets domains (tokens: constituents in pT order)."""
    out = []
    for start in range(0, len(jets), size):
        sl = slice(start, start + size)
        block = {"p4": torch.from_numpy(jets.p4[sl]), "mask": torch.from_numpy(jets.mask[sl])}
        if jets.labels is not None:
            block["labels"] = jets.labels[sl]
            block["label_names"] = jets.label_names
        if start == 0:
            block["skipped"] = [(i, r, jets.source) for i, r in jets.skipped]
        out.append(block)
    return out


def partition_step(entries: int, workers: int | None = None, size: int | None = None) -> int:
    """Entries per data-parallel partition: ``size`` if given; else the ``entries`` split
    :data:`PARTITIONS_PER_WORKER` x ``workers`` ways (or :data:`DEFAULT_PARTITIONS` ways
    when the worker count is unknown), rounded up to whole blocks of :data:`BLOCK` jets
    and at most :data:`MAX_PARTITION`, so that even one small file keeps every worker busy."""
    if size is not None:
        if int(size) < 1:
            raise SymplugError(f"partition size must be >= 1, got {size}")
        return int(size)
    ways = PARTITIONS_PER_WORKER * int(workers) if workers else DEFAULT_PARTITIONS
    step = math.ceil(max(int(entries), 1) / max(ways, 1))
    return max(BLOCK, min(MAX_PARTITION, BLOCK * math.ceil(step / BLOCK)))


def count_entries(paths: Sequence[str | Path], tree: str = "tree") -> int:
    """The entries of ``tree`` in all ``paths`` (metadata only)."""
    from .rootio import _open_tree

    return sum(int(_open_tree(Path(p), tree).num_entries) for p in paths)


def jet_partitions(paths: Sequence[str | Path], block_size: int = BLOCK,
                   step_size: int | None = None, workers: int | None = None,
                   **read) -> symplug.Partitions:
    """The jet blocks of many ROOT files as lazy partitions of about ``step_size`` entries
    (default: :func:`partition_step` for ``workers``; :func:`~symplug_jets.rootio.read_root_dask`),
    for ``symplug.diagnose(..., client=...)``: each partition is read, validated and cut
    into blocks on its worker."""
    import dask

    if step_size is None:
        step_size = partition_step(count_entries(paths, read.get("tree", "tree")), workers)
    return symplug.Partitions(dask.delayed(blocks)(jets, block_size)
                              for jets in read_root_dask(paths, step_size=step_size, **read))


def grid_text(grid: dict, frame: str = "lab") -> str:
    """A grid record (``result["grid"]``) in the field's words, e.g. ``"SO(2) about the
    beam: 9 equispaced angles (degree 4)"`` or ``"SO(3) in the lab frame: 182 rotations
    (26 Lebedev directions x 7 angles about each, degree 3)"``."""
    group = Group.parse(grid["group"])
    planar, improper = group.is_planar, group.has_improper
    if planar:
        where = "about the beam" if frame == "lab" else "about each jet's axis"
    else:
        where = "in the lab frame" if frame == "lab" else "in each jet's own frame"
    size, kind, degree = int(grid["size"]), grid["kind"], grid.get("degree")
    proper = size // 2 if improper else size
    mirror = "mirror image" if planar else "inversion"
    detail = f"degree {degree}"
    if kind == "haar":
        what = f"{size} random {'elements' if improper else 'rotations'}"
        detail = f"seed {grid.get('seed')}"
    elif kind == "identity":
        what = f"the identity{f' and its {mirror}' if improper else ''}"
    elif kind == "equispaced":
        what = f"{proper} equispaced angles"
    else:
        what = f"{proper} rotations"
        rule = grid.get("rule", "")
        found = re.match(r"Lebedev order \d+ \((\d+) nodes\) x (\d+)", rule)
        if found:
            detail = (f"{found.group(1)} Lebedev directions x {found.group(2)} angles about "
                      f"each, {detail}")
        elif kind == "finite":
            name = rule.split(" (")[0].removeprefix("rotation group ")
            detail = f"the {FINITE_NAMES.get(name, name)} group, {detail}"
        else:
            detail = f"{'Gauss-Legendre' if kind == 'gauss-legendre' else kind} rule, {detail}"
    if improper and kind not in ("haar", "identity"):
        what += f" and their {proper} {mirror}s"
    return f"{group.label} {where}: {what} ({detail})"


def tagger_scores(model, p4: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The tagger's scores of the untransformed jets, (N,) or (N, C), in calls of at most
    :data:`SCORE_CHUNK` jets sized against the memory budget (:func:`symplug.memory.chunks`),
    the first of :data:`BLOCK` jets (the batch of the orbit pass: a model with batch-wise
    layers never sees a single jet)."""
    from symplug import memory

    parts = []
    for index in memory.chunks(p4.shape[0], SCORE_CHUNK, "jets", first=BLOCK):
        batch = {"p4": p4[index], "mask": mask[index], "copies": 1,
                 "jets": index.stop - index.start}
        parts.append(model(batch)["score"][0].detach().numpy())
    return np.concatenate(parts)


def signal_label(label_names: list[str], signal: str | None = None) -> str:
    """The signal class: ``signal`` if given, else the first label that is not QCD."""
    if not label_names:
        raise SymplugError("no label_* branches: the signal class is undefined")
    if signal is not None:
        if signal not in label_names:
            raise SymplugError(f"unknown signal label {signal!r} (labels: {', '.join(label_names)})")
        return signal
    return next((n for n in label_names if "qcd" not in n.lower()), label_names[0])


def signal_column(scores: np.ndarray, label_names: list[str], signal: str | None) -> np.ndarray:
    """The signal column of (N, C) scores, one column per label branch in order; (N,)
    and (N, 1) scores are the signal score itself."""
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim == 1:
        return scores
    if scores.ndim != 2 or scores.shape[1] != len(label_names):
        raise SymplugError(f"the tagger's scores are {tuple(scores.shape)}: expected (N,) "
                           f"signal scores or (N, C) with one column per label branch "
                           f"({len(label_names)}: {', '.join(label_names) or 'none'})")
    return scores[:, label_names.index(signal_label(label_names, signal))]


def signal_mask(labels: np.ndarray, label_names: list[str], signal: str | None) -> np.ndarray:
    """(N,) bool: the jets whose ``signal`` label branch (default: :func:`signal_label`)
    is set."""
    return labels[:, label_names.index(signal_label(label_names, signal))] > 0.5


def as_tagger(tagger) -> CallableTagger:
    """``tagger`` as a :class:`CallableTagger` (its ``units`` attribute, else probability)."""
    if isinstance(tagger, CallableTagger):
        return tagger
    return CallableTagger(tagger, units=getattr(tagger, "units", "probability"))


def _boosted(jets: JetSet, rapidity: float, axis: str) -> torch.Tensor:
    """The jets' constituents boosted by ``rapidity`` along ``axis``, padding kept zero."""
    return torch.from_numpy(np.where(jets.mask[..., None], boost(jets.p4, rapidity, axis), 0.0))


def scores_part(samples: Sequence[dict], model, grid, orbit_values, context, previous,
                 signal: str | None = None, frame: str = "lab") -> dict:
    """Summary stage 1, per partition: the signal score of the untransformed jets,
    whether each is signal (with labels), the jets the reader skipped and the grid in
    the field's words."""
    p4 = torch.cat([b["p4"] for b in samples])
    mask = torch.cat([b["mask"] for b in samples])
    names = samples[0].get("label_names", [])
    labelled = "labels" in samples[0]
    return {"score": signal_column(tagger_scores(model, p4, mask), names, signal),
            "is_signal": (signal_mask(np.concatenate([b["labels"] for b in samples]), names,
                                     signal) if labelled else None),
            "skipped": [(int(i), r, f) for b in samples for i, r, f in b.get("skipped", [])],
            "rotations": grid_text(grid.describe(), frame)}


def performance(parts: list[dict], context) -> dict:
    """Summary stage 1, merged: the jet counts, AUC, 1/eps_B (with its resolution:
    :func:`~symplug_jets.metrics.rejection`) and the ROC of all untransformed jets, and
    the working point of the flip rate (eps_S = 0.5, or the median score without labels
    or signal jets). NaN or inf scores or one class only: AUC, 1/eps_B and the ROC are
    None and ``undefined`` says why (with non-finite scores the flip rate too)."""
    score = np.concatenate([p["score"] for p in parts])
    out = {"n_jets": int(score.shape[0]), "rotations": parts[0]["rotations"],
           "skipped": [{"entry": i, "reason": r, "file": f} for p in parts
                       for i, r, f in p["skipped"]]}
    finite = bool(np.isfinite(score).all())
    threshold = float(np.median(score)) if finite else None
    if parts[0]["is_signal"] is not None:
        is_signal = np.concatenate([p["is_signal"] for p in parts])
        out["n_signal"] = int(is_signal.sum())
        out["n_background"] = int((~is_signal).sum())
        reason = undefined(score, is_signal)
        if reason:
            out.update(auc=None, background_rejection=None, roc=None,
                       undefined=f"AUC, 1/eps_B and ROC undefined: {reason}")
        else:
            out["auc"] = auc(score, is_signal)
            out["background_rejection"] = {f"{wp}": rejection(score, is_signal, wp)
                                           for wp in WORKING_POINTS}
            out["roc"] = _roc_record(score, is_signal)
        if finite and is_signal.any():
            threshold = float(np.quantile(score[is_signal], 0.5))
    elif not finite:
        out["undefined"] = undefined(score, np.zeros(len(score), bool))
    out["threshold"] = threshold
    return out


def flips_part(samples: Sequence[dict], model, grid, orbit_values, context, previous,
                signal: str | None = None, frame: str = "lab") -> dict:
    """Summary stage 2, per partition: weighted counts of copies on the other side of
    the working point and the weighted histogram of the score shift s(g x) - s(x)."""
    names = samples[0].get("label_names", [])
    threshold = context["threshold"]
    flips, total_w = 0.0, 0.0
    shifts = np.zeros(len(SHIFT_EDGES) - 1)
    if threshold is None:  # non-finite scores: no working point, no flip rate
        return {"flips": 0.0, "weight": 0.0, "shifts": shifts}
    offset = 0
    for b, block in enumerate(samples):
        ref_score = previous["score"][offset:offset + block["p4"].shape[0]]
        offset += block["p4"].shape[0]
        ref = ref_score > threshold
        for index in grid.chunks(32):
            if orbit_values is not None:
                s = orbit_values[b]["score"][index].numpy()
            else:
                batch = rotate_jets(block, grid.matrices[index], frame=frame)
                s = model(batch)["score"].detach().numpy()
            s = signal_column(s.reshape(-1, *s.shape[2:]), names, signal).reshape(s.shape[:2])
            w = grid.weights[index].numpy()
            flipped = ((s > threshold) != ref[None, :]) & (np.abs(s - ref_score) > FLIP_TOLERANCE)
            flips += float((w[:, None] * flipped).sum())
            total_w += float(w.sum()) * len(ref)
            shift = s - ref_score[None, :]
            shift[np.abs(shift) <= FLIP_TOLERANCE] = 0.0  # round-off must not pick the bin
            shift = np.clip(shift, SHIFT_EDGES[0], SHIFT_EDGES[-1])
            shifts += np.histogram(shift, SHIFT_EDGES, weights=np.broadcast_to(
                w[:, None], shift.shape))[0]
    return {"flips": flips, "weight": total_w, "shifts": shifts}


def flip_rate(parts: list[dict], context: dict) -> dict:
    """Summary stage 2, merged: the flip rate and the score-shift distribution (None
    without a working point: non-finite scores)."""
    flips = sum(p["flips"] for p in parts)
    weight = sum(p["weight"] for p in parts)
    shifts = sum(p["shifts"] for p in parts)
    if context["threshold"] is None or weight <= 0:
        return {**context, "flip_rate": None, "score_shift": None}
    return {**context, "flip_rate": flips / weight,
            "score_shift": {"edges": SHIFT_EDGES.tolist(), "weights": (shifts / weight).tolist()}}


def block_jets(block: dict) -> int:
    """The jets in a block (``Domain.count_items``: the core's text counts jets)."""
    return int(block["p4"].shape[0])


def load_blocks(path: str) -> list[dict]:
    """The jets of a ROOT file (JetClass layout) or a top-tagging HDF5 file, in blocks."""
    reader = read_top_tagging_h5 if str(path).endswith((".h5", ".hdf5")) else read_root
    return blocks(reader(path))


def root_partitions(paths: Sequence[str | Path], size: int | None = None) -> list | None:
    """ROOT files through ``uproot.dask``: partitions of about ``size`` entries; by default
    (``size`` None) the entries of all files split 16 ways in whole blocks of 16 jets, at
    most 100 000 entries each (:func:`partition_step`), so that one small file still
    spreads over the workers. None for other files (read whole, then split)."""
    if not all(str(p).endswith(".root") for p in paths):
        return None
    return jet_partitions(paths, step_size=size)


def diagnose(tagger, jets: JetSet | str | Path, group: str = "SO2", degree: int = 4,
             frame: str = "lab", block_size: int = BLOCK, **kwargs) -> dict:
    """A and B of a tagger's score, plus AUC, 1/eps_B and flip rate, on jets (a JetSet or a
    ROOT file). ``tagger``: a :class:`CallableTagger` (the score's units are its
    ``units``) or any ``f(p4, mask)`` (a signal probability)."""
    if not isinstance(jets, JetSet):
        jets = read_root(jets)
    kwargs.setdefault("skip_failures", True)
    tagger = as_tagger(tagger)
    return symplug.diagnose(tagger, blocks(jets, block_size), jets_domain(frame, tagger.units),
                            group=group, degree=degree, **kwargs)


def lie_derivatives(tagger, jets: JetSet, group: str | Group = "SO3", frame: str = "lab",
                    step: float = 1e-3) -> dict[str, float]:
    """RMS over jets of the Lie derivative of the score along every rotation generator of
    ``group`` (in ``frame``) and along the boosts (beam and jet axis): d/dt s(e^{tJ} x) at
    t = 0, by 4th-order central differences (a tagger needs no forward-mode rules)."""
    tagger = as_tagger(tagger)
    mask = torch.from_numpy(jets.mask)
    block = {"p4": torch.from_numpy(jets.p4), "mask": mask}

    def rotated(j: torch.Tensor, t: float) -> np.ndarray:
        batch = rotate_jets(block, torch.linalg.matrix_exp(t * j)[None], frame=frame)
        return tagger(batch)["score"][0].detach().numpy()

    def boosted(axis: str, y: float) -> np.ndarray:
        return tagger_scores(tagger, _boosted(jets, y, axis), mask)

    def derivative(f) -> float:
        d = (8 * (f(step) - f(-step)) - (f(2 * step) - f(-2 * step))) / (12 * step)
        return float(np.sqrt(np.mean(d ** 2)))

    out = {name: derivative(partial(rotated, j))
           for name, j in Group.parse(group).generators().items()}
    for axis in ("beam", "jet"):
        out[f"boost_{axis}"] = derivative(partial(boosted, axis))
    return out


def boost_scan(tagger, jets: JetSet, rapidities: Sequence[float], axis: str = "beam",
               signal: str | None = None, progress: bool = False) -> list[dict]:
    """Score shift (RMS, relative to y = 0) and, with labels, AUC and 1/eps_B (with its
    resolution) as functions of the boost rapidity y (a non-compact symmetry: no Haar
    average, a bounded scan); ``progress``: a bar on stderr."""
    tagger = as_tagger(tagger)
    mask = torch.from_numpy(jets.mask)
    base = signal_column(tagger_scores(tagger, torch.from_numpy(jets.p4), mask), jets.label_names, signal)
    rows = []
    for y in tqdm(rapidities, desc=f"boosts along the {axis if axis == 'beam' else 'jet axis'}",
                  unit="rapidity", disable=not progress, file=sys.stderr, leave=False):
        score = signal_column(tagger_scores(tagger, _boosted(jets, y, axis), mask), jets.label_names,
                              signal)
        row = {"rapidity": float(y), "score_shift_rms": float(np.sqrt(np.mean((score - base) ** 2)))}
        if jets.labels is not None:
            is_signal = signal_mask(jets.labels, jets.label_names, signal)
            reason = undefined(score, is_signal)
            row["auc"] = None if reason else auc(score, is_signal)
            row["background_rejection"] = None if reason else {
                f"{wp}": rejection(score, is_signal, wp) for wp in WORKING_POINTS}
            if reason:
                row["undefined"] = f"AUC and 1/eps_B undefined: {reason}"
        rows.append(row)
    return rows

"""Checkpoints, RNG states and seeds of a fine-tuning run, and which checkpoint a run
continues from.

A checkpoint (``torch.load(weights_only=True)``) holds ``format`` (:data:`CHECKPOINT_FORMAT`),
the model's ``config`` and ``state_dict`` (where the domain's loaders expect them), the
``finetune`` settings, ``optimizer``, ``scheduler``, ``rng`` (:func:`rng_state`), ``epoch``
(completed), ``step`` (completed steps of the current epoch), ``global_step``, ``running``,
``history``, ``track``, ``grid`` and ``world_size``. Batch order and group elements come
from seeds derived from (seed, epoch, step) (:func:`derived_seed`), so a resumed run ends
with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import SymplugError
from .config import FinetuneConfig

CHECKPOINT_FORMAT = "symplug-finetune/1"
LATEST = "checkpoint.pt"


def derived_seed(*parts: int) -> int:
    """A 32-bit seed derived from integers (seed, epoch, step, purpose)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def rng_state() -> dict:
    """torch, numpy (legacy global) and python RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached_gaussian": float(np_state[4])},
            "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                       "gauss": py_gauss}}


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    """Seed the torch, numpy (legacy global) and python RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`symplug.training.finetune`, loaded with
    ``weights_only=True``."""
    from ..result import load_weights

    saved = load_weights(path, "checkpoint")
    if not isinstance(saved, dict):
        raise SymplugError(f"{path}: not a checkpoint (holds {type(saved).__name__}, not a dictionary)")
    return saved


def _epoch_files(out: Path) -> list[Path]:
    """The end-of-epoch checkpoints in ``out``, oldest first."""
    return sorted(out.glob("epoch_*.pt"))


def _intact(paths: Sequence[Path]) -> list[Path]:
    """Those of ``paths`` that load as checkpoints."""
    good = []
    for path in paths:
        try:
            load_checkpoint(path)
        except SymplugError:
            continue
        good.append(path)
    return good


def _resume_hint(out: Path) -> str:
    """How to go on from the newest intact epoch checkpoint in ``out`` (or that none is)."""
    intact = _intact(_epoch_files(out))
    if not intact:
        return "no intact epoch checkpoint is beside it: use another --out to start a new run"
    return (f"the epoch checkpoints beside it are intact ({', '.join(p.name for p in intact)}): "
            f"resume from the last with --resume-from {intact[-1]}")


def _previous_run(out: Path) -> list[str]:
    """Files of an earlier run in ``out`` (epoch checkpoints, log, track)."""
    names = [p.name for p in _epoch_files(out)]
    return names + [n for n in ("log.jsonl", "track.json") if (out / n).exists()]


def saved_run(out: Path, config: FinetuneConfig, resume_from: str | Path | None) -> dict | None:
    """The checkpoint to continue from: ``resume_from`` (a path, or a file name in ``out``),
    else ``out/checkpoint.pt``; None for a new run in a folder without an earlier run.
    Refuses to mix runs: files of an earlier run without its checkpoint.pt, a truncated
    checkpoint.pt (naming the intact epoch checkpoints), other settings."""
    latest = out / LATEST
    if resume_from is not None:
        path = Path(resume_from)
        path = path if path.exists() or not (out / path).exists() else out / path
        if not path.exists():
            raise SymplugError(f"--resume-from {str(resume_from)!r}: no such checkpoint "
                               f"(epoch checkpoints in {out}: "
                               f"{', '.join(p.name for p in _epoch_files(out)) or 'none'})")
        return _resumable(path, config)
    if not latest.exists():
        earlier = _previous_run(out)
        if earlier:
            epochs = _epoch_files(out)
            how = (f"resume with --resume-from {epochs[-1]}" if epochs else
                   "remove them")
            raise SymplugError(f"{out} holds an earlier run ({', '.join(earlier)}) but no "
                               f"{LATEST}: {how}, or use another --out")
        return None
    try:
        saved = load_checkpoint(latest)
    except SymplugError as exc:
        raise SymplugError(f"{exc}; {_resume_hint(out)}") from exc
    return _resumable(latest, config, saved)


def _resumable(latest: Path, config: FinetuneConfig, saved: dict | None = None) -> dict:
    """The checkpoint ``latest`` if it continues a run with ``config`` (any world size)."""
    saved = load_checkpoint(latest) if saved is None else saved
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise SymplugError(f"{latest}: not a symplug fine-tuning checkpoint")
    if saved["finetune"] != json.loads(json.dumps(config.to_dict())):
        diff = [k for k, v in config.to_dict().items() if saved["finetune"].get(k) != v]
        raise SymplugError(f"{latest} was written with other settings ({', '.join(diff)}); "
                           "use another --out to start a new run")
    return saved

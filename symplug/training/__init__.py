"""Augmented fine-tuning with symmetry penalties, exact-resume checkpoints, data-parallel
runs and symmetry tracking (docs/training.md).

Modules: :mod:`~symplug.training.config` (settings, data split),
:mod:`~symplug.training.augmentation` (batches acted on: inputs by the task, labels by their representations),
:mod:`~symplug.training.penalties` (P_eq, P_lie), :mod:`~symplug.training.objective`
(one step's all-reduced objective), :mod:`~symplug.training.checkpoints` (checkpoints,
RNG states, seeds, resuming), :mod:`~symplug.training.distributed` (ranks, DDP),
:mod:`~symplug.training.tracking` (``track.json``, ``track.mts``, ``track.png``),
:mod:`~symplug.training.trainer` (the loop: :class:`Trainer`, :func:`finetune`) and
:mod:`~symplug.training.commands` (``symplug finetune`` and ``symplug track``).

The names below are imported on first use (PEP 562), so that building the CLI's parser,
which imports :mod:`~symplug.training.commands`, imports no torch.
"""

from __future__ import annotations

_LAZY = {
    "FinetuneConfig": "config", "check_config": "config", "split_samples": "config",
    "augment": "augmentation",
    "equivariance_penalty": "penalties", "lie_penalty": "penalties",
    "CHECKPOINT_FORMAT": "checkpoints", "LATEST": "checkpoints",
    "derived_seed": "checkpoints", "load_checkpoint": "checkpoints",
    "rng_state": "checkpoints", "seed_everything": "checkpoints",
    "set_rng_state": "checkpoints",
    "plot_track": "tracking", "track_document": "tracking", "track_entry": "tracking",
    "track_figure": "tracking", "track_tensormap": "tracking", "write_track": "tracking",
    "Trainer": "trainer", "finetune": "trainer",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'symplug.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)

"""The settings of a fine-tuning run, their ranges, and the training / validation split."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import SymplugError


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (stored in every checkpoint; a resumed run must
    match). ``lr`` is Adam's initial learning rate (cosine decay to 0 over the run);
    ``group`` None means no augmentation; penalties are weights (0: off); ``lie_step``
    in rad; ``checkpoint_every`` in steps (0: end of epoch only); ``track_every`` in
    epochs (0: no tracking; epoch 0 and the last epoch are always tracked otherwise)."""

    domain: str
    model: str = ""
    data: str = ""
    epochs: int = 1
    lr: float = 1e-3
    batch: int = 8
    seed: int = 0
    group: str | None = "O3"
    penalty_equivariance: float = 0.0
    penalty_lie: float = 0.0
    lie_step: float = 1e-2
    checkpoint_every: int = 0
    track_every: int = 0
    track_degree: int = 2
    track_samples: int = 4
    track_layers: tuple[str, ...] = ()
    val_fraction: float = 0.2

    def to_dict(self) -> dict:
        out = asdict(self)
        out["track_layers"] = list(self.track_layers)
        return out


def check_config(config: FinetuneConfig) -> None:
    """Refuse settings outside their ranges (one line naming the setting): lr and
    lie_step finite and > 0; epochs, batch, track_degree, track_samples >= 1; penalty
    weights finite and >= 0 (a negative one rewards breaking the symmetry);
    checkpoint_every, track_every, seed >= 0."""
    def bad(name: str, rule: str) -> SymplugError:
        return SymplugError(f"{name} must be {rule}, got {getattr(config, name)!r}")

    for name in ("lr", "lie_step"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise bad(name, "finite and > 0")
    for name in ("penalty_equivariance", "penalty_lie"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise bad(name, "finite and >= 0 (a negative weight rewards breaking the symmetry)")
    for name, low in (("epochs", 1), ("batch", 1), ("track_degree", 1), ("track_samples", 1),
                      ("checkpoint_every", 0), ("track_every", 0), ("seed", 0)):
        if int(getattr(config, name)) < low:
            raise bad(name, f">= {low}")


def split_samples(samples: Sequence[Any], fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) samples: a seeded permutation, ``fraction`` of them
    (at least one) held out for validation and tracking."""
    if len(samples) < 2:
        raise SymplugError(f"fine-tuning needs at least 2 samples (training and validation), "
                           f"got {len(samples)}")
    if not 0.0 < fraction < 1.0:
        raise SymplugError(f"validation fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = min(len(samples) - 1, max(1, round(fraction * len(samples))))
    return [samples[i] for i in order[n_val:]], [samples[i] for i in order[:n_val]]

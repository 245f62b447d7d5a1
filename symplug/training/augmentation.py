"""Training batches transformed by group elements: the one place where the training asks
the domain's plugin for its augmentation."""

from __future__ import annotations

from typing import Any

import torch


def augment(domain: str, batch: Any, matrices: torch.Tensor) -> Any:
    """``batch`` of domain ``domain`` transformed by the (B, 3, 3) group elements
    ``matrices``, one per item: inputs by the group action, targets by their
    representations (the plugin's ``symplug_augment_batch``)."""
    from ..plugins import augment_batch

    return augment_batch(domain, batch, matrices)

"""The leading constituents of padded jets, as a tagger with a fixed input length sees them."""

from __future__ import annotations

import torch


def leading(p4: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``length`` constituents of highest pT per jet, in decreasing pT, of (N, P, 4)
    constituents (E, px, py, pz) with mask (N, P); unchanged when P <= ``length``."""
    if p4.shape[1] <= length:
        return p4, mask
    pt = torch.hypot(p4[..., 1], p4[..., 2]).masked_fill(~mask.bool(), -1.0)
    keep = pt.topk(int(length), dim=1).indices
    return torch.gather(p4, 1, keep[..., None].expand(-1, -1, p4.shape[-1])), \
        torch.gather(mask, 1, keep)

"""A tagger averaged over a rotation quadrature (inference symmetrisation for jets).

    s_sym(x) = sum_q w_q s(g_q x)

with {g_q, w_q} a symplug grid (SO2 about the beam in the ``lab`` frame, SO2 about
each jet's own axis in the ``jet`` frame, or SO3/O3). The averaged score is exactly
invariant under the grid's group up to its band limit: for SO2 of ``degree`` L, the
2L + 1 equispaced angles remove every Fourier mode 1 <= |m| <= 2L of the score
(modes that are multiples of 2L + 1 alias onto the average). Only the beam SO(2) is
an exact symmetry of collider data; averaging over a group that is not (SO3 in the
lab) trades accuracy for invariance.
"""

from __future__ import annotations

import torch

import symplug
from symplug import SymplugError, memory

from .action import rotate_jets


class SymmetrizedTagger:
    """``tagger(p4, mask) -> scores`` averaged over ``group`` in ``frame``, on the smallest
    rule of ``kind`` whose mean is exact for scores of band ``degree``
    (``symplug.quadrature(group, degree, purpose="mean")``).

    Call it like the tagger: ``(N, P, 4)`` (E, px, py, pz) GeV and ``(N, P)`` mask give
    scores of the tagger's shape, (N,) or (N, C), in float64. Up to ``chunk_size``
    copies of the jets go through the tagger in one call, fewer where the memory budget
    leaves no room (:func:`symplug.memory.chunks`).
    """

    def __init__(self, tagger, group: str = "SO2", degree: int = 4, frame: str = "lab",
                 kind: str = "auto", chunk_size: int = 16):
        if not callable(tagger):
            raise SymplugError(f"expected a callable tagger f(p4, mask), got {type(tagger).__name__}")
        if frame not in ("lab", "jet"):
            raise SymplugError(f"frame must be 'lab' or 'jet', got {frame!r}")
        if int(chunk_size) < 1:
            raise SymplugError(f"chunk_size must be >= 1, got {chunk_size}")
        self.tagger, self.frame, self.chunk_size = tagger, frame, int(chunk_size)
        self.units = getattr(tagger, "units", "probability")  # an average keeps the units
        self.grid = symplug.quadrature(group, degree, kind=kind, purpose="mean")

    def __call__(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        block = {"p4": torch.as_tensor(p4, dtype=torch.float64), "mask": torch.as_tensor(mask)}
        n = block["p4"].shape[0]
        total = None
        for index in memory.chunks(self.grid.size, self.chunk_size, "rotated copies"):
            copies = rotate_jets(block, self.grid.matrices[index], frame=self.frame)
            scores = torch.as_tensor(self.tagger(copies["p4"], copies["mask"]), dtype=torch.float64)
            scores = scores.reshape(copies["copies"], n, *scores.shape[1:])
            w = self.grid.weights[index].to(torch.float64).reshape(-1, *([1] * (scores.ndim - 1)))
            part = (w * scores).sum(0)
            total = part if total is None else total + part
        return total

    def __repr__(self) -> str:
        return f"SymmetrizedTagger({self.grid!r}, frame={self.frame!r})"

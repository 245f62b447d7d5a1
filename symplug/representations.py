"""Representations rho of O(3) on output vectors, parsed from short strings.

Accepted terms, joined by ``+`` and optionally prefixed by a multiplicity ``Nx``:

* e3nn irreps ``"0e"``, ``"0o"``, ``"1o"``, ``"1e"``, ``"2e"``, ... in e3nn's basis
  (``"1o"`` is a polar vector in Cartesian x, y, z order with rho(g) = g, ``"1e"``
  a pseudovector with rho(g) = det(g) g);
* spherical blocks ``"l,sigma"`` (e.g. ``"2,+1"``, ``"1,-1"``) in the metatensor /
  sphericart real-harmonic basis, m = -l..l;
* ``"cartesian2"``: a rank-2 Cartesian tensor T (row-major, 9 values or a trailing
  (3, 3)) with rho(g) T = g T g^T, i.e. (0,+1) + (1,-1) + (2,+1).

Parity follows metatensor: sigma = +1 is natural parity, rho(-1) = sigma (-1)^l;
e3nn's parity p equals sigma (-1)^l.

The mathematics and design: docs/design.md, section 1.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import RepresentationError

if TYPE_CHECKING:  # imported where used: plugins check representation strings at start-up
    import torch


_TERM = re.compile(r"\s*(?:(\d+)\s*x\s*)?(cartesian2|\d+\s*[eo]|\d+\s*,\s*[+-]?\s*1)\s*(?:\+|$)")


@dataclass(frozen=True)
class Block:
    """One irreducible (or Cartesian rank-2) block of a representation."""

    kind: str  # "e3nn", "spherical" or "cartesian2"
    l: int = 0
    sigma: int = 1

    @property
    def dim(self) -> int:
        return 9 if self.kind == "cartesian2" else 2 * self.l + 1

    @property
    def label(self) -> str:
        if self.kind == "cartesian2":
            return "cartesian2"
        if self.kind == "spherical":
            return f"{self.l},{self.sigma:+d}"
        return f"{self.l}{'e' if self.sigma * (-1) ** self.l > 0 else 'o'}"

    def sectors(self) -> tuple[tuple[int, int], ...]:
        """The (l, sigma) content of the block."""
        if self.kind == "cartesian2":
            return ((0, 1), (1, -1), (2, 1))
        return ((self.l, self.sigma),)

    def matrices(self, g: torch.Tensor) -> torch.Tensor:
        """rho(g) (N, dim, dim) for orthogonal g (N, 3, 3)."""
        import torch

        from .wigner import wigner_D

        if self.kind == "cartesian2":
            return torch.einsum("nij,nkl->nikjl", g, g).reshape(-1, 9, 9)
        det = torch.sign(torch.linalg.det(g))
        rot = det[:, None, None] * g
        if self.kind == "e3nn" and self.l == 1:
            d = rot
        else:
            d = wigner_D(self.l, rot, basis=self.kind)
        parity = torch.where(det < 0, float(self.sigma * (-1) ** self.l), 1.0).to(torch.float64)
        return parity[:, None, None] * d

    def generator(self, j: torch.Tensor) -> torch.Tensor:
        """d rho(exp(t J)) / dt at t = 0 (dim, dim) for an antisymmetric J (3, 3)."""
        import torch

        from .wigner import wigner_generator

        if self.kind == "cartesian2":
            eye = torch.eye(3, dtype=torch.float64)
            return torch.kron(j, eye) + torch.kron(eye, j)
        if self.l == 0:
            return torch.zeros(1, 1, dtype=torch.float64)
        if self.kind == "e3nn" and self.l == 1:
            return j.to(torch.float64)
        return wigner_generator(self.l, j, basis=self.kind)


@dataclass(frozen=True)
class Representation:
    """A direct sum of :class:`Block` acting on the last axis of an output."""

    spec: str
    blocks: tuple[Block, ...]

    @property
    def dim(self) -> int:
        return sum(b.dim for b in self.blocks)

    @property
    def sectors(self) -> tuple[tuple[int, int], ...]:
        """(l, sigma) content, with repetitions, in block order."""
        return tuple(s for b in self.blocks for s in b.sectors())

    def __str__(self) -> str:
        return self.spec

    def matrices(self, g: torch.Tensor) -> torch.Tensor:
        """Block-diagonal rho(g) (N, dim, dim) float64."""
        import torch

        g = torch.as_tensor(g, dtype=torch.float64)
        if g.ndim == 2:
            g = g[None]
        if len(self.blocks) == 1:
            return self.blocks[0].matrices(g)
        out = torch.zeros(g.shape[0], self.dim, self.dim, dtype=torch.float64)
        start = 0
        for block in self.blocks:
            stop = start + block.dim
            out[:, start:stop, start:stop] = block.matrices(g)
            start = stop
        return out

    def generator(self, j: torch.Tensor) -> torch.Tensor:
        """Block-diagonal d rho(J) (dim, dim) float64."""
        import torch

        j = torch.as_tensor(j, dtype=torch.float64)
        return torch.block_diag(*(b.generator(j) for b in self.blocks))

    def flatten(self, values: torch.Tensor, leading: int, name: str = "values") -> torch.Tensor:
        """Return ``values`` as (*leading_shape, dim), checking the trailing size.

        ``leading`` is the number of leading axes (e.g. 1 for (N_grid, ...)); axes
        between the leading ones and the representation axis are kept, so
        per-atom forces (N, atoms, 3) are accepted for ``"1o"``. One-dimensional
        representations need no trailing axis: (N,) and (N, atoms) are scalars.
        """
        import torch

        values = torch.as_tensor(values)
        shape = tuple(values.shape)
        if (len(self.blocks) == 1 and self.blocks[0].kind == "cartesian2"
                and len(shape) >= leading + 2 and shape[-2:] == (3, 3)):
            return values.reshape(*shape[:-2], 9)
        if self.dim == 1 and (len(shape) == leading or shape[-1] != 1):
            return values.unsqueeze(-1)  # scalars need no trailing axis: (N,) or (N, atoms)
        if len(shape) <= leading or shape[-1] != self.dim:
            raise RepresentationError(
                f"{name}: representation '{self.spec}' expects a trailing dimension of size "
                f"{self.dim}, got shape {shape}")
        return values


@lru_cache(maxsize=256)
def _parse(spec: str) -> Representation:
    text = spec.strip()
    blocks: list[Block] = []
    pos = 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise RepresentationError(
                f"cannot parse representation {spec!r} at {text[pos:]!r}; use e3nn irreps "
                "('0e', '1o', '2e', ...), spherical blocks 'l,sigma' ('2,+1') or 'cartesian2', "
                "joined by '+'")
        mult = int(m.group(1) or 1)
        term = re.sub(r"\s+", "", m.group(2))
        if term == "cartesian2":
            block = Block("cartesian2", 2, 1)
        elif "," in term:
            l, sigma = term.split(",")
            block = Block("spherical", int(l), int(sigma))
        else:
            l = int(term[:-1])
            parity = 1 if term[-1] == "e" else -1
            block = Block("e3nn", l, parity * (-1) ** l)
        blocks.extend([block] * mult)
        pos = m.end()
    if not blocks:
        raise RepresentationError("empty representation string")
    return Representation(spec, tuple(blocks))


def representation(spec: "str | Representation") -> Representation:
    """Parse ``spec`` (or return it unchanged if it is already a Representation)."""
    if isinstance(spec, Representation):
        return spec
    if not isinstance(spec, str):
        raise RepresentationError(f"representation must be a string such as '1o', got {spec!r}")
    return _parse(spec)

"""The symmetry groups symplug measures, as sets of 3x3 orthogonal matrices.

Conventions
-----------
* :class:`O3`: all orthogonal matrices g = s R, s = det g = +1 (proper) or -1
  (improper, R followed by the inversion I = -1).
* :class:`SO3`: proper rotations only.
* :class:`SO2`: rotations about a unit ``axis`` n (right-handed, angle phi).
* :class:`O2`: SO2 plus the mirror through the plane spanned by n and the first
  in-plane frame vector e1 (it maps e2 -> -e2, n -> n; det -1).

A group is a :class:`Group` value; :meth:`Group.parse` turns a name (``"O3"``,
``"so(2)"``, ...) and an axis into one. Sectors are keyed (l, sigma): sigma = +1/-1
resolves the parity under the improper element, 0 where the group has none (SO2/O2:
l is the Fourier order m). Everything is float64 torch tensors; matrices act on column
vectors (x' = g x). torch, numpy and scipy are imported where used, so that plugins
name and check their groups at start-up without them.

The mathematics and design: docs/design.md, section 1.1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from .errors import GridError

if TYPE_CHECKING:
    import numpy as np
    import torch


def __getattr__(name: str) -> Any:
    """``DTYPE``: torch.float64, the dtype of every group element (imports torch)."""
    if name == "DTYPE":
        import torch

        return torch.float64
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

Sector = tuple[int, int]

_REGISTRY: dict[str, type["Group"]] = {}  # canonical name -> class, in definition order


@dataclass(frozen=True)
class Group(ABC):
    """A closed subgroup of O(3) with its sectors, generators, Haar measure and proper part.

    Class attributes: ``name`` (canonical, e.g. ``"SO2"``), ``label`` (as printed,
    ``"SO(2)"``), ``has_improper`` (it holds elements with det -1), ``is_planar``
    (rotations about one axis), ``improper_name`` and ``improper_symbol`` (the improper
    element: ``"inversion"``/``"I"`` or ``"mirror"``/``"M"``). A subclass that sets
    ``name`` is a group :meth:`parse` accepts. ``str(group)`` is its name.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    has_improper: ClassVar[bool] = False
    is_planar: ClassVar[bool] = False
    improper_name: ClassVar[str]
    improper_symbol: ClassVar[str]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    @staticmethod
    def parse(spec: str | Group, axis: Sequence[float] | None = None) -> Group:
        """The group named ``spec`` (case-insensitive; ``"SO(3)"`` is ``"SO3"``), about
        ``axis`` for SO2/O2 (default z; ignored by O3/SO3). A :class:`Group` is returned
        as it is (it carries its own axis). Raises :class:`GridError` for an unknown name."""
        if isinstance(spec, Group):
            return spec
        cls = _REGISTRY.get(str(spec).upper().replace("(", "").replace(")", ""))
        if cls is None:
            raise GridError(f"unknown group {spec!r}; expected one of {', '.join(_REGISTRY)}")
        return cls(axis) if cls.is_planar and axis is not None else cls()

    def __str__(self) -> str:
        return self.name

    def sectors(self, lmax: int) -> list[Sector]:
        """All (l, sigma) sectors up to ``lmax``, the invariant sector first."""
        return [(l, 0) for l in range(lmax + 1)]

    @property
    def invariant_sector(self) -> Sector:
        """The sector of exactly invariant quantities: (0, +1), or (0, 0) without improper
        elements."""
        return self.sectors(0)[0]

    @property
    @abstractmethod
    def proper(self) -> Group:
        """The subgroup of its proper rotations (SO3, or SO2 about the same axis)."""

    @property
    @abstractmethod
    def improper(self) -> torch.Tensor:
        """The improper element (3, 3) by which g differs from its proper part
        (:meth:`proper_part`): -1, or the mirror of SO2/O2."""

    @abstractmethod
    def generators(self) -> dict[str, torch.Tensor]:
        """Lie-algebra generators J (3, 3), with exp(t J) a rotation by angle t.

        SO3/O3: ``{"Lx", "Ly", "Lz"}`` ((L_i)_jk = -epsilon_ijk, so L_z x = (-y, x, 0)).
        SO2/O2: ``{"L_axis"}``, the rotation about the axis. The discrete part of O3/O2
        (inversion, mirror) has no generator.
        """

    @abstractmethod
    def proper_part(self, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split g (N, 3, 3) into (sign s = det g (N,), proper rotation R (N, 3, 3)):
        g = s R for SO3/O3, g = R M^[s<0] with M the mirror for SO2/O2."""

    @abstractmethod
    def _rotations(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` Haar-random proper rotations (n, 3, 3) drawn from ``rng``."""

    def haar(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` Haar-random elements (n, 3, 3) float64, reproducible by ``seed``.

        Improper elements of O3/O2 are drawn with probability 1/2.
        """
        import numpy as np
        import torch

        if int(n) < 1:
            raise GridError(f"need at least one random element, got n={n}")
        rng = np.random.default_rng(seed)
        mats = self._rotations(n, rng)
        if self.has_improper:
            flip = torch.from_numpy(rng.random(n) < 0.5)
            mats = torch.where(flip[:, None, None], mats @ self.improper, mats)
        return mats


def _signs(matrices: torch.Tensor) -> torch.Tensor:
    """det g as +1.0 or -1.0 (N,)."""
    import torch

    return torch.where(torch.linalg.det(matrices) < 0, -1.0, 1.0).to(torch.float64)


def _cartesian_generators() -> torch.Tensor:
    """(L_i)_jk = -epsilon_ijk, (3, 3, 3)."""
    import torch

    eps = torch.zeros(3, 3, 3, dtype=torch.float64)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    return -eps


@dataclass(frozen=True)
class SpatialGroup(Group):
    """SO3 and O3: rotations about every axis (improper element: the inversion -1)."""

    improper_name: ClassVar[str] = "inversion"
    improper_symbol: ClassVar[str] = "I"

    @property
    def proper(self) -> Group:
        return SO3()

    @property
    def improper(self) -> torch.Tensor:
        import torch

        return -torch.eye(3, dtype=torch.float64)

    def generators(self) -> dict[str, torch.Tensor]:
        cartesian = _cartesian_generators()
        return {name: cartesian[i] for i, name in enumerate(("Lx", "Ly", "Lz"))}

    def proper_part(self, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = _signs(matrices)
        return sign, sign[:, None, None] * matrices

    def _rotations(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        import torch
        from scipy.spatial.transform import Rotation

        return torch.from_numpy(Rotation.random(n, random_state=rng).as_matrix()).to(torch.float64)


@dataclass(frozen=True)
class PlanarGroup(Group):
    """SO2 and O2: rotations about one ``axis`` (3 floats, any non-zero length; improper
    element: the mirror e2 -> -e2 of :attr:`frame`)."""

    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    is_planar: ClassVar[bool] = True
    improper_name: ClassVar[str] = "mirror"
    improper_symbol: ClassVar[str] = "M"

    def __post_init__(self) -> None:
        try:
            axis = tuple(float(v) for v in self.axis)
        except (TypeError, ValueError):
            axis = ()
        norm = math.sqrt(sum(v * v for v in axis)) if len(axis) == 3 else math.nan
        if not math.isfinite(norm) or norm < 1e-12:
            shown = list(axis) if len(axis) == 3 else self.axis
            raise GridError(f"rotation axis must be a finite non-zero 3-vector, got {shown}")
        object.__setattr__(self, "axis", axis)

    @property
    def frame(self) -> torch.Tensor:
        """Right-handed orthonormal frame (3, 3) with columns e1, e2, n = axis/|axis|.

        e1 is the unit vector orthogonal to n closest to the Cartesian axis least
        aligned with n, so the z axis gives the identity frame.
        """
        import torch

        n = torch.as_tensor(self.axis, dtype=torch.float64)
        n = n / torch.linalg.vector_norm(n)
        helper = torch.zeros(3, dtype=torch.float64)
        helper[int(torch.argmin(n.abs()))] = 1.0
        e1 = helper - (helper @ n) * n
        e1 = e1 / torch.linalg.vector_norm(e1)
        e2 = torch.linalg.cross(n, e1)
        return torch.stack([e1, e2, n], dim=1)

    def rotations(self, angles: torch.Tensor) -> torch.Tensor:
        """Rotation matrices (N, 3, 3) by ``angles`` (radians) about the axis."""
        import torch

        frame = self.frame
        angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
        c, s = torch.cos(angles), torch.sin(angles)
        rz = torch.zeros(angles.shape[0], 3, 3, dtype=torch.float64)
        rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
        return frame @ rz @ frame.T

    def angles(self, matrices: torch.Tensor) -> torch.Tensor:
        """Angles phi (N,) of proper rotations about the axis (inverse of :meth:`rotations`)."""
        import torch

        frame = self.frame
        local = frame.T @ matrices @ frame
        return torch.atan2(local[:, 1, 0], local[:, 0, 0])

    @property
    def proper(self) -> Group:
        return SO2(self.axis)

    @property
    def improper(self) -> torch.Tensor:
        import torch

        frame = self.frame
        return frame @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)) @ frame.T

    def generators(self) -> dict[str, torch.Tensor]:
        return {"L_axis": (self.frame[:, 2, None, None] * _cartesian_generators()).sum(0)}

    def proper_part(self, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        sign = _signs(matrices)
        return sign, torch.where(sign[:, None, None] < 0, matrices @ self.improper, matrices)

    def _rotations(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        return self.rotations(rng.uniform(0.0, 2 * math.pi, n))


@dataclass(frozen=True)
class O3(SpatialGroup):
    """O(3) = SO(3) x {E, I}; sectors (l, +1) and (l, -1) for every l."""

    name = "O3"
    label = "O(3)"
    has_improper = True

    def sectors(self, lmax: int) -> list[Sector]:
        return [(l, s) for l in range(lmax + 1) for s in (1, -1)]


@dataclass(frozen=True)
class SO3(SpatialGroup):
    """SO(3); sectors (l, 0)."""

    name = "SO3"
    label = "SO(3)"


@dataclass(frozen=True)
class SO2(PlanarGroup):
    """SO(2) about ``axis``; sectors (m, 0), m the Fourier order."""

    name = "SO2"
    label = "SO(2)"


@dataclass(frozen=True)
class O2(PlanarGroup):
    """O(2) = SO(2) x {E, M} about ``axis``; the mirror splits the invariant mode into
    (0, +1) and (0, -1), then (m, 0) for m >= 1."""

    name = "O2"
    label = "O(2)"
    has_improper = True

    def sectors(self, lmax: int) -> list[Sector]:
        return [(0, 1), (0, -1)] + [(m, 0) for m in range(1, lmax + 1)]


GROUPS = tuple(_REGISTRY)


# -- the public shorthands of the README (a group name or a Group value) -------------

def haar(group: str | Group, n: int, seed: int | None = None,
         axis: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """``n`` Haar-random elements (n, 3, 3) float64 of ``group`` (:meth:`Group.haar`)."""
    return Group.parse(group, axis).haar(n, seed)


def generators(group: str | Group,
               axis: Sequence[float] = (0.0, 0.0, 1.0)) -> dict[str, torch.Tensor]:
    """Lie-algebra generators of ``group`` (:meth:`Group.generators`)."""
    return Group.parse(group, axis).generators()

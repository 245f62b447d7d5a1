"""The symmetry groups symplug measures, as sets of 3x3 orthogonal matrices.

Conventions
-----------
* ``"O3"``: all orthogonal matrices g = s R, s = det g = +1 (proper) or -1
  (improper, R followed by the inversion I = -1).
* ``"SO3"``: proper rotations only.
* ``"SO2"``: rotations about a unit ``axis`` n (right-handed, angle phi).
* ``"O2"``: SO2 plus the mirror through the plane spanned by n and the first
  in-plane frame vector e1 (it maps e2 -> -e2, n -> n; det -1).

Everything is float64 torch tensors; matrices act on column vectors (x' = g x).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from .errors import GridError

GROUPS = ("O3", "SO3", "SO2", "O2")
DTYPE = torch.float64


def check_group(group: str) -> str:
    """Return the canonical group name or raise naming the accepted ones."""
    name = str(group).upper().replace("(", "").replace(")", "")
    if name not in GROUPS:
        raise GridError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")
    return name


def has_improper(group: str) -> bool:
    """True for the groups that contain elements with det -1 (O3, O2)."""
    return check_group(group) in ("O3", "O2")


def is_planar(group: str) -> bool:
    """True for SO2/O2 (one rotation axis)."""
    return check_group(group) in ("SO2", "O2")


def axis_frame(axis: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """Right-handed orthonormal frame (3, 3) with columns e1, e2, n = axis/|axis|.

    e1 is the unit vector orthogonal to n closest to the Cartesian axis least
    aligned with n, so the z axis gives the identity frame.
    """
    n = torch.as_tensor(axis, dtype=DTYPE).reshape(3)
    norm = torch.linalg.vector_norm(n)
    if not torch.isfinite(norm) or norm < 1e-12:
        raise GridError(f"rotation axis must be a finite non-zero 3-vector, got {list(axis)}")
    n = n / norm
    helper = torch.zeros(3, dtype=DTYPE)
    helper[int(torch.argmin(n.abs()))] = 1.0
    e1 = helper - (helper @ n) * n
    e1 = e1 / torch.linalg.vector_norm(e1)
    e2 = torch.linalg.cross(n, e1)
    return torch.stack([e1, e2, n], dim=1)


def rotations_about(axis: Sequence[float], angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) by ``angles`` (radians) about ``axis``."""
    frame = axis_frame(axis)
    angles = torch.as_tensor(angles, dtype=DTYPE).reshape(-1)
    c, s = torch.cos(angles), torch.sin(angles)
    rz = torch.zeros(angles.shape[0], 3, 3, dtype=DTYPE)
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
    return frame @ rz @ frame.T


def mirror(axis: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """The O2 mirror (3, 3): reflection e2 -> -e2 of :func:`axis_frame`."""
    frame = axis_frame(axis)
    return frame @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=DTYPE)) @ frame.T


def angle_about(axis: Sequence[float], matrices: torch.Tensor) -> torch.Tensor:
    """Angles phi (N,) of proper rotations about ``axis`` (inverse of :func:`rotations_about`)."""
    frame = axis_frame(axis)
    local = frame.T @ matrices @ frame
    return torch.atan2(local[:, 1, 0], local[:, 0, 0])


def haar(group: str, n: int, seed: int | None = None,
         axis: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """``n`` Haar-random elements (n, 3, 3) float64 of ``group``, reproducible by ``seed``.

    Improper elements of O3/O2 are drawn with probability 1/2.
    """
    group = check_group(group)
    if int(n) < 1:
        raise GridError(f"need at least one random element, got n={n}")
    rng = np.random.default_rng(seed)
    if is_planar(group):
        mats = rotations_about(axis, torch.from_numpy(rng.uniform(0.0, 2 * math.pi, n)))
        improper = mirror(axis)
    else:
        mats = torch.from_numpy(Rotation.random(n, random_state=rng).as_matrix()).to(DTYPE)
        improper = -torch.eye(3, dtype=DTYPE)
    if has_improper(group):
        flip = torch.from_numpy(rng.random(n) < 0.5)
        mats = torch.where(flip[:, None, None], mats @ improper, mats)
    return mats


def generators(group: str, axis: Sequence[float] = (0.0, 0.0, 1.0)) -> dict[str, torch.Tensor]:
    """Lie-algebra generators J (3, 3), with exp(t J) a rotation by angle t.

    SO3/O3: ``{"Lx", "Ly", "Lz"}`` ((L_i)_jk = -epsilon_ijk, so L_z x = (-y, x, 0)).
    SO2/O2: ``{"L_axis"}``, the rotation about ``axis``.
    The discrete part of O3/O2 (inversion, mirror) has no generator.
    """
    group = check_group(group)
    eps = torch.zeros(3, 3, 3, dtype=DTYPE)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    cartesian = -eps  # (L_i)_jk = -eps_ijk
    if is_planar(group):
        n = axis_frame(axis)[:, 2]
        return {"L_axis": torch.einsum("i,ijk->jk", n, cartesian)}
    return {name: cartesian[i] for i, name in enumerate(("Lx", "Ly", "Lz"))}


def proper_part(matrices: torch.Tensor, group: str,
                axis: Sequence[float] = (0.0, 0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Split g into (sign s = det g, proper rotation R).

    O3/SO3: g = s R. O2/SO2: g = R M^[s<0] with M the :func:`mirror`.
    """
    det = torch.linalg.det(matrices)
    sign = torch.where(det < 0, -1.0, 1.0).to(DTYPE)
    if is_planar(group):
        rot = torch.where(sign[:, None, None] < 0, matrices @ mirror(axis), matrices)
    else:
        rot = sign[:, None, None] * matrices
    return sign, rot

"""Group actions on jet constituents, in float64 torch.

A jet block is ``{"p4": (J, P, 4) (E, px, py, pz) GeV, "mask": (J, P)}``. Rotations
act on the 3-momenta (E unchanged). In the ``lab`` frame the matrices act as they
are (SO2/O2 about the beam axis z is an exact symmetry of collider data); in the
``jet`` frame each jet j is acted on by F_j g F_j^T, with F_j the frame whose z axis
is the jet axis, so SO2 becomes the rotation about each jet's own axis. Lorentz
boosts (non-compact) act with rapidity y along the beam or the jet axis.
Constituent order is kept, so tokens correspond across the orbit.
"""

from __future__ import annotations

import numpy as np
import torch

from symplug.groups import axis_frame

DTYPE = torch.float64


def jet_frames(p4: torch.Tensor) -> torch.Tensor:
    """(J, 3, 3) orthonormal frames whose third column is each jet's 3-momentum direction."""
    total = p4[..., 1:].sum(dim=1)
    return torch.stack([axis_frame(v) for v in total.detach().cpu().numpy()]).to(p4)


def rotate_jets(block: dict, matrices: torch.Tensor, frame: str = "lab") -> dict:
    """Copies g x of a jet block for (B, 3, 3) matrices: p4 (B*J, P, 4), copy-major."""
    p4 = torch.as_tensor(block["p4"], dtype=DTYPE)
    mats = matrices.to(DTYPE)
    if frame == "jet":
        f = jet_frames(p4)
        rot = torch.einsum("jab,kbc,jdc->kjad", f, mats, f)  # F_j g F_j^T
    else:
        rot = mats[:, None].expand(-1, p4.shape[0], 3, 3)
    p3 = torch.einsum("kjab,jpb->kjpa", rot, p4[..., 1:])
    e = p4[..., :1].expand(mats.shape[0], *p4[..., :1].shape)
    out = torch.cat([e, p3], dim=-1).reshape(-1, *p4.shape[1:])
    mask = torch.as_tensor(block["mask"]).repeat(mats.shape[0], 1)
    return {"p4": out, "mask": mask, "copies": int(mats.shape[0]), "jets": int(p4.shape[0])}


def boost(p4: np.ndarray, rapidity: float, axis: str = "beam") -> np.ndarray:
    """Constituents boosted by ``rapidity`` along the beam (z) or each jet's axis."""
    p4 = np.asarray(p4, dtype=np.float64)
    if axis == "beam":
        n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (p4.shape[0], 3))
    elif axis == "jet":
        total = p4[..., 1:].sum(axis=1)
        n = total / np.linalg.norm(total, axis=1, keepdims=True)
    else:
        raise ValueError(f"boost axis must be 'beam' or 'jet', got {axis!r}")
    e, p = p4[..., 0], p4[..., 1:]
    par = np.einsum("jpi,ji->jp", p, n)
    ch, sh = np.cosh(rapidity), np.sinh(rapidity)
    e_new = ch * e + sh * par
    p_new = p + ((ch - 1.0) * par + sh * e)[..., None] * n[:, None, :]
    return np.concatenate([e_new[..., None], p_new], axis=-1)


def rotate_each(batch: dict, matrices: torch.Tensor, frame: str = "lab") -> dict:
    """Each jet j of ``batch`` acted on by its own element ``matrices[j]`` (augmentation):
    the same keys, p4 (J, P, 4) float64 with rotated 3-momenta (E unchanged)."""
    p4 = torch.as_tensor(batch["p4"], dtype=DTYPE)
    rot = matrices.to(DTYPE)
    if frame == "jet":
        f = jet_frames(p4)
        rot = torch.einsum("jab,jbc,jdc->jad", f, rot, f)  # F_j g_j F_j^T
    p3 = torch.einsum("jab,jpb->jpa", rot, p4[..., 1:])
    return {**batch, "p4": torch.cat([p4[..., :1], p3], dim=-1)}

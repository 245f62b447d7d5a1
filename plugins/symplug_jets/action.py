"""Group actions on jet constituents, in float64 torch.

A jet block is ``{"p4": (J, P, 4) (E, px, py, pz) GeV, "mask": (J, P)}``. Rotations
act on the 3-momenta (E unchanged). In the ``lab`` frame the matrices act as they
are (SO2/O2 about the beam axis z is an exact symmetry of collider data); in the
``jet`` frame each jet j is acted on by F_j g F_j^T, with F_j the frame whose z axis
is the jet axis, so SO2 becomes the rotation about each jet's own axis. Lorentz
boosts (non-compact) act with rapidity y along the beam or the jet axis.
Constituent order is kept, so tokens correspond across the orbit.

Boosts of data (numpy) go through scikit-hep ``vector``. The rotations of the orbit stay
hand-written torch einsums: they act on every copy of a block at once, feed the model
and, for Lie derivatives, carry autograd, none of which ``vector`` (numpy/awkward
backends) offers (``benchmarks/bench_vector.py`` compares the two on boosts).
"""

from __future__ import annotations

import numpy as np
import torch
import vector

from symplug.groups import SO2

DTYPE = torch.float64


def jet_frames(p4: torch.Tensor) -> torch.Tensor:
    """(J, 3, 3) orthonormal frames whose third column is each jet's 3-momentum direction."""
    total = p4[..., 1:].sum(dim=1)
    return torch.stack([SO2(v).frame for v in total.detach().cpu().numpy()]).to(p4)


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


def momenta(p4: np.ndarray) -> vector.MomentumNumpy4D:
    """(..., 4) (E, px, py, pz) GeV as scikit-hep ``vector`` 4-momenta."""
    p4 = np.asarray(p4, dtype=np.float64)
    return vector.array({"E": p4[..., 0], "px": p4[..., 1], "py": p4[..., 2], "pz": p4[..., 3]})


def boost(p4: np.ndarray, rapidity: float, axis: str = "beam") -> np.ndarray:
    """Constituents (J, P, 4) boosted by ``rapidity`` along the beam (z) or each jet's
    axis (the direction of its summed 3-momentum); padding (zero 4-vectors) stays zero."""
    p4 = np.asarray(p4, dtype=np.float64)
    beta = np.tanh(rapidity)
    if axis == "beam":
        out = momenta(p4).boostZ(beta=beta)
    elif axis == "jet":
        total = p4[..., 1:].sum(axis=1)
        n = total / np.linalg.norm(total, axis=1, keepdims=True)
        b = np.broadcast_to(beta * n[:, None, :], p4[..., 1:].shape)
        out = momenta(p4).boost_beta3(vector.array({"x": b[..., 0], "y": b[..., 1],
                                                    "z": b[..., 2]}))
    else:
        raise ValueError(f"boost axis must be 'beam' or 'jet', got {axis!r}")
    return np.stack([out.E, out.px, out.py, out.pz], axis=-1)


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

"""symplug plugin for planar point clouds under O(2) (an example third-party domain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from symplug import Domain, Output, ReportSection, SymplugError, hookimpl

__version__ = "0.1.0"


def act(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Copies g x (B, P, 2) of a planar cloud (P, 2) for O(2) elements about z (B, 3, 3)."""
    return torch.einsum("bij,pj->bpi", matrices[:, :2, :2].to(points.dtype), points)


def _polarization_3d(p2: torch.Tensor) -> torch.Tensor:
    return torch.cat([p2, torch.zeros_like(p2[..., :1])], dim=-1)


class InvariantModel(torch.nn.Module):
    """Energy from pair distances and polarization sum_i x_i phi(|x_i|): O(2)-equivariant."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.pair = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.radial = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        d = torch.cdist(points, points).unsqueeze(-1)
        energy = self.pair(d).sum((1, 2, 3))
        weights = self.radial(points.norm(dim=-1, keepdim=True))
        return {"energy": energy, "polarization": _polarization_3d((weights * points).sum(1))}


class MLPModel(torch.nn.Module):
    """Unconstrained: an MLP on the flattened raw coordinates (layers ``embed``, ``hidden``)."""

    def __init__(self, points: int = 5, width: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.points = points
        self.embed = torch.nn.Linear(2 * points, width)
        self.hidden = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(width, width), torch.nn.Tanh())
        self.head = torch.nn.Linear(width, 3)

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        if points.shape[1] != self.points:
            raise SymplugError(f"the mlp model takes clouds of {self.points} points, got {points.shape[1]}")
        out = self.head(self.hidden(self.embed(points.flatten(1))))
        return {"energy": out[:, 0], "polarization": _polarization_3d(out[:, 1:])}


MODELS = {"invariant": InvariantModel, "mlp": MLPModel}


def load_model(spec: str, trusted: bool) -> torch.nn.Module:
    """``invariant`` or ``mlp``: built here, nothing read from disk (``trusted`` unused)."""
    if spec not in MODELS:
        raise SymplugError(f"unknown planar model {spec!r}; choose one of {', '.join(MODELS)}")
    return MODELS[spec]().double()


def load_data(path: str) -> list[torch.Tensor]:
    """The clouds (P, 2) in field ``points`` (samples, P, 2) of an .npz file."""
    try:
        with np.load(path) as data:
            if "points" not in data:
                raise SymplugError(f"{path}: no field 'points' (found {', '.join(data.files)})")
            points = data["points"]
    except (OSError, ValueError) as exc:
        raise SymplugError(f"{path}: not a readable .npz file ({exc})") from exc
    if points.ndim != 3 or points.shape[-1] != 2:
        raise SymplugError(f"{path}: field 'points' must have shape (samples, P, 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise SymplugError(f"{path}: field 'points' holds NaN or inf")
    return list(torch.from_numpy(points.astype(np.float64)))


def report_sections(result: dict) -> list[ReportSection]:
    return [ReportSection("Planar clouds", f"{result['n_samples']} clouds in the xy plane, "
                          f"group {result['group']} about z.")]


@hookimpl
def symplug_domains() -> list[Domain]:
    return [Domain(name="planar", act=act, groups=("O2", "SO2"),
                   outputs={"energy": Output("0e", "a.u."), "polarization": Output("1o", "a.u.")},
                   description="2D point clouds under O(2) about z",
                   load_model=load_model, load_data=load_data, report_sections=report_sections)]


def make_data(path: str | Path, samples: int = 16, points: int = 5, seed: int = 0) -> Path:
    """Write ``samples`` random clouds of ``points`` points to an .npz file."""
    rng = np.random.default_rng(seed)
    np.savez(path, points=rng.normal(size=(samples, points, 2)))
    return Path(path)

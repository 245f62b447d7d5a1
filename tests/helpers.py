"""Shared test models: the example's e3nn network and small torch modules."""

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CoordinateMLP(torch.nn.Module):
    """Unconstrained: an MLP on the flattened raw coordinates (layer ``embed`` is linear)."""

    def __init__(self, points: int, hidden: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Linear(3 * points, hidden)
        self.act = torch.nn.Tanh()
        self.head = torch.nn.Linear(hidden, 4)

    def forward(self, pos):
        out = self.head(self.act(self.embed(pos.flatten(1))))
        return {"energy": out[:, :1], "dipole": out[:, 1:]}


class DistanceModel(torch.nn.Module):
    """Exactly invariant energy from pair distances (layer ``pair``)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.pair = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh())
        self.out = torch.nn.Linear(8, 1)

    def forward(self, pos):
        d = torch.cdist(pos, pos).unsqueeze(-1)
        return {"energy": self.out(self.pair(d)).sum((1, 2))}

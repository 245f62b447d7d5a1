"""Shared test models: the example's e3nn network and small torch modules."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


PET_OPTIONS = """
seed: 0
architecture:
  name: pet
  model: {{cutoff: 4.5, d_pet: 16, d_head: 16, d_node: 32, d_feedforward: 32, num_heads: 2,
          num_attention_layers: 1, num_gnn_layers: {gnn_layers}}}
  training: {{batch_size: 8, num_epochs: 2, learning_rate: 1.0e-3, log_interval: 1,
             checkpoint_interval: 1}}
training_set:
  systems: {{read_from: cu.extxyz, length_unit: angstrom}}
  targets:
    energy: {{key: energy, unit: eV, forces: {{key: forces}}}}
validation_set: 0.1
test_set: 0.1
"""


def train_small_pet(folder: Path, gnn_layers: int = 1, variant: tuple[str, ...] = ()) -> list:
    """A real 2-epoch ``mtt train`` of a small PET in ``folder`` (``pet.ckpt``, ``pet.pt``)
    on every 6th structure of ``symplug_atoms.data.generate(seed=0)``, which it returns;
    ``variant``: options of ``python -m symplug_atoms.metatrain_variants`` (else
    metatrain's own ``mtt``)."""
    from symplug_atoms.data import generate, write

    frames = generate(seed=0, progress=False)[::6]
    write(frames, folder / "cu.extxyz")
    (folder / "options.yaml").write_text(PET_OPTIONS.format(gnn_layers=gnn_layers))
    mtt = ([sys.executable, "-m", "symplug_atoms.metatrain_variants", *variant] if variant
           else [str(Path(sys.executable).parent / "mtt")])
    proc = subprocess.run([*mtt, "train", "options.yaml", "-o", "pet.pt"], cwd=folder,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return frames


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

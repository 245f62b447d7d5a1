"""Train the reference model on the EMT Cu data set, with random O(3) augmentation.

    python -m symplug_atoms.train --out plugins/symplug_atoms/data/pet_cu.pt

reproduces the shipped weights (seeded; 2 CPU threads). It generates the data
(:mod:`symplug_atoms.data`), splits it 80/10/10, trains on energies per atom and
forces with every structure rotated by a fresh Haar-random element of O(3) at
every step (labels rotated with it), and writes the checkpoint (config, weights,
test errors) atomically, plus the test frames as extxyz next to it.

``--sh-lmax L`` and ``--forces pair`` train the inductive-bias variants of
:class:`~symplug_atoms.pet.PointEdgeTransformer` (see :mod:`symplug_atoms.pet` and
docs/study.md); the checkpoint's config records them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from symplug.groups import O3
from symplug.result import write_checkpoint

from .data import generate, write
from .graph import BatchGraph, build_graph
from .pet import FORCE_MODES, PointEdgeTransformer

FORCE_WEIGHT = 1.0   # loss = ENERGY_WEIGHT * MSE(E/N in eV) + FORCE_WEIGHT * MSE(F in eV/A)
ENERGY_WEIGHT = 10.0


class Item:
    """One labelled structure, as tensors, with its graph."""

    def __init__(self, atoms, cutoff: float, dtype=torch.float32):
        self.graph = build_graph(atoms, cutoff)
        self.n = len(atoms)
        com = atoms.get_center_of_mass()
        self.pos = torch.tensor(atoms.positions - com, dtype=dtype)
        self.cell = torch.tensor(atoms.cell.array, dtype=dtype)
        self.energy = float(atoms.get_potential_energy())
        self.forces = torch.tensor(atoms.get_forces(), dtype=dtype)


def predict(model: PointEdgeTransformer, items: list[Item], mats: torch.Tensor,
            create_graph: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Energies (B,) in eV and forces per structure for items rotated by ``mats``."""
    positions, vectors = [], []
    for item, g in zip(items, mats):
        pos = (item.pos @ g.T).requires_grad_()
        shift = item.graph.shifts.to(pos.dtype) @ (item.cell @ g.T)  # S.a turns with g
        vectors.append(pos[item.graph.neighbors] - pos[item.graph.centers] + shift)
        positions.append(pos)
    atomic = model(BatchGraph.of([i.graph for i in items]), torch.cat(vectors))
    energy = torch.stack([a.sum() for a in atomic.split([i.n for i in items])])
    grads = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
    return energy, [-g for g in grads]


def errors(model, items: list[Item], seed: int = 1) -> dict[str, float]:
    """MAE and RMSE of energy (meV/atom) and forces (meV/A) on items, each rotated by a
    Haar-random element of O(3) (seeded); items of any dtype with Item's fields."""
    mats = O3().haar(len(items), seed=seed).to(items[0].pos.dtype)
    e_err, f_err = [], []
    for start in range(0, len(items), 16):
        chunk = items[start:start + 16]
        energy, forces = predict(model, chunk, mats[start:start + 16], create_graph=False)
        for item, e, f, g in zip(chunk, energy.detach(), forces, mats[start:start + 16]):
            e_err.append((float(e) - item.energy) / item.n * 1000)
            f_err.append(((f.detach() - item.forces @ g.T) * 1000).flatten())
    e_err, f_err = np.array(e_err), torch.cat(f_err).numpy()
    return {"energy_mae_meV_per_atom": float(np.abs(e_err).mean()),
            "energy_rmse_meV_per_atom": float(np.sqrt((e_err ** 2).mean())),
            "forces_mae_meV_per_A": float(np.abs(f_err).mean()),
            "forces_rmse_meV_per_A": float(np.sqrt((f_err ** 2).mean()))}


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the 80/10/10 train, validation and test split of ``n`` structures
    (seeded permutation; the shipped pet-cu's split with the default seed 0)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = n_val = n // 10
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def train(out: Path, epochs: int, seed: int, batch: int, lr: float, d: int, layers: int,
          cutoff: float, sh_lmax: int | None = None, forces: str = "conservative",
          frames: list | None = None, threads: int | None = None) -> dict:
    """Train a :class:`PointEdgeTransformer` (``sh_lmax``, ``forces``: its inductive-bias
    options) and write the checkpoint to ``out``; returns the checkpoint payload.

    ``frames`` replaces the generated data set (``generate(seed)``), e.g. to train
    several variants on the same structures; the split and the augmentation stream
    depend only on ``seed``, so equal seeds give equal batches and rotations.
    """
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    source = ("symplug_atoms.data.generate(seed)" if frames is None
              else f"{len(frames)} structures given by the caller")
    frames = generate(seed=seed) if frames is None else frames
    train_idx, val_idx, test_idx = split(len(frames), seed)
    items = [Item(f, cutoff) for f in frames]
    train_items = [items[i] for i in train_idx]
    val_items = [items[i] for i in val_idx]
    model = PointEdgeTransformer(species=(29,), d=d, n_layers=layers, cutoff=cutoff,
                                 sh_lmax=sh_lmax, forces=forces).float()  # as the data
    with torch.no_grad():  # start from the mean energy per atom
        model.offsets.fill_(float(np.mean([i.energy / i.n for i in train_items])))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train_items) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    rng = np.random.default_rng(seed + 1)
    history = []
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="training"):
        model.train()
        perm = rng.permutation(len(train_items))
        for s in range(0, len(perm), batch):
            chunk = [train_items[i] for i in perm[s:s + batch]]
            mats = O3().haar(len(chunk), seed=int(rng.integers(2 ** 32))).float()
            energy, forces = predict(model, chunk, mats, create_graph=True)
            target_e = torch.tensor([i.energy / i.n for i in chunk])
            loss_e = ((energy / torch.tensor([i.n for i in chunk]) - target_e) ** 2).mean()
            loss_f = torch.cat([(f - i.forces @ g.T).flatten()
                                for f, i, g in zip(forces, chunk, mats)]).pow(2).mean()
            loss = ENERGY_WEIGHT * loss_e + FORCE_WEIGHT * loss_f
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            model.eval()
            history.append({"epoch": epoch + 1, **errors(model, val_items)})
            tqdm.write(json.dumps(history[-1]))
    model.eval()
    test = errors(model, [items[i] for i in test_idx])
    payload = {"config": model.config, "state_dict": model.state_dict(),
               "test_errors": test, "history": history,
               "training": {"epochs": epochs, "seed": seed, "batch": batch, "lr": lr,
                            "n_train": len(train_idx), "n_val": len(val_idx),
                            "n_test": len(test_idx), "augmentation": "Haar O(3) per step",
                            "threads": torch.get_num_threads(),
                            "seconds": time.perf_counter() - start,
                            "data": source}}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(payload, out)
    write([frames[i] for i in test_idx], out.with_name(out.stem + "_test.extxyz"))
    return payload


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cutoff", type=float, default=4.5)
    parser.add_argument("--sh-lmax", type=int, default=None,
                        help="band-limited spherical-harmonic edge embedding up to this l "
                             "(default: the raw Cartesian input)")
    parser.add_argument("--forces", choices=FORCE_MODES, default="conservative",
                        help="conservative (autograd of the energy) or pair "
                             "(direct F_i = sum_j w_ij r_ij)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sh_lmax is not None and args.sh_lmax < 0:
        parser.error(f"--sh-lmax must be >= 0, got {args.sh_lmax}")
    payload = train(args.out, args.epochs, args.seed, args.batch, args.lr, args.d,
                    args.layers, args.cutoff, sh_lmax=args.sh_lmax, forces=args.forces,
                    threads=args.threads)
    print(json.dumps({"test_errors": payload["test_errors"], **payload["training"]}, indent=2))


if __name__ == "__main__":
    from symplug.cli import one_line_errors

    sys.exit(one_line_errors(main, "symplug_atoms.train"))

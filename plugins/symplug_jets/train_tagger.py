"""Train the reference jet tagger on generated top and QCD jets.

    python -m symplug_jets.train_tagger --out plugins/symplug_jets/data/tagger.pt

generates 1500 top and 1500 QCD jets (Pythia 8 + FastJet, seeded; see
:mod:`symplug_jets.generate`), splits them 70/15/15, standardises the particle
features on the training jets, trains with Adam on the cross-entropy, keeps the
epoch with the best validation AUC, and writes the checkpoint (config, weights, test
AUC and 1/eps_B) atomically, with the test jets as a ROOT file next to it.

``--sh-lmax L`` and ``--readout lorentz`` train the inductive-bias variants of
:class:`~symplug_jets.tagger_model.ParticleTransformerTagger` (see
:mod:`symplug_jets.tagger_model` and docs/study.md); the checkpoint's config records them.
``--arch pointnet`` trains :class:`~symplug_jets.pointnet.PointNetTagger` (raw 4-momenta,
no built-in rotational symmetry). ``--augment SO2`` turns every training jet by its own
Haar-random rotation about the beam at every step. ``--data FILE ...`` trains on ROOT
files already generated (``symplug jets generate``) instead of generating. With
``--checkpoints DIR``, the model is also saved after the epochs in :data:`SAVE_EPOCHS`
(and before the first, as epoch 0) for ``symplug track``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from symplug.result import write_checkpoint

from .generate import generate_file
from .metrics import auc, background_rejection
from .rootio import JetSet, concatenate, read_root, write_jets
from .pointnet import PointNetTagger
from .tagger_model import READOUTS, ParticleTransformerTagger

MAX_PARTICLES = 64
ARCHS = {"particle_transformer": ParticleTransformerTagger, "pointnet": PointNetTagger}
SAVE_EPOCHS = (1, 2, 3, 4, 6, 8, 11, 15, 20, 25, 30, 40, 50)


def split(n: int, seed: int) -> list[np.ndarray]:
    """The 70/15/15 train/validation/test indices of ``n`` jets for ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    return np.split(order, [int(0.7 * n), int(0.85 * n)])


def _augmented(p4: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each jet turned by its own Haar-random rotation about the beam (z)."""
    from symplug.groups import SO2

    from .action import rotate_each

    matrices = SO2().haar(len(p4), seed=int(rng.integers(2**31)))
    return rotate_each({"p4": p4, "mask": mask}, matrices)["p4"].to(p4.dtype)


def evaluate(model, p4, mask, labels) -> dict:
    with torch.no_grad():
        score = torch.cat([model.score(p4[i:i + 512], mask[i:i + 512])
                           for i in range(0, len(p4), 512)]).numpy()
    top = labels > 0.5
    return {"auc": auc(score, top), "rejection_at_0.3": background_rejection(score, top, 0.3),
            "rejection_at_0.5": background_rejection(score, top, 0.5)}


def train(jets: JetSet, epochs: int = 20, seed: int = 0, threads: int | None = None,
          arch: str = "particle_transformer", augment: str | None = None, lr: float = 2e-3,
          cosine: bool = False, checkpoints: Path | None = None,
          save_epochs: tuple[int, ...] = SAVE_EPOCHS,
          **options) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """Train a tagger of ``arch`` (a key of :data:`ARCHS`; ``options``: its constructor
    arguments, e.g. ``sh_lmax``, ``readout``) on ``jets`` (labels
    ``label_Top``/``label_QCD``), with ``augment="SO2"``: every training jet turned by
    its own random rotation about the beam at every step.

    The 70/15/15 split, the initial weights and the batch order depend only on
    ``seed``, so variants trained with the same seed see the same batches. Adam
    (learning rate ``lr``, batches of 64; ``cosine``: decayed to 0 over the epochs
    on a cosine), cross-entropy, the epoch with the best validation AUC kept. With ``checkpoints`` (a folder), the
    model is also written there as ``epoch_XXX.pt`` before training (epoch 0) and after
    each epoch in ``save_epochs``. Returns the model (eval mode), the checkpoint payload
    and the test indices.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    if augment not in (None, "SO2"):
        raise ValueError(f"augment must be None or 'SO2', got {augment!r}")
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    p4, mask = torch.from_numpy(jets.p4).float(), torch.from_numpy(jets.mask)
    labels = jets.labels[:, jets.label_names.index("label_Top")]
    n = len(jets)
    train_idx, val, test = split(n, seed)
    model = ARCHS[arch](**options).float()  # as the data
    with torch.no_grad():
        feats = model.features(p4[train_idx], mask[train_idx])[mask[train_idx]]
    model.shift.copy_(feats.mean(0))
    model.scale.copy_(feats.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(train_idx) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if cosine else None
    y = torch.from_numpy(labels).long()
    best, best_state, history = -1.0, None, []
    rng = np.random.default_rng(seed + 1)
    if checkpoints is not None:
        Path(checkpoints).mkdir(parents=True, exist_ok=True)
        _save(model, 0, checkpoints, augment)
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(train_idx)
        for s in range(0, len(perm), 64):
            idx = perm[s:s + 64]
            x = _augmented(p4[idx], mask[idx], rng) if augment else p4[idx]
            loss = torch.nn.functional.cross_entropy(model(x, mask[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
        model.eval()
        metrics = evaluate(model, p4[val], mask[val], labels[val])
        history.append({"epoch": epoch + 1, **metrics})
        print(json.dumps(history[-1]), flush=True)
        if checkpoints is not None and epoch + 1 in save_epochs:
            _save(model, epoch + 1, checkpoints, augment, metrics)
        if metrics["auc"] > best:
            best = metrics["auc"]
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test_metrics = evaluate(model, p4[test], mask[test], labels[test])
    payload = {"config": model.config, "state_dict": model.state_dict(),
               "test": test_metrics, "history": history,
               "training": {"n_jets": n, "epochs": epochs, "seed": seed, "augment": augment,
                            "lr": lr, "cosine": cosine,
                            "max_particles": int(jets.p4.shape[1]), "split": "70/15/15",
                            "threads": torch.get_num_threads(),
                            "seconds": time.perf_counter() - start}}
    return model, payload, test


def _save(model: torch.nn.Module, epoch: int, folder: Path, augment: str | None,
          validation: dict | None = None) -> Path:
    """``folder/epoch_XXX.pt``: the model after ``epoch`` epochs, loadable as a tagger."""
    payload = {"config": model.config, "state_dict": model.state_dict(), "epoch": epoch,
               "augment": augment, "validation": validation}
    return write_checkpoint(payload, Path(folder) / f"epoch_{epoch:03d}.pt")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1500, help="jets per class")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sh-lmax", type=int, default=None,
                        help="spherical harmonics of the jet-frame directions up to this l "
                             "instead of the lab Cartesian features")
    parser.add_argument("--readout", choices=READOUTS, default="class_token")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="particle_transformer")
    parser.add_argument("--augment", choices=["SO2"], default=None,
                        help="turn every training jet by a random rotation about the beam")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--cosine", action="store_true",
                        help="decay the learning rate to 0 over the epochs on a cosine")
    parser.add_argument("--data", type=Path, nargs="+", default=None,
                        help="ROOT files of generated jets to train on (default: generate "
                             "--n per class)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="folder for epoch_XXX.pt checkpoints along the training")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sh_lmax is not None and args.sh_lmax < 0:
        parser.error(f"--sh-lmax must be >= 0, got {args.sh_lmax}")
    options = {} if args.arch == "pointnet" else {"sh_lmax": args.sh_lmax,
                                                  "readout": args.readout}
    start = time.perf_counter()
    if args.data:
        jets = concatenate([read_root(path, max_particles=MAX_PARTICLES) for path in args.data])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            jets = read_root(generate_file(Path(tmp) / "jets.root", args.n, seed=args.seed),
                             max_particles=MAX_PARTICLES)
    gen_seconds = time.perf_counter() - start
    model, payload, test = train(jets, args.epochs, args.seed, threads=args.threads,
                                 arch=args.arch, augment=args.augment, lr=args.lr,
                                 cosine=args.cosine, checkpoints=args.checkpoints, **options)
    payload["training"].update({"n_per_class": None if args.data else args.n,
                                "data": [str(p) for p in args.data or []],
                                "generation_seconds": None if args.data else gen_seconds,
                                "seconds": time.perf_counter() - start})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(payload, args.out)
    write_jets(args.out.with_name(args.out.stem + "_test.root"), jets.subset(test))
    print(json.dumps({"test": payload["test"], **payload["training"]}, indent=2))


if __name__ == "__main__":
    from symplug.cli import one_line_errors

    sys.exit(one_line_errors(main, "symplug_jets.train_tagger"))

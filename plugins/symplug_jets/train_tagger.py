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
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from symplug.result import write_checkpoint

from .generate import generate_file
from .metrics import auc, background_rejection
from .rootio import JetSet, read_root, write_root
from .tagger_model import READOUTS, ParticleTransformerTagger, particle_features

MAX_PARTICLES = 64


def evaluate(model, p4, mask, labels) -> dict:
    with torch.no_grad():
        score = torch.cat([model.score(p4[i:i + 512], mask[i:i + 512])
                           for i in range(0, len(p4), 512)]).numpy()
    top = labels > 0.5
    return {"auc": auc(score, top), "rejection_at_0.3": background_rejection(score, top, 0.3),
            "rejection_at_0.5": background_rejection(score, top, 0.5)}


def train(jets: JetSet, epochs: int = 20, seed: int = 0, threads: int | None = None,
          **options) -> tuple[ParticleTransformerTagger, dict, np.ndarray]:
    """Train a :class:`ParticleTransformerTagger` (``options``: its constructor arguments,
    e.g. ``sh_lmax``, ``readout``) on ``jets`` (labels ``label_Top``/``label_QCD``).

    The 70/15/15 split, the initial weights and the batch order depend only on
    ``seed``, so variants trained with the same seed see the same batches. Adam
    (lr 2e-3, batches of 64), cross-entropy, the epoch with the best validation AUC
    kept. Returns the model (eval mode), the checkpoint payload and the test indices.
    """
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    p4, mask = torch.from_numpy(jets.p4).float(), torch.from_numpy(jets.mask)
    labels = jets.labels[:, jets.label_names.index("label_Top")]
    n = len(jets)
    order = np.random.default_rng(seed).permutation(n)
    train_idx, val, test = np.split(order, [int(0.7 * n), int(0.85 * n)])
    model = ParticleTransformerTagger(**options).float()  # as the data
    feats = particle_features(p4[train_idx], mask[train_idx])[mask[train_idx]]
    feats = feats[:, :model.shift.numel()]
    model.shift.copy_(feats.mean(0))
    model.scale.copy_(feats.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    y = torch.from_numpy(labels).long()
    best, best_state, history = -1.0, None, []
    rng = np.random.default_rng(seed + 1)
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(train_idx)
        for s in range(0, len(perm), 64):
            idx = perm[s:s + 64]
            loss = torch.nn.functional.cross_entropy(model(p4[idx], mask[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        metrics = evaluate(model, p4[val], mask[val], labels[val])
        history.append({"epoch": epoch + 1, **metrics})
        print(json.dumps(history[-1]), flush=True)
        if metrics["auc"] > best:
            best = metrics["auc"]
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test_metrics = evaluate(model, p4[test], mask[test], labels[test])
    payload = {"config": model.config, "state_dict": model.state_dict(),
               "test": test_metrics, "history": history,
               "training": {"n_jets": n, "epochs": epochs, "seed": seed,
                            "max_particles": int(jets.p4.shape[1]), "split": "70/15/15",
                            "threads": torch.get_num_threads(),
                            "seconds": time.perf_counter() - start}}
    return model, payload, test


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
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sh_lmax is not None and args.sh_lmax < 0:
        parser.error(f"--sh-lmax must be >= 0, got {args.sh_lmax}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        jets = read_root(generate_file(Path(tmp) / "jets.root", args.n, seed=args.seed),
                         max_particles=MAX_PARTICLES)
    gen_seconds = time.perf_counter() - start
    model, payload, test = train(jets, args.epochs, args.seed, threads=args.threads,
                                 sh_lmax=args.sh_lmax, readout=args.readout)
    payload["training"].update({"n_per_class": args.n, "generation_seconds": gen_seconds,
                                "seconds": time.perf_counter() - start})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(payload, args.out)
    test_jets = jets.subset(test)
    constituents = [p[m] for p, m in zip(test_jets.p4, test_jets.mask)]
    write_root(args.out.with_name(args.out.stem + "_test.root"), constituents,
               {name: test_jets.labels[:, k].astype(np.int32)
                for k, name in enumerate(test_jets.label_names)}, test_jets.observers)
    print(json.dumps({"test": payload["test"], **payload["training"]}, indent=2))


if __name__ == "__main__":
    main()

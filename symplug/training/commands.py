"""The ``symplug finetune`` and ``symplug track`` commands (the other modules of
:mod:`symplug.training` do the work, imported when a command runs, so that building the
CLI's parser imports no torch)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import SymplugError
from ..protocols import TrainingSnapshot
from ..options import (add_memory_option, add_trust_option, nonnegative_float, nonnegative_int,
                      open_fraction, positive_float, positive_int)


def _cmd_finetune(args: argparse.Namespace) -> int:
    import torch

    from ..plugins import get_domain, load_data, load_model, training_task
    from ..result import check_folder
    from .config import FinetuneConfig, split_samples
    from .trainer import finetune

    torch.set_num_threads(args.threads)
    domain = get_domain(args.domain)
    check_folder(args.out, "--out")
    samples = load_data(args.domain, args.data)
    if args.max_samples:
        samples = samples[: args.max_samples]
    group = None if args.no_augment else (args.group or domain.groups[0])
    config = FinetuneConfig(
        domain=args.domain, model=args.model, data=args.data, epochs=args.epochs, lr=args.lr,
        batch=args.batch, seed=args.seed, group=group,
        penalty_equivariance=args.penalty_equivariance, penalty_lie=args.penalty_lie,
        lie_step=args.lie_step, checkpoint_every=args.checkpoint_every,
        track_every=args.track_every, track_degree=args.degree,
        track_samples=args.track_samples,
        track_layers=tuple(n for n in (args.layers or "").split(",") if n),
        val_fraction=args.val_fraction)
    train, validation = split_samples(samples, config.val_fraction, config.seed)
    task = training_task(args.domain, load_model(args.domain, args.model,
                                                    trusted=args.trust_model), train)
    result = finetune(task, domain, config, args.out, validation=validation,
                      progress=not args.quiet, resume_from=args.resume_from)
    if result["rank"] != 0:  # data-parallel: rank 0 reports
        return 0
    _print_track(result["track"], result["history"])
    print(f"checkpoints in {args.out} (latest: {result['checkpoint']})")
    _report_track(args, Path(args.out) / "track.json")
    return 0


def _report_track(args: argparse.Namespace, track_json: Path) -> None:
    """With ``--report``: report.html and report.md of the track next to it."""
    if args.report and track_json.exists():
        from ..report import write_report

        track = json.loads(track_json.read_text())
        paths = write_report({"track": track}, track_json.parent,
                             title=f"symplug {args.command} {track['domain']}")
        print(f"report: {paths['report.html']}")


def _cmd_track(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..plugins import get_domain, load_data, load_model, training_task
    from ..result import check_folder
    from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint
    from .tracking import track_document, track_entry, write_track

    torch.set_num_threads(args.threads)
    domain = get_domain(args.domain)
    out = check_folder(args.out, "--out")  # before the (long) tracking
    for path in args.checkpoints:
        if not Path(path).exists():
            raise SymplugError(f"checkpoint {path!r} does not exist")
    if args.epochs is not None and len(args.epochs) != len(args.checkpoints):
        raise SymplugError(f"--epochs gives {len(args.epochs)} epochs for "
                           f"{len(args.checkpoints)} checkpoints")
    samples = load_data(args.domain, args.data)
    if args.max_samples:
        samples = samples[: args.max_samples]
    group = domain.group(args.group)
    layers = [n for n in (args.layers or "").split(",") if n]
    entries, grid = [], {}
    for k, path in enumerate(tqdm(args.checkpoints, desc="checkpoints", disable=args.quiet,
                                  file=sys.stderr)):
        try:
            saved = load_checkpoint(path)
        except SymplugError:  # not symplug's (e.g. a metatrain .ckpt): the plugin's loader alone
            saved = {}
        model = load_model(args.domain, str(path), trusted=args.trust_model)
        if isinstance(model, TrainingSnapshot):  # the weights the training had, not its best so far
            model = model.as_trained()
        try:
            task = training_task(args.domain, model, samples)
        except SymplugError:  # unlabelled data (e.g. MD frames): A and B, no accuracy
            task = None
        ours = saved.get("format") == CHECKPOINT_FORMAT
        history = (saved.get("history") or []) if ours else []
        # --epochs, else the checkpoint's (ours or any that records an integer "epoch",
        # e.g. a plugin's training script), else the model's own record, else the position
        recorded = saved.get("epoch")
        epoch = (args.epochs[k] if args.epochs
                 else int(recorded) if isinstance(recorded, int) and not isinstance(recorded, bool)
                 else model.epoch if isinstance(model, TrainingSnapshot) else None)
        outputs = [o for o in task.outputs if o in domain.outputs] if task else []
        entry, grid = track_entry(task.snapshot() if task else model, samples, domain,
                                  group=group, degree=args.degree,
                                  layers=layers or (list(task.layers) if task else []),
                                  outputs=outputs or None,
                                  epoch=k if epoch is None else epoch,
                                  loss=history[-1]["loss"] if history else None,
                                  evaluate=task.evaluate if task else None)
        entry["checkpoint"] = str(path)
        entries.append(entry)
    written = write_track(track_document(domain.name, group, grid, entries), out)
    _print_track(entries)
    print("wrote " + ", ".join(str(p) for p in written.values()))
    _report_track(args, written["json"])
    return 0


def _print_track(entries: list[dict], history: list[dict] | None = None) -> None:
    """One line per tracked epoch: A per output, invariant fraction per layer, metrics."""
    for e in entries:
        parts = [f"epoch {e['epoch']:>3}"]
        parts += [f"A({k}) {v['equivariance_rmse']:.4g} {v['units']}".rstrip()
                  for k, v in e["outputs"].items()]
        parts += [f"inv({k}) {v['invariant_fraction']:.3f}" for k, v in e["layers"].items()]
        parts += [f"{k} {v:.4g}" for k, v in e["metrics"].items() if isinstance(v, (int, float))]
        print("  ".join(parts))
    for h in history or []:
        if not entries:
            print(f"epoch {h['epoch']:>3}  loss {h['loss']:.5g}")


def epoch_list(text: str) -> list[int]:
    """``--epochs 1,2,5``: non-negative integers."""
    return [nonnegative_int(t) for t in text.split(",")]


def _budgeted(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` run under the budget of ``--max-memory`` (symplug.memory)."""
    def run(args: argparse.Namespace) -> int:
        from ..memory import limit

        with limit(args.max_memory):
            return command(args)
    return run


def add_commands(sub: Any) -> None:
    """Add ``symplug finetune`` and ``symplug track`` to the CLI's subparsers."""
    p = sub.add_parser("finetune", help="augmented fine-tuning with symmetry penalties, "
                       "checkpoints and symmetry tracking")
    p.add_argument("domain", help="a domain whose plugin offers fine-tuning (atoms, jets)")
    p.add_argument("--model", required=True, help="model spec understood by the domain's plugin")
    add_trust_option(p)
    p.add_argument("--data", required=True, help="labelled data file understood by the plugin")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    p.add_argument("--lr", type=positive_float, default=1e-4,
                   help="Adam learning rate, cosine decay to 0 (default 1e-4)")
    p.add_argument("--batch", type=positive_int, default=8, help="items per step (default 8)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of split, order, augmentation")
    p.add_argument("--group", help="augmentation group (default: the domain's first)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--penalty-equivariance", type=nonnegative_float, default=0.0, metavar="W",
                   help="weight of mean |f(h x) - rho(h) f(x)|^2 (default 0)")
    p.add_argument("--penalty-lie", type=nonnegative_float, default=0.0, metavar="W",
                   help="weight of sum_J mean |L_J f|^2 (default 0)")
    p.add_argument("--lie-step", type=positive_float, default=1e-2, help="central-difference step (rad)")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                   help="also checkpoint every N steps (default: end of epoch only)")
    p.add_argument("--track-every", type=nonnegative_int, default=1, metavar="K",
                   help="track A and B every K epochs (0: off; default 1)")
    p.add_argument("--degree", type=positive_int, default=2, help="tracking grid degree (default 2)")
    p.add_argument("--track-samples", type=positive_int, default=4,
                   help="validation samples diagnosed when tracking (default 4)")
    p.add_argument("--layers", help="comma-separated layers to track (default: the task's)")
    p.add_argument("--val-fraction", type=open_fraction, default=0.2,
                   help="samples held out for validation and tracking (default 0.2)")
    p.add_argument("--max-samples", type=positive_int, help="use the first N samples of the data")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", required=True, help="folder for checkpoints, log and tracking; "
                   "a run whose checkpoint is there resumes")
    p.add_argument("--resume-from", metavar="EPOCH.pt",
                   help="resume from this intact checkpoint (e.g. epoch_003.pt in --out) "
                   "instead of --out/checkpoint.pt; the settings must be the run's")
    p.add_argument("--report", action="store_true", help="also write report.html and report.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_option(p)
    p.set_defaults(func=_budgeted(_cmd_finetune))

    p = sub.add_parser("track", help="A and B of saved checkpoints on data, as a time series")
    p.add_argument("domain", help="a domain declared by an installed plugin")
    p.add_argument("--checkpoints", required=True, nargs="+", help="checkpoint files, in order")
    add_trust_option(p)
    p.add_argument("--data", required=True, help="data file understood by the domain's plugin")
    p.add_argument("--epochs", type=epoch_list, metavar="E1,E2,...",
                   help="the checkpoints' epochs (default: as the checkpoints record them, "
                   "else their positions)")
    p.add_argument("--degree", type=positive_int, default=2, help="grid degree (default 2)")
    p.add_argument("--group", help="group (default: the domain's first)")
    p.add_argument("--layers", help="comma-separated layers (default: the task's)")
    p.add_argument("--max-samples", type=positive_int, help="use the first N samples")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", required=True, help="folder for track.json, track.mts, track.png")
    p.add_argument("--report", action="store_true", help="also write report.html and report.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_option(p)
    p.set_defaults(func=_budgeted(_cmd_track))

"""The fine-tuning loop: :class:`Trainer` and :func:`finetune`.

The loop is domain-free: the domain's plugin supplies a :class:`~symplug.TrainingTask`
(``symplug_training_task``: how to batch, predict and score) and the augmentation
(:func:`~symplug.training.augmentation.augment`). Every step transforms the batch by
Haar-random elements of the group, one per item, and minimises
loss + W_eq * P_eq + W_lie * P_lie (:mod:`symplug.training.penalties`).

Checkpoints are written atomically at the end of every epoch and every
``checkpoint_every`` steps (:mod:`symplug.training.checkpoints`); a killed run resumed
from its last checkpoint ends with exactly the weights of an uninterrupted run.

Data-parallel (``torchrun``): the global batch is split over the ranks, every rank draws
the group elements of the whole batch and takes its rows, and every loss term is
all-reduced (:mod:`symplug.training.objective`), so that the gradients equal the
one-process gradients. Only rank 0 writes files, logs and tracks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .. import memory
from ..errors import SymplugError
from ..records import Domain, TrainingTask
from ..result import write_checkpoint
from .checkpoints import (CHECKPOINT_FORMAT, LATEST, derived_seed, rng_state, saved_run,
                          seed_everything, set_rng_state)
from .config import FinetuneConfig, check_config
from .distributed import World, data_parallel, join_world, leave_world
from .objective import Objective
from .tracking import track_document, track_entry, write_track


@dataclass
class RunState:
    """Where a run stands (saved in every checkpoint)."""

    epoch: int = 0           # completed epochs
    step: int = 0            # completed steps of the current epoch
    global_step: int = 0
    running: dict = field(default_factory=dict)   # sums over the current epoch
    history: list = field(default_factory=list)   # one record per epoch
    track: list = field(default_factory=list)     # tracking entries
    grid: dict = field(default_factory=dict)


def _log(path: Path, record: dict) -> None:
    """Append one JSON line (the log; checkpoints hold the canonical history)."""
    from ..result import _clean

    with open(path, "a") as handle:
        handle.write(json.dumps(_clean({"time": time.time(), **record})) + "\n")


class Trainer:
    """One fine-tuning run of ``task.module`` on ``task.items``, writing to ``out`` (rank 0
    of ``world``). The constructor checks the settings and builds the optimizer (Adam,
    cosine decay to 0 over the run); :meth:`run` resumes or starts and trains.
    ``validation``, ``callback`` and ``resume_from``: see :func:`finetune`."""

    def __init__(self, task: TrainingTask, domain: Domain, config: FinetuneConfig, out: str | Path,
                 world: World = World(), validation: Sequence[Any] = (),
                 progress: bool = True, callback: Callable[[int], None] | None = None,
                 resume_from: str | Path | None = None):
        self.task, self.domain, self.config, self.out, self.world = (task, domain, config,
                                                                     Path(out), world)
        self.validation, self.progress, self.callback = validation, progress, callback
        self.resume_from = resume_from
        self.lead = world.rank == 0  # the process that writes, logs and tracks
        if self.lead:
            self.out.mkdir(parents=True, exist_ok=True)
        self.group = None if config.group is None else domain.group(config.group)
        self.items = list(task.items)
        if not self.items:
            raise SymplugError("no training items")
        check_config(config)
        if config.batch < world.size:
            raise SymplugError(f"batch {config.batch} is the global batch, split over the "
                               f"{world.size} processes: it must be at least {world.size}")
        if domain.check is not None:  # validation samples are refused where they enter too
            for sample in validation:
                domain.check(sample)
        if (config.penalty_equivariance or config.penalty_lie) and self.group is None:
            raise SymplugError("symmetry penalties need a group")
        if config.track_every and not validation:
            raise SymplugError("tracking needs validation samples")
        self.track_group = self.group or domain.group()
        self.steps_per_epoch = math.ceil(len(self.items) / config.batch)
        self.module = task.module
        self.opt = torch.optim.Adam(self.module.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.opt, T_max=config.epochs * self.steps_per_epoch)
        self.state = RunState()
        self.latest = self.out / LATEST
        self.log = self.out / "log.jsonl"
        self.objective = Objective(task, config, self.group, world)

    def resume_or_start(self) -> None:
        """Continue from rank 0's saved run (sent to every rank: no shared disk needed),
        or seed every RNG for a new one."""
        saved, error = None, None
        if self.lead:
            try:
                saved = saved_run(self.out, self.config, self.resume_from)
            except SymplugError as exc:
                error = str(exc)
        if self.world.size > 1:
            shared = [saved, error]
            dist.broadcast_object_list(shared, src=0)
            saved, error = shared
        if error:
            raise SymplugError(error)
        if saved is None:
            seed_everything(self.config.seed)
            if self.lead:
                _log(self.log, {"event": "start", **self.config.to_dict(),
                                "world_size": self.world.size})
            return
        self.module.load_state_dict(saved["state_dict"])
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        self.state = RunState(**{k: saved[k] for k in ("epoch", "step", "global_step", "running",
                                                       "history", "track", "grid")})
        if self.lead and self.resume_from is not None:  # the folder's latest is now this run's
            write_checkpoint(saved, self.latest)
        if self.lead:
            _log(self.log, {"event": "resume", "epoch": self.state.epoch, "step": self.state.step,
                            "global_step": self.state.global_step, "world_size": self.world.size})

    def save(self, final_of_epoch: bool) -> None:
        """Write ``checkpoint.pt`` (and ``epoch_XXX.pt`` at the end of an epoch)."""
        state = self.state
        if self.lead:
            payload = {"format": CHECKPOINT_FORMAT,
                       "config": dict(getattr(self.module, "config", {})),
                       "state_dict": self.module.state_dict(), "finetune": self.config.to_dict(),
                       "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                       "rng": rng_state(), "epoch": state.epoch, "step": state.step,
                       "global_step": state.global_step, "running": state.running,
                       "history": state.history, "track": state.track, "grid": state.grid,
                       "world_size": self.world.size}
            write_checkpoint(payload, self.latest)
            if final_of_epoch:
                write_checkpoint(payload, self.out / f"epoch_{state.epoch:03d}.pt")
        if self.world.size > 1:  # no rank runs ahead of a checkpoint that is being written
            dist.barrier()

    def track(self, loss: float | None) -> None:
        """Track A and B now (rank 0; the other ranks wait) and rewrite the track files."""
        config, task, state = self.config, self.task, self.state
        entry = None
        if self.lead:
            was_training = self.module.training
            entry, state.grid = track_entry(
                task.snapshot(), self.validation[: config.track_samples], self.domain,
                group=self.track_group, degree=config.track_degree,
                layers=list(config.track_layers or task.layers),
                outputs=[o for o in task.outputs if o in self.domain.outputs] or None,
                epoch=state.epoch, loss=loss, evaluate=task.evaluate,
                evaluate_samples=self.validation)
            self.module.train(was_training)
        if self.world.size > 1:
            shared = [entry, state.grid]
            dist.broadcast_object_list(shared, src=0)
            entry, state.grid = shared
        state.track.append(entry)
        if self.lead:
            write_track(track_document(self.domain.name, self.track_group, state.grid,
                                       state.track), self.out)
            _log(self.log, {"event": "track", "epoch": state.epoch,
                            "A": {k: v["equivariance_rmse"] for k, v in entry["outputs"].items()},
                            "invariant_fraction": {k: v["invariant_fraction"]
                                                   for k, v in entry["layers"].items()},
                            "metrics": entry["metrics"]})

    def check_batch_memory(self) -> None:
        """A measured trial before training: forward and backward of one item with the
        run's penalties (no update; RNG, gradients and buffers restored). A batch whose
        estimated peak (this rank's items x the measured cost per item) passes the memory
        budget is refused up front, with the largest batch that fits."""
        config, task, step = self.config, self.task, self.objective
        rows = math.ceil(min(config.batch, len(self.items)) / self.world.size)
        if rows <= 1 or memory.rss() is None:
            return
        buffers = {name: b.clone() for name, b in task.module.named_buffers()}
        with torch.random.fork_rng(devices=[]):
            def trial() -> None:
                compare = None if not config.penalty_equivariance else step.group.haar(1, seed=0)
                terms = step.terms(task.collate([self.items[0]]), 1, None, compare)
                sum(t.total.sum() for t in terms.values()).backward()
            _, cost = memory.measure(trial)
        for p in task.module.parameters():
            p.grad = None
        with torch.no_grad():  # e.g. batch-norm statistics: the trial leaves no trace
            for name, b in task.module.named_buffers():
                b.copy_(buffers[name])
        if cost:
            memory.require(rows * cost, f"a training batch of {config.batch} items (measured "
                           f"{memory.gib(cost)} per item)",
                           f"the largest batch that fits is about "
                           f"{max(1, int((memory.budget() - memory.rss()) // cost)) * self.world.size}")

    def stop_if_nonfinite(self, updated: bool) -> None:
        """Stop the run when the step's loss (before the update) or, ``updated``, the
        weights are not finite, naming the last good checkpoint (the bad weights are never
        saved). The logged loss is identical on every rank, as are the weights."""
        state, logged = self.state, self.objective.logged
        where = f"epoch {state.epoch + 1}, step {state.step + 1}"
        if not updated:
            bad = {k: v for k, v in logged.items() if not math.isfinite(v)}
            if not bad:
                return
            what = "the loss is not finite (" + ", ".join(f"{k} {v}" for k, v in bad.items()) + ")"
        else:
            names = [n for n, p in self.module.named_parameters() if not torch.isfinite(p).all()]
            if not names:
                return
            what = f"the update made the weights non-finite ({names[0]})"
        kept = (f"the last good checkpoint {self.latest} is kept" if self.latest.exists()
                else "no checkpoint was written")
        if self.lead:
            _log(self.log, {"event": "stopped", "epoch": state.epoch, "step": state.step,
                            "reason": what})
        raise SymplugError(f"{where}: {what}; stopped without saving these weights, {kept} "
                           "(lower --lr, or check the labels for NaN or huge values)")

    def step(self, runner: torch.nn.Module, idx: np.ndarray) -> None:
        """One optimisation step on the global batch of items ``idx`` (this rank's rows),
        augmented by elements drawn from the step's seeds."""
        config, state = self.config, self.state
        lo, hi = self.world.rows(len(idx))
        seeds = (config.seed, state.epoch, state.step)
        # elements of the whole global batch from the step's seeds; this rank's rows
        augment_by = None if self.group is None else self.group.haar(
            len(idx), seed=derived_seed(*seeds, 0))[lo:hi]
        compare = None if not config.penalty_equivariance else self.group.haar(
            len(idx), seed=derived_seed(*seeds, 1))[lo:hi]
        batch = self.task.collate([self.items[i] for i in idx[lo:hi]]) if hi > lo else None
        objective = runner(batch, hi - lo, augment_by=augment_by, compare=compare)
        self.opt.zero_grad()
        objective.backward()
        self.stop_if_nonfinite(updated=False)
        self.opt.step()
        self.sched.step()
        self.stop_if_nonfinite(updated=True)
        for k, v in self.objective.logged.items():
            state.running[k] = state.running.get(k, 0.0) + v
        state.running["count"] = state.running.get("count", 0) + 1
        state.step += 1
        state.global_step += 1

    def epoch(self, runner: torch.nn.Module, bar: Any, start: float) -> None:
        """The rest of the current epoch: its steps (checkpoints every ``checkpoint_every``),
        then its record, tracking and checkpoints."""
        config, state = self.config, self.state
        self.module.train()
        perm = np.random.default_rng(derived_seed(config.seed, state.epoch)).permutation(
            len(self.items))
        while state.step < self.steps_per_epoch:
            self.step(runner, perm[state.step * config.batch:(state.step + 1) * config.batch])
            bar.update(1)
            bar.set_postfix(loss=f"{self.objective.logged['loss']:.4g}", refresh=False)
            if (config.checkpoint_every and state.global_step % config.checkpoint_every == 0
                    and state.step < self.steps_per_epoch):
                self.save(final_of_epoch=False)
            if self.callback is not None:
                self.callback(state.global_step)
        count = state.running.pop("count")
        record = {"epoch": state.epoch + 1, "lr": self.sched.get_last_lr()[0],
                  **{k: v / count for k, v in state.running.items()}}
        state.epoch, state.step, state.running = state.epoch + 1, 0, {}
        state.history.append(record)
        if self.lead:
            _log(self.log, {"event": "epoch", **record, "seconds": time.perf_counter() - start})
        if config.track_every and (state.epoch % config.track_every == 0
                                   or state.epoch == config.epochs):
            self.track(record["loss"])
        self.save(final_of_epoch=True)

    def run(self) -> dict:
        """Resume or start, then train to ``config.epochs``; what :func:`finetune` returns."""
        config = self.config
        self.resume_or_start()
        state = self.state
        runner = data_parallel(self.objective, self.world)
        self.check_batch_memory()
        if config.track_every and not state.track:
            self.track(None)
            self.save(final_of_epoch=False)
        bar = tqdm(total=config.epochs * self.steps_per_epoch, initial=state.global_step,
                   unit="step", desc=f"finetune {self.domain.name}",
                   disable=not self.progress or not self.lead, file=sys.stderr)
        start = time.perf_counter()
        try:
            while state.epoch < config.epochs:
                self.epoch(runner, bar, start)
        finally:
            bar.close()
        return {"history": state.history, "track": state.track, "checkpoint": str(self.latest),
                "grid": state.grid, "rank": self.world.rank, "world_size": self.world.size}


def finetune(task: TrainingTask, domain: Domain, config: FinetuneConfig, out: str | Path, *,
             validation: Sequence[Any] = (), progress: bool = True,
             callback: Callable[[int], None] | None = None,
             resume_from: str | Path | None = None) -> dict:
    """Fine-tune ``task.module`` with augmentation and penalties; resume from
    ``out/checkpoint.pt`` if it exists, or from ``resume_from`` (e.g. an intact
    ``epoch_003.pt``, a path or a name in ``out``; same settings). A folder with an
    earlier run's files but no checkpoint.pt is refused (runs are never mixed). Returns
    {"history", "track", "checkpoint", "grid", "rank", "world_size"}.

    A non-finite loss or non-finite weights stop the run with a :class:`SymplugError`;
    the checkpoints on disk stay the last good ones (NaN weights are never written).

    ``validation``: domain samples for the accuracy figures and (the first
    ``config.track_samples``) for tracking. ``callback(global_step)`` runs after every
    step (and its checkpoint), e.g. to stop a run in a test.

    Data-parallel: in an initialised ``torch.distributed`` process group, or under
    ``torchrun`` (``WORLD_SIZE`` > 1 in the environment; the group is then created here,
    gloo, or nccl for a model on a GPU, and destroyed at the end), every process runs
    this function on the same task and data; ``config.batch`` is the global batch, split
    over the processes, and the weights equal a one-process run's to rounding. Only
    rank 0 writes files, logs and tracks.
    """
    world = join_world(task.module)
    try:
        return Trainer(task, domain, config, Path(out), world, validation, progress, callback,
                       resume_from).run()
    finally:
        leave_world(world)

"""Augmented fine-tuning with symmetry tracking.

The loop is domain-free: the domain's plugin supplies a :class:`~symplug.TrainingTask`
(``Domain.training_task``: how to batch, predict and score) and the augmentation
(:mod:`symplug.augmentation`: inputs by the task's action, labels by their
representations). Every step transforms the batch by Haar-random elements of the
group, one per item, and minimises

    loss + W_eq * P_eq + W_lie * P_lie,

    P_eq  = sum_outputs w_o * mean |f(h x) - rho(h) f(x)|^2            (h Haar-random)
    P_lie = sum_outputs w_o * sum_J mean |[rho(e^{sJ})^-1 f(e^{sJ} x)
                                       - rho(e^{-sJ})^-1 f(e^{-sJ} x)] / (2 s)|^2

(means over rows and components, in the task's training units squared; J the
generators of the group, s the central-difference step in rad; for an exactly
equivariant f both vanish, and P_lie -> sum_J mean |L_J f|^2 as s -> 0).

Checkpoints are written atomically at the end of every epoch and every
``checkpoint_every`` steps: model, optimizer, scheduler, the torch / numpy / python
RNG states, epoch and step. Batch order and group elements are drawn from seeds
derived from (seed, epoch, step), so a killed run resumed from its last checkpoint
ends with exactly the weights of an uninterrupted run. Checkpoints load with
``torch.load(weights_only=True)`` and hold the model's ``config`` and ``state_dict``
where the domain's loaders expect them.

Data-parallel (torch DistributedDataParallel, launched with ``torchrun``): the global
batch is split over the ranks, every rank draws the group elements of the whole batch
and takes its rows, and every loss term is a :class:`~symplug.MeanTerm` whose count is
all-reduced, so that the gradients equal the one-process gradients (docs/training.md).

Tracking: at chosen epochs, A of every output and B of every named layer on a fixed
validation subset and grid (:func:`symplug.diagnose` without the convergence check),
written as ``track.json`` (a time series), ``track.mts`` (metatensor TensorMap) and
``track.png``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import augmentation, memory
from .errors import SymplugError
from .augmentation import apply, rows_matrices
from .groups import check_group, generators, haar
from .records import Domain, MeanTerm, TrainingTask
from .representations import representation
from .result import atomic_write, write_checkpoint, write_json, write_tensormap

CHECKPOINT_FORMAT = "symplug-finetune/1"
LATEST = "checkpoint.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (stored in every checkpoint; a resumed run must
    match). ``lr`` is Adam's initial learning rate (cosine decay to 0 over the run);
    ``group`` None means no augmentation; penalties are weights (0: off); ``lie_step``
    in rad; ``checkpoint_every`` in steps (0: end of epoch only); ``track_every`` in
    epochs (0: no tracking; epoch 0 and the last epoch are always tracked otherwise)."""

    domain: str
    model: str = ""
    data: str = ""
    epochs: int = 1
    lr: float = 1e-3
    batch: int = 8
    seed: int = 0
    group: str | None = "O3"
    penalty_equivariance: float = 0.0
    penalty_lie: float = 0.0
    lie_step: float = 1e-2
    checkpoint_every: int = 0
    track_every: int = 0
    track_degree: int = 2
    track_samples: int = 4
    track_layers: tuple[str, ...] = ()
    val_fraction: float = 0.2

    def to_dict(self) -> dict:
        out = asdict(self)
        out["track_layers"] = list(self.track_layers)
        return out


def derived_seed(*parts: int) -> int:
    """A 32-bit seed derived from integers (seed, epoch, step, purpose)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def rng_state() -> dict:
    """torch, numpy (legacy global) and python RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached_gaussian": float(np_state[4])},
            "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                       "gauss": py_gauss}}


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


# ----------------------------------------------------------------------------- penalties


def _equivariance_sums(task: TrainingTask, domain: str, batch: Any,
                       predictions: Mapping[str, torch.Tensor],
                       matrices: torch.Tensor) -> dict[str, MeanTerm]:
    """{output: MeanTerm(sum |f(h x) - rho(h) f(x)|^2, rows x components)}."""
    moved = task.predict(augmentation.augment(task, batch, matrices))
    out = {}
    for name, spec in task.outputs.items():
        rep = representation(spec)
        y = rep.flatten(predictions[name], 1, name)
        rho = rows_matrices(task, batch, name, rep.matrices(matrices))
        diff = rep.flatten(moved[name], 1, name) - apply(rho, y)
        out[name] = MeanTerm(diff.pow(2).sum(), float(diff.numel()))
    return out


def equivariance_penalty(task: TrainingTask, domain: str, batch: Any,
                         predictions: Mapping[str, torch.Tensor],
                         matrices: torch.Tensor) -> dict[str, torch.Tensor]:
    """{output: mean |f(h x) - rho(h) f(x)|^2} for the (B, 3, 3) elements ``matrices``
    (one per batch item), in training units squared (differentiable)."""
    return {k: v.value for k, v in
            _equivariance_sums(task, domain, batch, predictions, matrices).items()}


def _lie_sums(task: TrainingTask, domain: str, batch: Any, size: int, group: str,
              axis: Sequence[float], step: float) -> dict[str, MeanTerm]:
    """{output: MeanTerm(sum_J sum |L_J f|^2, rows x components)}."""
    n = int(size)
    totals: dict[str, Any] = {name: 0.0 for name in task.outputs}
    counts = {name: 0.0 for name in task.outputs}
    for j in generators(group, axis).values():
        terms = []
        for sign in (1.0, -1.0):
            mats = torch.linalg.matrix_exp(sign * step * j)[None].expand(n, 3, 3).contiguous()
            pred = task.predict(augmentation.augment(task, batch, mats))
            terms.append((mats, pred))
        for name, spec in task.outputs.items():
            rep = representation(spec)
            back = []
            for mats, pred in terms:
                rho = rows_matrices(task, batch, name, rep.matrices(mats))
                back.append(apply(rho.transpose(1, 2), rep.flatten(pred[name], 1, name)))
            diff = (back[0] - back[1]) / (2 * step)
            totals[name] = totals[name] + diff.pow(2).sum()
            counts[name] = float(diff.numel())
    return {name: MeanTerm(totals[name], counts[name]) for name in task.outputs}


def lie_penalty(task: TrainingTask, domain: str, batch: Any, size: int, group: str,
                axis: Sequence[float] = (0.0, 0.0, 1.0),
                step: float = 1e-2) -> dict[str, torch.Tensor]:
    """{output: sum_J mean |L_J f|^2} with the Lie derivative L_J f of every generator J
    by a rho-corrected central difference of step ``step`` rad (exactly zero for an
    exactly equivariant f; for f = v + w, v equivariant and w constant, it equals
    (sin s / s)^2 sum_J |J w|^2 / d over the rotation generators, d the number of
    components, the mean running over components). ``size``: the number of items in
    ``batch``."""
    return {k: v.value for k, v in _lie_sums(task, domain, batch, size, group, axis, step).items()}


# ----------------------------------------------------------------------------- tracking


def track_entry(model: Any, samples: Sequence[Any], domain: Domain, *, group: str, degree: int,
                layers: Sequence[str], outputs: Sequence[str] | None = None,
                epoch: int, loss: float | None = None,
                evaluate: Callable[[Any, dict | None], dict] | None = None,
                evaluate_samples: Sequence[Any] | None = None) -> tuple[dict, dict]:
    """One point of the time series: A of every output and B of every layer of ``model``
    on ``samples`` (degree ``degree`` grid, no convergence check), plus the task's
    accuracy figures on ``evaluate_samples`` (default ``samples``). Returns
    (entry, grid record)."""
    from .diagnose import diagnose

    result = diagnose(model, list(samples), domain, group=group, degree=degree, layers=layers,
                      outputs=outputs, check_convergence=False, progress=False)
    entry = {"epoch": int(epoch),
             "metrics": ({} if evaluate is None else
                         dict(evaluate(samples if evaluate_samples is None else evaluate_samples,
                                       result))),
             "outputs": {name: {"equivariance_rmse": o["equivariance_rmse"],
                                "relative_error": o["relative_error"], "units": o["units"]}
                         for name, o in result["outputs"].items()},
             "layers": {name: {"spectrum": layer["spectrum"],
                               "invariant_fraction": layer["invariant_fraction"],
                               "spectrum_centered": layer["spectrum_centered"],
                               "invariant_fraction_centered": layer["invariant_fraction_centered"],
                               "truncation": layer["truncation"]}
                        for name, layer in result["layers"].items()},
             "loss": loss}
    grid = {**result["grid"], "lmax": result["lmax"], "n_samples": result["n_samples"],
            "convergence": "not checked during tracking"}
    return entry, grid


def track_document(domain: str, group: str, grid: dict, epochs: list[dict]) -> dict:
    """The ``track.json`` document."""
    from . import __version__

    return {"kind": "track", "symplug_version": __version__, "domain": domain, "group": group,
            "grid": grid, "epochs": epochs}


def track_tensormap(track: dict):
    """The layer spectra of a track as a metatensor TensorMap: keys (chi_lambda, chi_sigma),
    the sector of the orbit content as metatomic names it (sigma 0 without parity),
    samples (entry, epoch, layer) with ``entry`` the position in ``track["epochs"]`` (two
    tracked checkpoints may share an epoch) and ``layer`` the index into its layer names,
    properties ``centered`` (0: raw fraction, 1: data-set centred fraction)."""
    from metatensor.torch import Labels, TensorBlock, TensorMap

    from .spectra import parse_sector_key, sector_key

    entries = [(i, e) for i, e in enumerate(track["epochs"]) if e["layers"]]
    if not entries:
        raise SymplugError("the track holds no layer spectra")
    names = list(entries[0][1]["layers"])
    keys = sorted({parse_sector_key(k) for _, e in entries for layer in e["layers"].values()
                   for k in layer["spectrum"]})
    blocks = []
    for l, sigma in keys:
        key = sector_key((l, sigma))
        rows, values = [], []
        for index, e in entries:
            for i, name in enumerate(names):
                layer = e["layers"][name]
                rows.append([index, e["epoch"], i])
                values.append([layer["spectrum"].get(key, 0.0),
                               layer.get("spectrum_centered", {}).get(key, 0.0)])
        blocks.append(TensorBlock(
            values=torch.tensor(values, dtype=torch.float64),
            samples=Labels(["entry", "epoch", "layer"], torch.tensor(rows, dtype=torch.int32)),
            components=[], properties=Labels(["centered"], torch.tensor([[0], [1]], dtype=torch.int32))))
    return TensorMap(Labels(["chi_lambda", "chi_sigma"], torch.tensor(keys, dtype=torch.int32)),
                     blocks)


def write_track(track: dict, out: str | Path) -> dict[str, Path]:
    """Write ``track.json`` and, where metatensor-torch and matplotlib are installed,
    ``track.mts`` and ``track.png`` into the folder ``out`` (each atomically)."""
    out = Path(out)
    written = {"json": write_json(track, out / "track.json")}
    if any(e["layers"] for e in track["epochs"]):
        try:
            import metatensor.torch  # noqa: F401
        except ImportError:
            pass
        else:
            written["mts"] = write_tensormap(track_tensormap(track), out / "track.mts")
    try:
        written["png"] = plot_track(track, out / "track.png")
    except ImportError:
        pass
    return written


def plot_track(track: dict, path: str | Path) -> Path:
    """:func:`track_figure` written atomically to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = track_figure(track)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def track_figure(track: dict):
    """A against epoch (log scale) beside the accuracy figures; below, the spectrum of
    every layer against epoch (stacked fractions per (l, sigma) sector)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = track["epochs"]
    epochs = [e["epoch"] for e in entries]
    layers = list(entries[0]["layers"]) if entries else []
    ncols = max(2, len(layers))
    fig, axes = plt.subplots(2 if layers else 1, ncols, figsize=(3.6 * ncols, 6.4 if layers else 3.2),
                             squeeze=False)
    ax = axes[0, 0]
    for name in entries[0]["outputs"] if entries else []:
        ax.plot(epochs, [e["outputs"][name]["equivariance_rmse"] for e in entries], "o-",
                label=f"{name} ({entries[0]['outputs'][name]['units'] or 'a.u.'})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"A ({track['group']}, degree {track['grid'].get('degree')})")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    metrics = [k for k in (entries[0]["metrics"] if entries else {})
               if all(isinstance(e["metrics"].get(k), (int, float)) for e in entries)]
    for name in metrics:
        ax.plot(epochs, [e["metrics"][name] for e in entries], "o-", label=name)
    values = [e["metrics"][k] for e in entries for k in metrics]
    if values and all(math.isfinite(v) and v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("accuracy (validation)")
    if metrics:
        ax.legend(fontsize=7)
    for k in range(2, ncols):
        axes[0, k].axis("off")
    for k, name in enumerate(layers):
        ax = axes[1, k]
        sectors = list(entries[0]["layers"][name]["spectrum"])
        stack = np.array([[e["layers"][name]["spectrum"].get(s, 0.0) for e in entries]
                          for s in sectors])
        ax.stackplot(epochs, stack, labels=sectors)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: spectrum")
        ax.set_xlabel("epoch")
        if k == 0:
            ax.legend(fontsize=6, loc="lower left", ncol=2)
    for k in range(len(layers), ncols):
        if layers:
            axes[1, k].axis("off")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the loop


@dataclass
class _State:
    epoch: int = 0           # completed epochs
    step: int = 0            # completed steps of the current epoch
    global_step: int = 0
    running: dict = field(default_factory=dict)   # sums over the current epoch
    history: list = field(default_factory=list)   # one record per epoch
    track: list = field(default_factory=list)     # tracking entries
    grid: dict = field(default_factory=dict)


def split_samples(samples: Sequence[Any], fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) samples: a seeded permutation, ``fraction`` of them
    (at least one) held out for validation and tracking."""
    if len(samples) < 2:
        raise SymplugError(f"fine-tuning needs at least 2 samples (training and validation), "
                           f"got {len(samples)}")
    if not 0.0 < fraction < 1.0:
        raise SymplugError(f"validation fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = min(len(samples) - 1, max(1, round(fraction * len(samples))))
    return [samples[i] for i in order[n_val:]], [samples[i] for i in order[:n_val]]


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`finetune`, loaded with ``weights_only=True``."""
    from .result import load_weights

    saved = load_weights(path, "checkpoint")
    if not isinstance(saved, dict):
        raise SymplugError(f"{path}: not a checkpoint (holds {type(saved).__name__}, not a dictionary)")
    return saved


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
    world = _join_world(task.module)
    try:
        return _finetune(task, domain, config, Path(out), world, validation, progress, callback,
                         resume_from)
    finally:
        if world.created and dist.is_initialized():
            dist.destroy_process_group()


def _finetune(task: TrainingTask, domain: Domain, config: FinetuneConfig, out: Path,
              world: _World, validation: Sequence[Any], progress: bool,
              callback: Callable[[int], None] | None,
              resume_from: str | Path | None = None) -> dict:
    lead = world.rank == 0  # the process that writes, logs and tracks
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    group = None if config.group is None else check_group(config.group)
    if group is not None and group not in domain.groups:
        raise SymplugError(f"group {group} is not offered by domain {domain.name!r} "
                           f"(offers {', '.join(domain.groups)})")
    items = list(task.items)
    if not items:
        raise SymplugError("no training items")
    check_config(config)
    if config.batch < world.size:
        raise SymplugError(f"batch {config.batch} is the global batch, split over the "
                           f"{world.size} processes: it must be at least {world.size}")
    if domain.check is not None:  # validation samples are refused where they enter too
        for sample in validation:
            domain.check(sample)
    if (config.penalty_equivariance or config.penalty_lie) and group is None:
        raise SymplugError("symmetry penalties need a group")
    if config.track_every and not validation:
        raise SymplugError("tracking needs validation samples")
    track_group = group or domain.groups[0]
    steps_per_epoch = math.ceil(len(items) / config.batch)
    module = task.module
    opt = torch.optim.Adam(module.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    state = _State()
    latest = out / LATEST
    log = out / "log.jsonl"
    saved, error = None, None
    if lead:
        try:
            saved = _saved_run(out, config, resume_from)
        except SymplugError as exc:
            error = str(exc)
    if world.size > 1:  # rank 0's checkpoint (or refusal) reaches every rank: no shared disk needed
        shared = [saved, error]
        dist.broadcast_object_list(shared, src=0)
        saved, error = shared
    if error:
        raise SymplugError(error)
    if saved is not None:
        module.load_state_dict(saved["state_dict"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        state = _State(**{k: saved[k] for k in ("epoch", "step", "global_step", "running",
                                                "history", "track", "grid")})
        if lead and resume_from is not None:  # the folder's latest is now this run's state
            write_checkpoint(saved, latest)
        if lead:
            _log(log, {"event": "resume", "epoch": state.epoch, "step": state.step,
                       "global_step": state.global_step, "world_size": world.size})
    else:
        seed_everything(config.seed)
        if lead:
            _log(log, {"event": "start", **config.to_dict(), "world_size": world.size})
    step_module = _Step(task, domain, config, group, world)
    runner: torch.nn.Module = step_module
    if world.size > 1:
        device = _device(module)
        ddp = torch.nn.parallel.DistributedDataParallel
        no_buffer_sync = ({"forward_sync_buffers": False}  # newer torch; buffers are not trained
                          if "forward_sync_buffers" in inspect.signature(ddp).parameters
                          else {"broadcast_buffers": False})
        runner = ddp(step_module, device_ids=[device] if device.type == "cuda" else None,
                     **no_buffer_sync)

    def save(final_of_epoch: bool) -> None:
        if lead:
            payload = {"format": CHECKPOINT_FORMAT, "config": dict(getattr(module, "config", {})),
                       "state_dict": module.state_dict(), "finetune": config.to_dict(),
                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "rng": rng_state(), "epoch": state.epoch, "step": state.step,
                       "global_step": state.global_step, "running": state.running,
                       "history": state.history, "track": state.track, "grid": state.grid,
                       "world_size": world.size}
            write_checkpoint(payload, latest)
            if final_of_epoch:
                write_checkpoint(payload, out / f"epoch_{state.epoch:03d}.pt")
        if world.size > 1:  # no rank runs ahead of a checkpoint that is being written
            dist.barrier()

    def track(loss: float | None) -> None:
        entry = None
        if lead:
            layers = list(config.track_layers or task.layers)
            was_training = module.training
            entry, state.grid = track_entry(
                task.snapshot(), validation[: config.track_samples], domain, group=track_group,
                degree=config.track_degree, layers=layers,
                outputs=[o for o in task.outputs if o in domain.outputs] or None,
                epoch=state.epoch, loss=loss, evaluate=task.evaluate, evaluate_samples=validation)
            module.train(was_training)
        if world.size > 1:  # the other ranks wait here while rank 0 tracks
            shared = [entry, state.grid]
            dist.broadcast_object_list(shared, src=0)
            entry, state.grid = shared
        state.track.append(entry)
        if lead:
            write_track(track_document(domain.name, track_group, state.grid, state.track), out)
            _log(log, {"event": "track", "epoch": state.epoch,
                       "A": {k: v["equivariance_rmse"] for k, v in entry["outputs"].items()},
                       "invariant_fraction": {k: v["invariant_fraction"]
                                              for k, v in entry["layers"].items()},
                       "metrics": entry["metrics"]})

    _check_batch_memory(step_module, task, items, config, world)
    if config.track_every and not state.track:
        track(None)
        save(final_of_epoch=False)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=state.global_step, unit="step",
               desc=f"finetune {domain.name}", disable=not progress or not lead, file=sys.stderr)
    start = time.perf_counter()
    try:
        while state.epoch < config.epochs:
            module.train()
            perm = np.random.default_rng(derived_seed(config.seed, state.epoch)).permutation(len(items))
            while state.step < steps_per_epoch:
                idx = perm[state.step * config.batch:(state.step + 1) * config.batch]
                lo, hi = world.rows(len(idx))
                seeds = (config.seed, state.epoch, state.step)
                # elements of the whole global batch from the step's seeds; this rank's rows
                augment = None if group is None else haar(
                    group, len(idx), seed=derived_seed(*seeds, 0), axis=domain.axis)[lo:hi]
                compare = None if not config.penalty_equivariance else haar(
                    group, len(idx), seed=derived_seed(*seeds, 1), axis=domain.axis)[lo:hi]
                batch = task.collate([items[i] for i in idx[lo:hi]]) if hi > lo else None
                objective = runner(batch, hi - lo, augment=augment, compare=compare)
                opt.zero_grad()
                objective.backward()
                _stop_if_nonfinite(step_module.logged, None, state, latest, log, lead)
                opt.step()
                sched.step()
                _stop_if_nonfinite(step_module.logged, module, state, latest, log, lead)
                for k, v in step_module.logged.items():
                    state.running[k] = state.running.get(k, 0.0) + v
                state.running["count"] = state.running.get("count", 0) + 1
                state.step += 1
                state.global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{step_module.logged['loss']:.4g}", refresh=False)
                if (config.checkpoint_every and state.global_step % config.checkpoint_every == 0
                        and state.step < steps_per_epoch):
                    save(final_of_epoch=False)
                if callback is not None:
                    callback(state.global_step)
            count = state.running.pop("count")
            record = {"epoch": state.epoch + 1, "lr": sched.get_last_lr()[0],
                      **{k: v / count for k, v in state.running.items()}}
            state.epoch, state.step, state.running = state.epoch + 1, 0, {}
            state.history.append(record)
            if lead:
                _log(log, {"event": "epoch", **record, "seconds": time.perf_counter() - start})
            if config.track_every and (state.epoch % config.track_every == 0
                                       or state.epoch == config.epochs):
                track(record["loss"])
            save(final_of_epoch=True)
    finally:
        bar.close()
    return {"history": state.history, "track": state.track, "checkpoint": str(latest),
            "grid": state.grid, "rank": world.rank, "world_size": world.size}


def _check_batch_memory(step: "_Step", task: TrainingTask, items: Sequence[Any],
                        config: FinetuneConfig, world: _World) -> None:
    """A measured trial before training: forward and backward of one item with the run's
    penalties (no update; RNG and gradients restored). A batch whose estimated peak (this rank's items x the
    measured cost per item) passes the memory budget is refused up front, with the
    largest batch that fits."""
    rows = math.ceil(min(config.batch, len(items)) / world.size)
    if rows <= 1 or memory.rss() is None:
        return
    buffers = {name: b.clone() for name, b in task.module.named_buffers()}
    with torch.random.fork_rng(devices=[]):
        def trial() -> None:
            compare = None if not config.penalty_equivariance else haar(
                step.group, 1, seed=0, axis=step.domain.axis)
            terms = step.terms(task.collate([items[0]]), 1, None, compare)
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
                       f"{max(1, int((memory.budget() - memory.rss()) // cost)) * world.size}")


def check_config(config: FinetuneConfig) -> None:
    """Refuse settings outside their ranges (one line naming the setting): lr and
    lie_step finite and > 0; epochs, batch, track_degree, track_samples >= 1; penalty
    weights finite and >= 0 (a negative one rewards breaking the symmetry);
    checkpoint_every, track_every, seed >= 0."""
    def bad(name: str, rule: str) -> SymplugError:
        return SymplugError(f"{name} must be {rule}, got {getattr(config, name)!r}")

    for name in ("lr", "lie_step"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise bad(name, "finite and > 0")
    for name in ("penalty_equivariance", "penalty_lie"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise bad(name, "finite and >= 0 (a negative weight rewards breaking the symmetry)")
    for name, low in (("epochs", 1), ("batch", 1), ("track_degree", 1), ("track_samples", 1),
                      ("checkpoint_every", 0), ("track_every", 0), ("seed", 0)):
        if int(getattr(config, name)) < low:
            raise bad(name, f">= {low}")


def _epoch_files(out: Path) -> list[Path]:
    """The end-of-epoch checkpoints in ``out``, oldest first."""
    return sorted(out.glob("epoch_*.pt"))


def _intact(paths: Sequence[Path]) -> list[Path]:
    """Those of ``paths`` that load as checkpoints."""
    good = []
    for path in paths:
        try:
            load_checkpoint(path)
        except SymplugError:
            continue
        good.append(path)
    return good


def _resume_hint(out: Path) -> str:
    """How to go on from the newest intact epoch checkpoint in ``out`` (or that none is)."""
    intact = _intact(_epoch_files(out))
    if not intact:
        return "no intact epoch checkpoint is beside it: use another --out to start a new run"
    return (f"the epoch checkpoints beside it are intact ({', '.join(p.name for p in intact)}): "
            f"resume from the last with --resume-from {intact[-1]}")


def _previous_run(out: Path) -> list[str]:
    """Files of an earlier run in ``out`` (epoch checkpoints, log, track)."""
    names = [p.name for p in _epoch_files(out)]
    return names + [n for n in ("log.jsonl", "track.json") if (out / n).exists()]


def _saved_run(out: Path, config: FinetuneConfig, resume_from: str | Path | None) -> dict | None:
    """The checkpoint to continue from: ``resume_from`` (a path, or a file name in ``out``),
    else ``out/checkpoint.pt``; None for a new run in a folder without an earlier run.
    Refuses to mix runs: files of an earlier run without its checkpoint.pt, a truncated
    checkpoint.pt (naming the intact epoch checkpoints), other settings."""
    latest = out / LATEST
    if resume_from is not None:
        path = Path(resume_from)
        path = path if path.exists() or not (out / path).exists() else out / path
        if not path.exists():
            raise SymplugError(f"--resume-from {str(resume_from)!r}: no such checkpoint "
                               f"(epoch checkpoints in {out}: "
                               f"{', '.join(p.name for p in _epoch_files(out)) or 'none'})")
        return _resumable(path, config)
    if not latest.exists():
        earlier = _previous_run(out)
        if earlier:
            epochs = _epoch_files(out)
            how = (f"resume with --resume-from {epochs[-1]}" if epochs else
                   "remove them")
            raise SymplugError(f"{out} holds an earlier run ({', '.join(earlier)}) but no "
                               f"{LATEST}: {how}, or use another --out")
        return None
    try:
        saved = load_checkpoint(latest)
    except SymplugError as exc:
        raise SymplugError(f"{exc}; {_resume_hint(out)}") from exc
    return _resumable(latest, config, saved)


def _resumable(latest: Path, config: FinetuneConfig, saved: dict | None = None) -> dict:
    """The checkpoint ``latest`` if it continues a run with ``config`` (any world size)."""
    saved = load_checkpoint(latest) if saved is None else saved
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise SymplugError(f"{latest}: not a symplug fine-tuning checkpoint")
    if saved["finetune"] != json.loads(json.dumps(config.to_dict())):
        diff = [k for k, v in config.to_dict().items() if saved["finetune"].get(k) != v]
        raise SymplugError(f"{latest} was written with other settings ({', '.join(diff)}); "
                           "use another --out to start a new run")
    return saved


def _stop_if_nonfinite(logged: Mapping[str, float], module: torch.nn.Module | None,
                       state: _State, latest: Path, log: Path, lead: bool) -> None:
    """Stop the run when the step's loss (``module`` None: before the update) or the
    updated weights of ``module`` are not finite, naming the last good checkpoint (the
    bad weights are never saved). ``logged`` is identical on every rank, as are the weights."""
    where = f"epoch {state.epoch + 1}, step {state.step + 1}"
    if module is None:
        bad = {k: v for k, v in logged.items() if not math.isfinite(v)}
        if not bad:
            return
        what = "the loss is not finite (" + ", ".join(f"{k} {v}" for k, v in bad.items()) + ")"
    else:
        names = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
        if not names:
            return
        what = f"the update made the weights non-finite ({names[0]})"
    kept = (f"the last good checkpoint {latest} is kept" if latest.exists()
            else "no checkpoint was written")
    if lead:
        _log(log, {"event": "stopped", "epoch": state.epoch, "step": state.step, "reason": what})
    raise SymplugError(f"{where}: {what}; stopped without saving these weights, {kept} "
                       "(lower --lr, or check the labels for NaN or huge values)")


# ----------------------------------------------------------------------------- one step


_PARTS = ("supervised", "penalty_equivariance", "penalty_lie")


def _loss_terms(value: Any) -> dict[str, MeanTerm]:
    """A task's loss as {name: MeanTerm}: a dict of MeanTerms as is, a scalar tensor as
    one term of count 1 (averaged over data-parallel ranks)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return {"loss": MeanTerm(value, 1.0)}
    if isinstance(value, Mapping) and value and all(
            isinstance(t, MeanTerm) and isinstance(t.total, torch.Tensor) and t.total.dim() == 0
            for t in value.values()):
        return dict(value)
    raise SymplugError("TrainingTask.loss must return a scalar tensor or a non-empty "
                       f"{{name: MeanTerm}} of scalar totals, got {type(value).__name__}")


class _Step(torch.nn.Module):
    """One step's objective as a module that holds ``task.module``: predictions, loss and
    penalties run inside its forward, so DistributedDataParallel (which reduces the
    gradients of a backward only after its own forward ran) wraps all of them.

    Every term is a :class:`MeanTerm`; the counts and detached totals of all terms go in
    one float64 all-reduce (SUM), and each rank's objective is
    ``W sum_t factor_t weight_t total_t / global_count_t``: DDP averages the gradients
    over the W ranks, so they equal the one-process gradient. ``logged`` holds the global
    values of the step (identical on every rank)."""

    def __init__(self, task: TrainingTask, domain: Domain, config: FinetuneConfig,
                 group: str | None, world: _World):
        super().__init__()
        self.model = task.module
        self.task, self.domain, self.config, self.group, self.world = (task, domain, config,
                                                                       group, world)
        self.factors = {"supervised": 1.0, "penalty_equivariance": config.penalty_equivariance,
                        "penalty_lie": config.penalty_lie}
        self.keys: list[tuple[str, str, float]] | None = None  # (part, name, weight), agreed
        self.logged: dict[str, float] = {}

    def terms(self, batch: Any, n: int, augment: torch.Tensor | None,
              compare: torch.Tensor | None) -> dict[tuple[str, str], MeanTerm]:
        """{(part, name): MeanTerm} of this rank's ``n`` items."""
        task, config, domain = self.task, self.config, self.domain
        if augment is not None:
            batch = augmentation.augment(task, batch, augment)
        predictions = task.predict(batch)
        terms = {("supervised", k): t
                 for k, t in _loss_terms(task.loss(batch, predictions)).items()}
        penalties = {}
        if compare is not None:
            penalties["penalty_equivariance"] = _equivariance_sums(task, domain.name, batch,
                                                                   predictions, compare)
        if config.penalty_lie:
            penalties["penalty_lie"] = _lie_sums(task, domain.name, batch, n, self.group,
                                                 domain.axis, config.lie_step)
        for part, sums in penalties.items():
            for k, t in sums.items():
                terms[(part, k)] = MeanTerm(t.total, t.count, float(task.output_weights.get(k, 1.0)))
        return terms

    def agree(self, terms: Mapping[tuple[str, str], MeanTerm]) -> list[tuple[str, str, float]]:
        """The terms' (part, name, weight) in reduction order: rank 0's, sent once (a rank
        without items this step has none of its own); checked on every step."""
        mine = [(part, name, float(t.weight)) for (part, name), t in terms.items()]
        if self.keys is None:
            shared = [mine]
            if self.world.size > 1:
                dist.broadcast_object_list(shared, src=0)
            self.keys = [tuple(k) for k in shared[0]]
        if terms and mine != self.keys:
            raise SymplugError(f"the loss terms changed from {self.keys} to {mine}: a "
                               "TrainingTask.loss must return the same names and weights for "
                               "every batch")
        return self.keys

    def forward(self, batch: Any, n: int, augment: torch.Tensor | None = None,
                compare: torch.Tensor | None = None) -> torch.Tensor:
        terms = self.terms(batch, n, augment, compare) if n else {}
        keys = self.agree(terms)
        device = _device(self.model)
        local = torch.zeros(2, len(keys), dtype=torch.float64, device=device)
        if terms:
            local[0] = torch.tensor([float(terms[k[:2]].count) for k in keys], dtype=torch.float64)
            local[1] = torch.stack([terms[k[:2]].total.detach().to(torch.float64).reshape(())
                                    for k in keys])
        if self.world.size > 1:
            dist.all_reduce(local)
        counts, totals = local.tolist()
        objective = None
        values = dict.fromkeys(p for p in _PARTS if any(k[0] == p for k in keys))
        for (part, name, weight), count, total in zip(keys, counts, totals):
            if count <= 0:
                continue
            values[part] = (values[part] or 0.0) + weight * total / count
            if terms:
                coef = self.factors[part] * weight / count
                term = terms[(part, name)].total * (self.world.size * coef)
                objective = term if objective is None else objective + term
        self.logged = {"loss": sum(self.factors[p] * (v or 0.0) for p, v in values.items()),
                       **{p: v or 0.0 for p, v in values.items()}}
        # every parameter takes part (zero weight): DDP needs no search for unused
        # parameters, and a rank without items this step contributes zero gradients
        anchor = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return anchor if objective is None else objective + anchor


# ----------------------------------------------------------------------------- data parallelism


@dataclass(frozen=True)
class _World:
    """This process among the data-parallel processes (one process: rank 0 of 1);
    ``created``: this call initialised the process group (and destroys it)."""

    rank: int = 0
    size: int = 1
    created: bool = False

    def rows(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this rank's items of a global batch of ``n``: contiguous pieces,
        the first ``n % size`` one longer (``np.array_split``)."""
        q, r = divmod(n, self.size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)


def _device(module: torch.nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return torch.device("cpu") if param is None else param.device


def _join_world(module: torch.nn.Module) -> _World:
    """The default process group's rank and size; under ``torchrun`` (``WORLD_SIZE`` > 1 in
    the environment) without one, initialise it: nccl for a model on a GPU, else gloo."""
    if not dist.is_available():
        return _World()
    if dist.is_initialized():
        return _World(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _World()
    device = _device(module)
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend)
    except (ValueError, RuntimeError) as exc:
        raise SymplugError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but the {backend} process "
                           f"group did not start ({exc}); launch with torchrun") from exc
    return _World(dist.get_rank(), dist.get_world_size(), created=True)


def _log(path: Path, record: dict) -> None:
    """Append one JSON line (the log; checkpoints hold the canonical history)."""
    from .result import _clean

    with open(path, "a") as handle:
        handle.write(json.dumps(_clean({"time": time.time(), **record})) + "\n")

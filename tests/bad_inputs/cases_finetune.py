"""``symplug finetune``: labels that are not finite, settings out of range, learning
rates that blow the weights up, and folders of earlier runs (missing, truncated or
other-settings checkpoints) (issue 17)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from . import ERROR, RESULT, Case
from .atoms_files import FRAMES, cluster, labelled, with_cell, write

BASE = ["--max-samples", "3", "--epochs", "1", "--batch", "2", "--track-every", "0", "--quiet"]


def _finetune(data: str | Path, out: str | Path, *extra: str) -> list[str]:
    return ["finetune", "atoms", "--model", "pet-cu", "--data", str(data), "--out", str(out),
            *BASE, *extra]


def _shipped(*extra: str):
    return lambda tmp: _finetune(FRAMES, tmp / "run", *extra)


def _frames_with(bad) -> callable:
    """Two shipped labelled frames and ``bad()`` (a labelled cluster) last."""
    def argv(tmp: Path) -> list[str]:
        from ase.io import read

        frames = read(FRAMES, index=":2")
        return _finetune(write(tmp, "data.extxyz", *frames, bad()), tmp / "run")
    return argv


def _run_first(tmp: Path, *extra: str) -> Path:
    """A finished one-epoch run in ``tmp/run`` (its output swallowed)."""
    from symplug.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(_finetune(FRAMES, tmp / "run", *extra)) == 0
    return tmp / "run"


def _without_checkpoint(tmp: Path) -> list[str]:
    (_run_first(tmp) / "checkpoint.pt").unlink()
    return _finetune(FRAMES, tmp / "run")


def _log_only(tmp: Path) -> list[str]:
    run = tmp / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"event": "start"}) + "\n")
    return _finetune(FRAMES, run)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _truncated_checkpoint(tmp: Path) -> list[str]:
    _truncate(_run_first(tmp) / "checkpoint.pt")
    return _finetune(FRAMES, tmp / "run")


def _all_truncated(tmp: Path) -> list[str]:
    run = _run_first(tmp)
    _truncate(run / "checkpoint.pt")
    _truncate(run / "epoch_001.pt")
    return _finetune(FRAMES, run)


def _other_settings(tmp: Path) -> list[str]:
    _run_first(tmp)
    return _finetune(FRAMES, tmp / "run", "--lr", "2e-4")


def _resume_from_epoch(tmp: Path) -> list[str]:
    """The issue's remedy: checkpoint.pt truncated, go on from the intact epoch file
    (asking for one more epoch would change the settings: the same run, resumed)."""
    _truncate(_run_first(tmp) / "checkpoint.pt")
    return _finetune(FRAMES, tmp / "run", "--resume-from", "epoch_001.pt")


def _resumed(tmp: Path, out: str) -> None:
    events = [json.loads(line)["event"] for line in
              (tmp / "run" / "log.jsonl").read_text().splitlines()]
    assert events[-1] == "resume", events
    from symplug.training import load_checkpoint

    assert load_checkpoint(tmp / "run" / "checkpoint.pt")["epoch"] == 1


def _resume_from_missing(tmp: Path) -> list[str]:
    _run_first(tmp)
    return _finetune(FRAMES, tmp / "run", "--resume-from", "epoch_007.pt")


def _resume_from_garbage(tmp: Path) -> list[str]:
    (tmp / "junk.pt").write_bytes(b"not a checkpoint" * 10)
    return _finetune(FRAMES, tmp / "run", "--resume-from", str(tmp / "junk.pt"))


def _nan_label_frame():
    return labelled(cluster(), energy=float("nan"))


def _nan_forces_frame():
    forces = np.zeros((13, 3))
    forces[0] = np.inf
    return labelled(cluster(), forces=forces)


def _singular_frame():
    return labelled(with_cell(cluster(), [[10, 0, 0], [0, 10, 0], [10, 10, 0]]))


def _lr_1e8(tmp: Path) -> list[str]:
    return _finetune(FRAMES, tmp / "run", "--lr", "1e8", "--batch", "1", "--epochs", "2")


# ----------------------------------------------------------------- library calls


def _toy_task(nan_after: int | None):
    """A linear model on 4 items of 3 numbers; its predictions NaN from call
    ``nan_after + 1`` on (one call per step without augmentation and penalties)."""
    import torch

    from symplug import MeanTerm, TrainingTask

    torch.manual_seed(0)
    module = torch.nn.Linear(3, 1, dtype=torch.float64)
    targets = torch.ones(4, dtype=torch.float64)
    calls = []

    def predict(batch):
        calls.append(1)
        energy = module(batch[0])[:, 0]
        return {"energy": energy * float("nan") if nan_after is not None
                and len(calls) > nan_after else energy}

    items = [(torch.randn(3, dtype=torch.float64), targets[i]) for i in range(4)]

    def collate(batch):
        x, y = zip(*batch)
        return torch.stack(x), torch.stack(y)

    return TrainingTask(module=module, items=items, collate=collate,
                        predict=predict,
                        loss=lambda b, p: {"mse": MeanTerm((p["energy"] - b[1]).pow(2).sum(),
                                                           float(len(b[1])))},
                        outputs={"energy": "0e"}, snapshot=lambda: module)


def _toy_finetune(tmp: Path, nan_after: int | None = 2, **settings):
    from symplug.plugins import get_domain
    from symplug.training import FinetuneConfig, finetune

    config = FinetuneConfig(domain="atoms", epochs=2, batch=2, group=None, **settings)
    return finetune(_toy_task(nan_after), get_domain("atoms"), config, tmp / "toy",
                    progress=False)


def _nan_loss_call(tmp: Path):
    """The guard itself: the loss turns NaN in the second epoch (2 steps per epoch, after
    the memory budget's one trial call); the checkpoints stay those of epoch 1, with
    finite weights."""
    import torch

    from symplug.training import load_checkpoint

    try:
        _toy_finetune(tmp, nan_after=3)
    finally:
        saved = load_checkpoint(tmp / "toy" / "checkpoint.pt")
        assert saved["epoch"] == 1 and not (tmp / "toy" / "epoch_002.pt").exists()
        assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def _jets_nan_p4(tmp: Path):
    from symplug_jets.finetune import training_task
    from symplug.plugins import load_model

    p4 = np.ones((2, 3, 4))
    p4[1, 0, 2] = np.nan
    block = {"p4": p4, "mask": np.ones((2, 3), bool), "labels": np.array([[1.0, 0.0], [0.0, 1.0]]),
             "label_names": ["label_Tbqq", "label_QCD"]}
    return training_task(load_model("jets", "reference"), [block])


def _jets_nan_label(tmp: Path):
    from symplug_jets.finetune import training_task
    from symplug.plugins import load_model

    block = {"p4": np.ones((2, 3, 4)), "mask": np.ones((2, 3), bool),
             "labels": np.array([[np.nan, 0.0], [0.0, 1.0]]),
             "label_names": ["label_Tbqq", "label_QCD"]}
    return training_task(load_model("jets", "reference"), [block])


CASES = [
    # labels refused where they enter
    Case("finetune/nan-energy-label", "finetune", ERROR, r"data\.extxyz frame 2: label 'energy' "
         r"holds 1 non-finite", argv=_frames_with(_nan_label_frame)),
    Case("finetune/inf-forces-label", "finetune", ERROR, r"label 'forces' holds 3 non-finite",
         argv=_frames_with(_nan_forces_frame)),
    Case("finetune/singular-cell", "finetune", ERROR, r"frame 2: field 'cell' .* is singular",
         argv=_frames_with(_singular_frame)),
    Case("finetune/jets-nan-four-momentum", "finetune", ERROR, r"'p4' hold 1 non-finite",
         call=_jets_nan_p4),
    Case("finetune/jets-nan-label", "finetune", ERROR, r"label 'label_Tbqq' hold 1 non-finite",
         call=_jets_nan_label),
    # a step that makes the loss or the weights non-finite stops the run
    Case("finetune/lr-1e8-blows-up", "finetune", ERROR, r"epoch 1, step 2: the loss is not finite"
         r".*no checkpoint was written.*lower --lr", argv=_lr_1e8),
    Case("finetune/nan-loss-keeps-last-checkpoint", "finetune", ERROR,
         r"epoch 2, step 1: the loss is not finite \(loss nan.*last good checkpoint .*checkpoint\.pt "
         r"is kept", call=_nan_loss_call),
    # settings out of range: one line naming the option
    Case("finetune/lr-zero", "finetune", ERROR, r"argument --lr: must be > 0, got 0",
         argv=_shipped("--lr", "0")),
    Case("finetune/lr-negative", "finetune", ERROR, r"argument --lr: must be > 0, got -1",
         argv=_shipped("--lr", "-1")),
    Case("finetune/lr-nan", "finetune", ERROR, r"argument --lr: must be finite, got nan",
         argv=_shipped("--lr", "nan")),
    Case("finetune/lr-inf", "finetune", ERROR, r"argument --lr: must be finite",
         argv=_shipped("--lr", "inf")),
    Case("finetune/lr-not-a-number", "finetune", ERROR, r"argument --lr: expected a number",
         argv=_shipped("--lr", "fast")),
    Case("finetune/negative-equivariance-penalty", "finetune", ERROR,
         r"argument --penalty-equivariance: must be >= 0, got -1", argv=_shipped(
             "--penalty-equivariance", "-1")),
    Case("finetune/nan-lie-penalty", "finetune", ERROR, r"argument --penalty-lie: must be finite",
         argv=_shipped("--penalty-lie", "nan")),
    Case("finetune/lie-step-zero", "finetune", ERROR, r"argument --lie-step: must be > 0",
         argv=_shipped("--lie-step", "0")),
    Case("finetune/epochs-zero", "finetune", ERROR, r"argument --epochs: must be >= 1, got 0",
         argv=_shipped("--epochs", "0")),
    Case("finetune/batch-zero", "finetune", ERROR, r"argument --batch: must be >= 1",
         argv=_shipped("--batch", "0")),
    Case("finetune/val-fraction-one", "finetune", ERROR, r"argument --val-fraction: must be in "
         r"\(0, 1\)", argv=_shipped("--val-fraction", "1")),
    Case("finetune/track-samples-zero", "finetune", ERROR, r"argument --track-samples: must be >= 1",
         argv=_shipped("--track-samples", "0")),
    Case("finetune/checkpoint-every-negative", "finetune", ERROR,
         r"argument --checkpoint-every: must be >= 0", argv=_shipped("--checkpoint-every", "-5")),
    Case("finetune/threads-zero", "finetune", ERROR, r"argument --threads: must be >= 1",
         argv=_shipped("--threads", "0")),
    Case("finetune/tracking-degree-zero", "finetune", ERROR, r"argument --degree: must be >= 1",
         argv=_shipped("--degree", "0")),
    Case("finetune/negative-penalty-library", "finetune", ERROR,
         r"penalty_lie must be finite and >= 0 \(a negative weight rewards breaking",
         call=lambda tmp: _toy_finetune(tmp, None, penalty_lie=-0.5)),
    Case("finetune/nan-lr-library", "finetune", ERROR, r"lr must be finite and > 0, got nan",
         call=lambda tmp: _toy_finetune(tmp, None, lr=float("nan"))),
    # folders of earlier runs: never mixed
    Case("finetune/epoch-files-without-checkpoint", "finetune", ERROR,
         r"run holds an earlier run \(epoch_001\.pt, log\.jsonl\) but no checkpoint\.pt: resume "
         r"with --resume-from .*epoch_001\.pt", argv=_without_checkpoint),
    Case("finetune/log-without-checkpoint", "finetune", ERROR,
         r"earlier run \(log\.jsonl\) but no checkpoint\.pt: remove them, or use another --out",
         argv=_log_only),
    Case("finetune/truncated-checkpoint", "finetune", ERROR,
         r"checkpoint\.pt: not a readable checkpoint .*epoch checkpoints beside it are intact "
         r"\(epoch_001\.pt\): resume from the last with --resume-from", argv=_truncated_checkpoint),
    Case("finetune/truncated-checkpoint-and-epochs", "finetune", ERROR,
         r"no intact epoch checkpoint is beside it", argv=_all_truncated),
    Case("finetune/resume-with-other-settings", "finetune", ERROR,
         r"written with other settings \(lr\)", argv=_other_settings),
    Case("finetune/resume-from-intact-epoch", "finetune", RESULT, argv=_resume_from_epoch,
         check=_resumed),
    Case("finetune/resume-from-missing-epoch", "finetune", ERROR,
         r"--resume-from 'epoch_007\.pt': no such checkpoint \(epoch checkpoints in .*: "
         r"epoch_001\.pt\)", argv=_resume_from_missing),
    Case("finetune/resume-from-garbage", "finetune", ERROR, r"junk\.pt: not a readable checkpoint",
         argv=_resume_from_garbage),
]

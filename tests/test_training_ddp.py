"""Data-parallel fine-tuning (issue 7): a 2-process gloo run of float64 fine-tunings of
the shipped atoms model and jet tagger against the same runs in one process (weights to
1e-12), resuming a 2-process run in one process, the MeanTerm normalisation, and the
``torchrun -m symplug finetune`` command line."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from symplug import MeanTerm, SymplugError
from symplug.plugins import get_domain, load_data, load_model
from symplug.training import FinetuneConfig, finetune, load_checkpoint
from symplug.training.distributed import World
from symplug.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
JETS = ROOT / "plugins/symplug_jets/data/tagger_test.root"
FRAMES = ROOT / "plugins/symplug_atoms/data/pet_cu_test.extxyz"

# atoms: 7 structures of 13-38 atoms, batch 4 (ranks hold 2+2, then 2+1 structures with
# different atom counts); O3 augmentation and the equivariance penalty (forces are
# autograd derivatives inside the forward)
ATOMS = FinetuneConfig(domain="atoms", epochs=2, lr=1e-4, batch=4, seed=5, group="O3",
                       penalty_equivariance=0.5, track_every=0)
# jets: 33 jets, batch 16: the last step has one jet, so rank 1 has none; SO2 and the Lie
# penalty, a checkpoint every step
JETS_CONFIG = FinetuneConfig(domain="jets", epochs=2, lr=1e-4, batch=16, seed=3, group="SO2",
                             penalty_lie=0.3, checkpoint_every=1, track_every=0)
STOP_AT = 2


class Stop(Exception):
    pass


def _atoms_task():
    from symplug_atoms.finetune import training_task

    frames = [f for f in load_data("atoms", str(FRAMES)) if len(f) <= 38][:7]
    return training_task(load_model("atoms", "pet-cu"), frames, dtype=torch.float64)


def _jets_task():
    from symplug_jets.finetune import training_task

    task = training_task(load_model("jets", "reference"), load_data("jets", str(JETS))[:3],
                         dtype=torch.float64)
    return dataclasses.replace(task, items=task.items[:33])


def _run(kind: str, out: Path, callback=None) -> dict:
    """One fine-tuning (in this process's process group, if any): its final weights and
    history."""
    task = _atoms_task() if kind == "atoms" else _jets_task()
    config = ATOMS if kind == "atoms" else JETS_CONFIG
    result = finetune(task, get_domain(kind), config, out, progress=False, callback=callback)
    return {"state_dict": task.module.state_dict(), "history": result["history"],
            "world_size": result["world_size"]}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """A rank of the 2-process run: both fine-tunings and one stopped after STOP_AT steps;
    rank 0 saves what it ended with."""
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as tests/conftest.py sets it in this process
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=world)
    results = {kind: _run(kind, Path(out) / kind) for kind in ("atoms", "jets")}

    def stop(step):
        if step == STOP_AT:
            raise Stop

    try:
        _run("jets", Path(out) / "stopped", callback=stop)
    except Stop:
        pass
    torch.distributed.destroy_process_group()
    if rank == 0:
        torch.save(results, Path(out) / "results.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The results of the 2-process gloo run (rank 0's) and the folder it wrote."""
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2,
                                          join=True, start_method="spawn")
    return torch.load(out / "results.pt", weights_only=True), out


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _one_process(kind, out):
    return _run(kind, out)


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert v.dtype == torch.float64 or not v.is_floating_point()
        assert torch.allclose(v, b["state_dict"][k], rtol=0, atol=1e-12), k
    assert len(a["history"]) == len(b["history"])
    for x, y in zip(a["history"], b["history"]):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-12, abs=0), key


@pytest.mark.parametrize("kind", ["atoms", "jets"])
def test_two_processes_equal_one(two_processes, kind, tmp_path):
    results, out = two_processes
    ddp = results[kind]
    assert ddp["world_size"] == 2
    single = _one_process(kind, tmp_path)
    assert single["world_size"] == 1
    _assert_same_run(ddp, single)
    start = (_atoms_task() if kind == "atoms" else _jets_task()).module.state_dict()
    assert max(float((single["state_dict"][k] - start[k]).abs().max()) for k in start
               if start[k].is_floating_point()) > 1e-5  # training moved the weights
    keys = {"epoch", "lr", "loss", "supervised"} | (
        {"penalty_equivariance"} if kind == "atoms" else {"penalty_lie"})
    assert set(ddp["history"][0]) == keys
    saved = load_checkpoint(out / kind / "checkpoint.pt")  # written by rank 0
    assert saved["world_size"] == 2 and saved["history"] == ddp["history"]
    assert (out / kind / "epoch_002.pt").exists()
    log = [json.loads(line) for line in (out / kind / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["start", "epoch", "epoch"]  # one writer


def test_two_process_checkpoint_resumes_in_one_process(two_processes, tmp_path):
    """A run stopped after step 2 of 2 processes and resumed in one ends with the weights
    of the one-process run (the world size may change between launches)."""
    _, out = two_processes
    saved = load_checkpoint(out / "stopped" / "checkpoint.pt")
    assert (saved["global_step"], saved["world_size"]) == (STOP_AT, 2)
    shutil.copytree(out / "stopped", tmp_path / "resumed")
    resumed = _one_process("jets", tmp_path / "resumed")
    _assert_same_run(resumed, _one_process("jets", tmp_path / "straight"))
    log = (tmp_path / "resumed" / "log.jsonl").read_text()
    assert '"event": "resume"' in log and '"world_size": 1' in log


def test_mean_terms_give_the_global_mean_when_ranks_hold_different_rows():
    """Rank objectives W w total_r / (global count), averaged as DDP averages gradients,
    give the one-process mean and its gradient; averaging per-rank means does not."""
    from symplug_atoms.finetune import _predict
    from symplug_atoms.structure_batches import energy_forces_loss

    task = _atoms_task()
    batch = task.collate(task.items[1:4])  # 13, 13 and 38 atoms

    def terms(part):
        return energy_forces_loss(part, _predict(task.module, part))

    def gradient(value):
        params = [p for p in task.module.parameters() if p.requires_grad]
        return torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])

    whole = sum(t.value for t in terms(batch).values())
    halves = [terms(task.collate(batch[:1])), terms(task.collate(batch[1:]))]
    assert halves[0]["forces"].count == 39 and halves[1]["forces"].count == 153
    count = {k: sum(h[k].count for h in halves) for k in halves[0]}
    ranks = [sum(2 * t.weight * t.total / count[k] for k, t in h.items()) for h in halves]
    assert float(((ranks[0] + ranks[1]) / 2).detach()) == pytest.approx(float(whole.detach()),
                                                                       rel=1e-13)
    exact = gradient(whole)
    assert torch.allclose((gradient(ranks[0]) + gradient(ranks[1])) / 2, exact, rtol=0,
                          atol=1e-12 * float(exact.abs().max()))
    naive = sum(sum(t.value for t in h.values()) for h in halves) / 2
    naive, whole = float(naive.detach()), float(whole.detach())
    assert abs(naive - whole) > 1e-3 * abs(whole)
    assert MeanTerm(torch.tensor(6.0), 3.0, 2.0).value == 4.0


def test_rows_of_each_rank_are_array_split():
    for n in range(1, 12):
        for size in range(1, 5):
            pieces = np.array_split(np.arange(n), size)
            rows = [World(rank, size).rows(n) for rank in range(size)]
            assert [list(range(lo, hi)) for lo, hi in rows] == [list(p) for p in pieces]


def test_batch_smaller_than_the_world_is_refused(tmp_path):
    task = _jets_task()
    with pytest.raises(SymplugError, match="batch 2 is the global batch, split over the 4 "
                                           "processes: it must be at least 4"):
        Trainer(task, get_domain("jets"), dataclasses.replace(JETS_CONFIG, batch=2), tmp_path,
                World(0, 4))


# --------------------------------------------------------------------------- command line


def _cli(tmp_path, name, launcher):
    args = ["-m", "symplug", "finetune", "jets", "--model", "reference", "--data", str(JETS),
            "--max-samples", "4", "--epochs", "1", "--batch", "15", "--group", "SO2",
            "--penalty-equivariance", "0.5", "--degree", "1", "--track-samples", "1",
            "--out", str(tmp_path / name), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, load_checkpoint(tmp_path / name / "checkpoint.pt")


def test_torchrun_command_line(tmp_path):
    """``torchrun --nproc_per_node 2 -m symplug finetune`` (float32, 48 jets in 4 steps of
    15 + a last of 3, a tracked epoch): rank 0 writes and prints once; the history is the
    one-process command's to float32 rounding (the weights are compared in float64 above:
    in float32, Adam turns the rounding noise of the attention key biases' zero gradient
    into visible differences, see docs/training.md)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    printed, ddp = _cli(tmp_path, "ddp", torchrun)
    _, single = _cli(tmp_path, "single", [sys.executable])
    assert printed.count("checkpoints in") == 1 and printed.count("epoch   1") == 1
    assert (ddp["world_size"], single["world_size"]) == (2, 1)
    assert (tmp_path / "ddp" / "epoch_001.pt").exists() and (tmp_path / "ddp" / "track.json").exists()
    for x, y in zip(ddp["history"], single["history"], strict=True):
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-5), key

"""Augmented fine-tuning and symmetry tracking (symplug.training, issue 5 parts 1-2):
target transformation, penalties against exact values, exact resume after a kill,
the tracking JSON / TensorMap, and the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

import symplug
from symplug import SymplugError, TrainingTask, hookimpl
from symplug.cli import main
from symplug.plugins import get_domain, get_plugin_manager, load_data, load_model, training_task
from symplug.training import (FinetuneConfig, equivariance_penalty, finetune, lie_penalty,
                              load_checkpoint, rng_state, set_rng_state, split_samples)

ROOT = Path(__file__).resolve().parents[1]
JETS = ROOT / "plugins/symplug_jets/data/tagger_test.root"
FRAMES = ROOT / "plugins/symplug_atoms/data/pet_cu_test.extxyz"


# --------------------------------------------------------------------------- a planted toy domain


def _rotate_points(sample, matrices):
    return {"points": torch.einsum("bij,pj->bpi", matrices, sample)}


class Planted(torch.nn.Module):
    """f(x) = a mean_i x_i + eps w: an equivariant polar vector plus a constant breaking term."""

    def __init__(self, eps: float, w):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7))
        self.eps = eps
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float64))

    def forward(self, points):
        return {"vector": self.a * points.mean(-2) + self.eps * self.w}


def _toy_task(model, samples):
    return TrainingTask(
        module=model, items=samples,
        collate=lambda items: {"points": torch.stack([p for p, _ in items]),
                               "target": torch.stack([t for _, t in items])},
        predict=lambda batch: model(batch["points"]),
        loss=lambda batch, pred: (pred["vector"] - batch["target"]).pow(2).mean(),
        outputs={"vector": "1o"}, snapshot=lambda: model,
        act=lambda batch, matrices: {**batch, "points": torch.einsum(
            "bij,bpj->bpi", matrices, batch["points"])},
        labels=lambda batch: {"vector": batch["target"]},
        with_labels=lambda batch, labels: {**batch, "target": labels["vector"]})


class ToyPlugin:
    """A third-party style plugin: domain ``toypoints`` with a training task."""

    @hookimpl
    def symplug_domains(self):
        return [symplug.Domain(name="toypoints", act=_rotate_points,
                               outputs={"vector": symplug.Output("1o", "a.u.")},
                               training_task=self.training_task)]

    def training_task(self, model, samples):
        return _toy_task(model, samples)


@pytest.fixture
def toy():
    pm = get_plugin_manager()
    plugin = ToyPlugin()
    pm.register(plugin, name="toypoints-test")
    yield plugin
    pm.unregister(plugin)


def test_penalties_of_a_planted_breaking_term(toy):
    """f = v + eps w: P_eq = eps^2 mean_b |w - h_b w|^2 / 3 and
    P_lie = (sin s / s)^2 eps^2 sum_J |J w|^2 / 3 = (sin s / s)^2 eps^2 2 |w|^2 / 3 (SO3)."""
    eps, w, step = 0.3, torch.tensor([0.2, -1.1, 0.5]), 0.05
    model = Planted(eps, w)
    points = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(0))
    task = training_task("toypoints", model, [(p, p.sum(0)) for p in points])
    batch = task.collate(task.items)
    h = symplug.haar("O3", 6, seed=4)
    pen = equivariance_penalty(task, batch, task.predict(batch), h)["vector"]
    expected = eps ** 2 * ((w - h @ w) ** 2).sum(-1).mean() / 3
    assert abs(float(pen.detach()) - float(expected)) < 1e-12
    lie = lie_penalty(task, batch, 6, "SO3", step=step)["vector"]
    exact = (math.sin(step) / step) ** 2 * eps ** 2 * 2 * float(w @ w) / 3
    assert abs(float(lie.detach()) - exact) < 1e-12
    assert float(lie_penalty(task, batch, 6, "SO2", step=step)["vector"].detach()) == \
        pytest.approx((math.sin(step) / step) ** 2 * eps ** 2 * float(w[0] ** 2 + w[1] ** 2) / 3,
                      abs=1e-12)
    model.eps = 0.0  # exactly equivariant: both vanish
    assert float(equivariance_penalty(task, batch, task.predict(batch),
                                      h)["vector"].detach()) < 1e-28
    assert float(lie_penalty(task, batch, 6, "SO3", step=step)["vector"].detach()) < 1e-28


# --------------------------------------------------------------------------- atoms and jets tasks


class DistanceAtoms(torch.nn.Module):
    """Exactly invariant atomic energies from pair distances."""

    def forward(self, graph, vectors):
        r = vectors.norm(dim=-1)
        return torch.zeros(graph.species.shape[0], dtype=r.dtype).index_add(
            0, graph.centers, torch.exp(-r) * (r - 2.0) ** 2)


@pytest.fixture(scope="module")
def frames():
    return load_data("atoms", str(FRAMES))


def _small(frames, n=3):
    return [f for f in frames if len(f) <= 38][:n]


class Heavy(Planted):
    """Planted, with a 256 MiB temporary per item in its forward pass."""

    def forward(self, points):
        out = super().forward(points)
        scratch = torch.ones(points.shape[0], 32 * 2 ** 20, dtype=torch.float64) * self.a
        return {"vector": out["vector"] + 0.0 * scratch.mean(dim=1, keepdim=True)}


@pytest.mark.skipif(symplug.memory.rss() is None, reason="the kernel reports no RSS here")
def test_a_batch_too_large_for_the_budget_is_refused_before_training(toy, tmp_path):
    gen = torch.Generator().manual_seed(0)
    items = [(torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen)) for _ in range(8)]
    task = symplug.plugins.training_task("toypoints", Heavy(0.0, [0.0, 0.0, 1.0]), items)
    config = FinetuneConfig(domain="toypoints", epochs=1, batch=8, track_every=0)
    with symplug.memory.limit(symplug.memory.rss() + 160 * 2 ** 20):
        with pytest.raises(symplug.memory.MemoryBudgetError,
                           match=r"a training batch of 8 items \(measured [\d.]+ MiB per item\).*"
                           r"the largest batch that fits is about 1$"):
            finetune(task, get_domain("toypoints"), config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_atoms_augmentation_rotates_targets_like_emt(frames):
    """Rotated structures carry the labels EMT gives on the rotated structure (rho(g)
    target: forces g F, energy unchanged), improper elements included."""
    from symplug_atoms.action import transform
    from symplug_atoms.torch_model import TorchAtomsModel

    cluster = _small(frames, 1)[0]
    task = training_task("atoms", TorchAtomsModel(DistanceAtoms(), 4.5), [cluster])
    mats = symplug.haar("O3", 4, seed=2)
    mats[0] = -mats[0] if torch.linalg.det(mats[0]) > 0 else mats[0]  # one improper element
    from symplug.training import augment

    batch = augment(task, task.collate([task.items[0]] * 4), mats)
    for item, g in zip(batch, mats):
        moved = transform(cluster, g.numpy())
        moved.calc = EMT()
        assert np.allclose(item.forces.numpy(), moved.get_forces(), atol=1e-10)
        assert item.energy == cluster.get_potential_energy()  # the label, unchanged
        assert item.energy == pytest.approx(moved.get_potential_energy(), abs=1e-8)  # extxyz digits
        com = moved.get_center_of_mass()
        assert np.allclose(item.pos.numpy(), moved.positions - com, atol=1e-10)


def test_exactly_invariant_atoms_model_has_zero_penalties(frames):
    from symplug_atoms.finetune import training_task as atoms_task
    from symplug_atoms.torch_model import TorchAtomsModel

    bulk = next(f for f in frames if len(f) == 32)
    task = atoms_task(TorchAtomsModel(DistanceAtoms(), 4.5), [*_small(frames, 2), bulk],
                      dtype=torch.float64)
    batch = task.collate(task.items)
    pred = task.predict(batch)
    pen = equivariance_penalty(task, batch, pred, symplug.haar("O3", 3, seed=5))
    lie = lie_penalty(task, batch, 3, "O3")
    assert pred["forces"].abs().max() > 1e-3  # non-trivial forces
    for name in ("energy", "forces"):
        assert float(pen[name].detach()) < 1e-24 and float(lie[name].detach()) < 1e-24


class MassTagger(torch.nn.Module):
    """Logits from the jet mass and energy: invariant under every rotation."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).double()

    def forward(self, p4, mask):
        total = (p4 * mask[..., None]).sum(1)
        m2 = total[:, 0] ** 2 - (total[:, 1:] ** 2).sum(-1)
        return self.lin(torch.stack([m2.clamp_min(0).sqrt() / 100, total[:, 0] / 1000], -1))

    def score(self, p4, mask):
        return torch.softmax(self(p4, mask), -1)[:, 1]


@pytest.fixture(scope="module")
def blocks():
    return load_data("jets", str(JETS))


def test_jets_augmentation_and_invariant_tagger(blocks):
    from symplug.training import augment
    from symplug_jets.action import rotate_jets
    from symplug_jets.finetune import training_task as jets_task
    from symplug_jets.taggers import CallableTagger

    tagger = CallableTagger(lambda p, m: None)
    tagger.module = MassTagger()
    task = jets_task(tagger, blocks[:1], dtype=torch.float64)
    batch = task.collate(task.items)
    g = symplug.haar("O3", 1, seed=1)
    moved = augment(task, batch, g.expand(16, 3, 3))
    assert torch.equal(moved["target"], batch["target"])  # labels are invariant
    assert torch.allclose(moved["p4"], rotate_jets(blocks[0], g)["p4"], atol=1e-12)
    for frame in ("lab", "jet"):
        task = jets_task(tagger, blocks[:1], dtype=torch.float64, frame=frame)
        pen = equivariance_penalty(task, batch, task.predict(batch),
                                   symplug.haar("SO3", 16, seed=3))
        assert float(pen["score"].detach()) < 1e-24
        assert float(lie_penalty(task, batch, 16, "SO3")["score"].detach()) < 1e-24


# --------------------------------------------------------------------------- resume after a kill


def _resume_run(out, kill_at=None, epochs=2):
    """A tiny jets fine-tuning run (reference tagger, SO3 augmentation, both penalties,
    checkpoint every 3 steps, tracking every epoch); SIGKILLs itself after step ``kill_at``."""
    torch.set_default_dtype(torch.float64)
    samples = load_data("jets", str(JETS))[:6]
    train, validation = split_samples(samples, 0.2, 0)
    task = training_task("jets", load_model("jets", "reference"), train)
    config = FinetuneConfig(domain="jets", epochs=epochs, lr=1e-3, batch=16, seed=3, group="SO3",
                            penalty_equivariance=0.5, penalty_lie=0.1, checkpoint_every=3,
                            track_every=1, track_degree=1, track_samples=1)

    def callback(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finetune(task, get_domain("jets"), config, out, validation=validation, progress=False,
                 callback=callback)
    finally:
        torch.set_num_threads(threads)
    return task.module.state_dict()


def test_killed_run_resumes_to_identical_weights(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_training import _resume_run; _resume_run({str(tmp_path / 'killed')!r}, "
            "kill_at=7)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (saved["epoch"], saved["step"], saved["global_step"]) == (1, 1, 6)  # mid-epoch
    resumed = _resume_run(tmp_path / "killed")
    straight = _resume_run(tmp_path / "straight")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    a = json.loads((tmp_path / "killed" / "track.json").read_text())
    b = json.loads((tmp_path / "straight" / "track.json").read_text())
    assert a == b and [e["epoch"] for e in a["epochs"]] == [0, 1, 2]
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r["event"] in ("start", "resume")] == ["start", "resume"]
    # a resumed run with other settings is refused
    with pytest.raises(SymplugError, match="other settings"):
        finetune(training_task("jets", load_model("jets", "reference"),
                               load_data("jets", str(JETS))[:2]), get_domain("jets"),
                 FinetuneConfig(domain="jets", epochs=3), tmp_path / "straight", progress=False)
    # the checkpoint is a model file the jets loader reads (weights_only=True)
    tagger = load_model("jets", str(tmp_path / "straight" / "epoch_002.pt"))
    assert all(torch.equal(tagger.module.state_dict()[k].float(), straight[k].float())
               for k in straight)
    _check_tensormap(tmp_path / "straight")


def test_rng_state_round_trip(tmp_path):
    import random

    from symplug.result import write_checkpoint

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    write_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def _check_tensormap(folder):
    """track.mts holds the same fractions as track.json, keyed (chi_lambda, chi_sigma)."""
    import metatensor.torch as mts

    track = json.loads((folder / "track.json").read_text())
    tensor = mts.load(str(folder / "track.mts"))
    assert tensor.keys.names == ["chi_lambda", "chi_sigma"]
    names = list(track["epochs"][0]["layers"])
    checked = 0
    for key, block in tensor.items():
        label = f"{int(key[0])},{int(key[1]):+d}" if int(key[1]) else f"{int(key[0])},0"
        assert block.samples.names == ["entry", "epoch", "layer"]
        for row, (index, epoch, layer) in enumerate(block.samples.values.tolist()):
            assert track["epochs"][index]["epoch"] == epoch
            spectrum = track["epochs"][index]["layers"][names[layer]]
            assert float(block.values[row, 0]) == spectrum["spectrum"][label]
            assert float(block.values[row, 1]) == spectrum["spectrum_centered"][label]
            checked += 1
    assert checked == len(track["epochs"]) * len(names) * len(tensor.keys)


# --------------------------------------------------------------------------- command line


def test_cli_finetune_and_track_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", "jets", "--model", "reference", "--data", str(JETS),
                 "--max-samples", "5", "--epochs", "1", "--batch", "16", "--group", "SO2",
                 "--degree", "1", "--track-samples", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "epoch   0" in printed and "A(score)" in printed and "flip_rate" in printed
    track = json.loads((out / "track.json").read_text())
    assert track["kind"] == "track" and track["domain"] == "jets" and track["group"] == "SO2"
    assert {"kind", "degree", "size", "exact_degree"} <= set(track["grid"])
    entry = track["epochs"][-1]
    assert entry["epoch"] == 1 and isinstance(entry["loss"], float)
    assert {"auc", "rejection_at_0.3", "flip_rate"} <= set(entry["metrics"])
    assert set(entry["outputs"]["score"]) >= {"equivariance_rmse", "relative_error", "units"}
    assert set(entry["layers"]) == {"embed", "blocks.0", "blocks.1", "pool"}
    assert sum(entry["layers"]["pool"]["spectrum"].values()) <= 1 + 1e-9
    assert (out / "track.png").stat().st_size > 1000
    shipped = ROOT / "plugins/symplug_jets/data/tagger.pt"  # a plain model file: no loss history
    assert main(["track", "jets", "--checkpoints", str(shipped), str(out / "epoch_001.pt"),
                 str(out / "epoch_001.pt"), "--data", str(JETS), "--max-samples", "1", "--degree", "1", "--layers", "pool",
                 "--out", str(tmp_path / "tr"), "--quiet", "--report"]) == 0
    tracked = json.loads((tmp_path / "tr" / "track.json").read_text())
    report = (tmp_path / "tr" / "report.md").read_text()
    assert "## track: training" in report and "figures/track_training.png" in report
    assert "data:image/png;base64," in (tmp_path / "tr" / "report.html").read_text()
    assert [(e["epoch"], e["loss"] is None) for e in tracked["epochs"]] == [
        (0, True), (1, False), (1, False)]
    _check_tensormap(tmp_path / "tr")  # two entries share epoch 1
    assert list(tracked["epochs"][0]["layers"]) == ["pool"]


def test_atoms_finetune_tracks_energy_and_forces(frames, tmp_path):
    from symplug_atoms.torch_model import load_reference

    train, validation = _small(frames, 3), _small(frames, 4)[3:]
    task = training_task("atoms", load_reference(), train)
    result = finetune(task, get_domain("atoms"), FinetuneConfig(
        domain="atoms", epochs=1, batch=3, lr=1e-4, track_every=1, track_degree=1,
        track_samples=1, track_layers=("layers.1",)), tmp_path, validation=validation,
        progress=False)
    entry = result["track"][-1]
    assert set(entry["outputs"]) == {"energy", "forces"}
    assert entry["outputs"]["forces"]["units"] == "meV/A"
    assert entry["metrics"]["forces_mae_meV_per_A"] > 0
    assert 0 < entry["layers"]["layers.1"]["invariant_fraction"] < 1
    assert load_model("atoms", str(tmp_path / "epoch_001.pt")).module is not None


@pytest.mark.parametrize("argv,message", [
    (["track", "jets", "--checkpoints", "missing.pt", "--data", str(JETS), "--out", "x"],
     "checkpoint 'missing.pt' does not exist"),
    (["finetune", "nodomain", "--model", "m", "--data", str(JETS), "--out", "x"],
     "unknown domain 'nodomain'"),
    (["finetune", "atoms", "--model", "emt", "--data", str(FRAMES), "--out", "x"],
     "fine-tuning needs a torch atoms model"),
    (["finetune", "jets", "--model", "reference", "--data", str(JETS), "--max-samples", "1",
      "--out", "x"], "at least 2 samples"),
])
def test_cli_mistakes(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_invalid_training_task_names_the_plugin(toy, monkeypatch):
    from symplug import PluginError

    monkeypatch.setattr(ToyPlugin, "training_task", lambda self, model, samples: TrainingTask(
        module="not a module", items=[], collate=None, predict=len, loss=len,
        outputs={"vector": "7q"}, snapshot=len), raising=True)
    with pytest.raises(PluginError, match="toypoints-test.*not a torch.nn.Module.*collate is not "
                                          "callable.*output 'vector'"):
        training_task("toypoints", None, [])


def test_track_needs_no_labels(tmp_path):
    """Tracking a checkpoint on unlabelled structures (e.g. MD frames): A and B, no metrics."""
    from ase.cluster import Icosahedron
    from ase.io import write

    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=3)
    write(tmp_path / "frames.extxyz", atoms)  # positions only
    shipped = ROOT / "plugins/symplug_atoms/data/pet_cu.pt"
    assert main(["track", "atoms", "--checkpoints", str(shipped), "--data",
                 str(tmp_path / "frames.extxyz"), "--degree", "1", "--out",
                 str(tmp_path / "tr"), "--quiet"]) == 0
    entry = json.loads((tmp_path / "tr" / "track.json").read_text())["epochs"][0]
    assert entry["metrics"] == {}
    assert entry["outputs"]["forces"]["equivariance_rmse"] > 0

"""A real metatrain PET, trained here for a few epochs with ``mtt train`` on the
project's EMT data, diagnosed as-is: outputs through its exported metatomic model,
hidden layers through its checkpoint."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("metatrain")

import symplug  # noqa: E402
import symplug_atoms  # noqa: E402
from symplug_atoms.action import RotatedCopies, transform  # noqa: E402
from helpers import train_small_pet  # noqa: E402


@pytest.fixture(scope="module")
def pet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pet")
    return folder, train_small_pet(folder)


def test_checkpoint_and_export_agree(pet):
    folder, frames = pet
    ckpt = symplug_atoms.load_model(str(folder / "pet.ckpt"), trusted=True)
    exported = symplug_atoms.load_model(str(folder / "pet.pt"))
    assert isinstance(ckpt, symplug_atoms.MetatrainModel)
    assert isinstance(exported, symplug_atoms.MetatomicModel)
    cell = next(f for f in frames if f.get_pbc().all())
    mats = symplug.haar("O3", 3, seed=0)
    a, b = ckpt(RotatedCopies(cell, mats)), exported(RotatedCopies(cell, mats))
    # float64 checkpoint against the float32 export
    assert np.allclose(a["energy"], b["energy"], atol=1e-3)
    assert np.allclose(a["forces"], b["forces"], atol=1e-2)
    assert np.allclose(a["stress"], b["stress"], atol=1e-2)
    # the neighbour list built once and rotated gives the copies' own outputs
    for q, g in enumerate(mats):
        own = ckpt(RotatedCopies(transform(cell, g.numpy()), torch.eye(3, dtype=torch.float64)[None]))
        assert np.allclose(a["energy"][q], own["energy"][0], atol=1e-9)
        assert np.allclose(a["forces"][q], own["forces"][0], atol=1e-8)
    # for MD, the checkpoint runs as an ASE calculator of its model exported in memory
    from symplug_atoms.md import as_calculator

    atoms = cell.copy()
    atoms.calc = as_calculator(ckpt)
    energy = atoms.get_potential_energy() * 1000 / len(cell)  # meV/atom
    identity = ckpt(RotatedCopies(cell, torch.eye(3, dtype=torch.float64)[None]))
    assert abs(energy - float(identity["energy"][0, 0])) < 1e-6


def test_pet_diagnosed_with_hidden_layers(pet):
    folder, frames = pet
    cluster = next(f for f in frames if not f.get_pbc().any())
    layers = ["backend.gnn_layers.0", "backend.gnn_layers_post_mp_edge.0"]
    result = symplug_atoms.diagnose(symplug_atoms.load_model(str(folder / "pet.ckpt"), trusted=True),
                                    [cluster], degree=2, layers=layers, progress=False,
                                    check_convergence=False)
    assert result["outputs"]["energy"]["equivariance_rmse"] > 0  # unconstrained
    for name in layers:
        layer = result["layers"][name]
        assert abs(sum(layer["spectrum"].values()) + layer["truncation"] - 1) < 1e-12
        assert 0 < layer["invariant_fraction"] <= 1
    exported = symplug_atoms.diagnose(symplug_atoms.load_model(str(folder / "pet.pt")),
                                      [cluster], degree=2, progress=False, check_convergence=False)
    assert abs(exported["outputs"]["forces"]["equivariance_rmse"]
               - result["outputs"]["forces"]["equivariance_rmse"]) < 1e-2


class _Payload:
    """Unpickling this writes a marker file: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_unless_trusted(pet, tmp_path, capsys):
    from symplug.cli import main

    folder, _frames = pet
    data = str(folder / "cu.extxyz")
    evil, marker = tmp_path / "evil.ckpt", tmp_path / "MARKER"
    torch.save({"wrapper": _Payload(marker)}, evil)
    code = main(["diagnose", "atoms", "--model", str(evil), "--data", data, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not marker.exists()
    assert "refused" in err and "--trust-model" in err and "Traceback" not in err
    with pytest.raises(symplug.SymplugError, match="trusted=True"):
        symplug_atoms.load_model(str(evil))
    assert not marker.exists()
    # a genuine checkpoint loads as before once trusted, on the command line too
    out = tmp_path / "trusted.json"
    code = main(["diagnose", "atoms", "--model", str(folder / "pet.ckpt"), "--trust-model",
                 "--data", data, "--max-samples", "1", "--degree", "1", "--no-convergence",
                 "--quiet", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["outputs"]["energy"]["equivariance_rmse"] > 0


def test_track_follows_metatrain_checkpoints(pet, tmp_path, capsys):
    """``symplug track`` on metatrain checkpoints: the plugin's loader alone (not symplug's
    checkpoint format), the weights each file was trained to (not the best so far), the
    epoch the file records (metatrain counts from 0) unless ``--epochs`` says."""
    from symplug.cli import main

    folder, _frames = pet
    first = sorted(folder.glob("outputs/*/*/model_0.ckpt"))[-1]
    last = symplug_atoms.load_model(str(folder / "pet.ckpt"), trusted=True).as_trained()
    assert last.weights == "last" and last.epoch == 2
    args = ["track", "atoms", "--checkpoints", str(first), str(folder / "pet.ckpt"),
            "--trust-model", "--data", str(folder / "cu.extxyz"), "--max-samples", "1",
            "--degree", "1", "--layers", "backend.gnn_layers.0", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    track = json.loads((tmp_path / "a" / "track.json").read_text())
    assert [e["epoch"] for e in track["epochs"]] == [1, 2]
    assert all(e["outputs"]["forces"]["equivariance_rmse"] > 0
               and 0 < e["layers"]["backend.gnn_layers.0"]["invariant_fraction"] <= 1
               for e in track["epochs"])
    # the accuracy on the tracked frames, each randomly rotated (the fine-tuning task's)
    assert all(e["metrics"]["forces_mae_meV_per_A"] > 0 for e in track["epochs"])
    assert (tmp_path / "a" / "track.mts").exists() and (tmp_path / "a" / "track.png").exists()
    assert main([*args, "--epochs", "5,9", "--out", str(tmp_path / "b")]) == 0
    track = json.loads((tmp_path / "b" / "track.json").read_text())
    assert [e["epoch"] for e in track["epochs"]] == [5, 9]
    assert main([*args, "--epochs", "5", "--out", str(tmp_path / "c")]) == 2
    assert "--epochs gives 1 epochs for 2 checkpoints" in capsys.readouterr().err
    # without trust, the checkpoint is refused
    assert main([a for a in args if a != "--trust-model"] + ["--out", str(tmp_path / "d")]) == 2
    assert "--trust-model" in capsys.readouterr().err


def test_a_metatrain_checkpoint_is_fine_tuned_with_augmentation_and_a_penalty(pet, tmp_path,
                                                                               capsys):
    """``symplug finetune`` on a metatrain checkpoint: the task predicts what the model
    does (its backend in metatrain's own, twice-differentiable attention), and a run with
    O(3) augmentation and the equivariance penalty writes safe checkpoints of new weights
    and tracks A and the accuracy."""
    from symplug.cli import main
    from symplug_atoms.finetune import training_task

    folder, frames = pet
    model = symplug_atoms.load_model(str(folder / "pet.ckpt"), trusted=True)
    picked = [next(f for f in frames if f.get_pbc().all()),
              next(f for f in frames if not f.get_pbc().any())]
    expected = [model(RotatedCopies(a, torch.eye(3, dtype=torch.float64)[None])) for a in picked]
    task = training_task(model, picked, dtype=torch.float64)
    pred = task.predict(task.collate(task.items))  # gradients on: the training forward
    for k, (a, out) in enumerate(zip(picked, expected)):
        assert abs(pred["energy"][k].item() * 1000 - float(out["energy"][0, 0])) < 1e-9
    forces = torch.cat([out["forces"][0] for out in expected]) / 1000
    assert (pred["forces"] - forces).abs().max() < 1e-9 and pred["forces"].requires_grad

    args = ["finetune", "atoms", "--model", str(folder / "pet.ckpt"), "--trust-model",
            "--data", str(folder / "cu.extxyz"), "--max-samples", "12", "--epochs", "1",
            "--batch", "4", "--lr", "1e-4", "--penalty-equivariance", "1",
            "--track-samples", "1", "--quiet", "--out", str(tmp_path / "ft")]
    assert main(args) == 0, capsys.readouterr().err
    saved = torch.load(tmp_path / "ft" / "epoch_001.pt", weights_only=True)
    start = model.module.state_dict()
    assert set(saved["state_dict"]) == set(start)
    assert any(not torch.equal(saved["state_dict"][k].to(v.dtype), v) for k, v in start.items()
               if v.is_floating_point())
    track = json.loads((tmp_path / "ft" / "track.json").read_text())
    assert [e["epoch"] for e in track["epochs"]] == [0, 1]
    for e in track["epochs"]:
        assert e["outputs"]["forces"]["equivariance_rmse"] > 0
        assert np.isfinite(e["metrics"]["forces_mae_meV_per_A"])

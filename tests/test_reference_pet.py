"""The shipped reference metatrain PET (``pet-ref``) meets its accuracy goal on its own
held-out test split: energy MAE <= 2 meV/atom, force MAE <= 20 meV/A, as recorded in
``pet_ref_metrics.json`` (made by ``examples/train_reference_pet.py``)."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metatomic_ase")

import ase.io  # noqa: E402

import symplug_atoms  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "plugins/symplug_atoms/data"


def test_pet_ref_meets_its_accuracy_goal_on_its_test_split():
    frames = ase.io.read(DATA / "pet_ref_test.extxyz", ":")
    calc = symplug_atoms.load_model("pet-ref").calculator()
    energy, forces = [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        energy.append(abs(atoms.get_potential_energy() - frame.get_potential_energy())
                      / len(frame))
        forces.append(np.abs(atoms.get_forces() - frame.get_forces()).ravel())
    energy_mae = 1000 * float(np.mean(energy))
    forces_mae = 1000 * float(np.mean(np.concatenate(forces)))
    assert len(frames) == 50
    assert energy_mae <= 2.0 and forces_mae <= 20.0, (energy_mae, forces_mae)
    recorded = json.loads((DATA / "pet_ref_metrics.json").read_text())["test_errors"]["as_given"]
    assert energy_mae == pytest.approx(recorded["energy_mae_meV_per_atom"], rel=1e-3)
    assert forces_mae == pytest.approx(recorded["forces_mae_meV_per_A"], rel=1e-3)


def test_finetune_study_quick(tmp_path):
    """examples/study_finetune_pet_ref.py --quick: pet-ref as shipped and fine-tuned one
    step with augmentation, with and without the penalty; each measured (A, rotated
    MAE, MD), the fine-tunings' checkpoints removed once measured."""
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "examples" / "study_finetune_pet_ref.py"
    subprocess.run([sys.executable, str(script), "--train", str(DATA / "pet_ref_test.extxyz"),
                    "--out", str(tmp_path), "--quick"], check=True, capture_output=True,
                   timeout=900)
    rows = {r["arm"]: r for r in json.loads((tmp_path / "study.json").read_text())["rows"]}
    assert set(rows) == {"raw", "augmented", "penalty"}
    for row in rows.values():
        assert row["A_forces_meV_per_A"][0] > 0 and row["test_forces_mae_meV_per_A"][0] > 0
        assert row["L_final"][0] > 0
    assert rows["raw"]["L_final_vs_raw"] == [1.0, 0.0]
    assert rows["penalty"]["training_seconds"][0] > 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "augmented_seed0.json", "penalty_seed0.json", "raw_seed0.json"]

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

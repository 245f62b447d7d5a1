"""The atoms adapter on ase's EMT (exactly invariant) and planted anisotropy (analytic A)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import ase
import ase.cluster
import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import symplug
import symplug_atoms
from symplug_atoms.action import check_frame, transform

from atoms_models import (CHARGES, EPS, NET_DIPOLE, W, BadShapeEMT, DipoleEMT, FailingEMT,
                          NoStressEMT, PlantedEMT, PlantedPairEMT)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cell():
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=2)
    return atoms


def planted_analytic(atoms):
    """A of the planted term: energy (eV) and forces (eV/A per component)."""
    d = atoms.positions - atoms.get_center_of_mass()
    m = d.T @ d
    m0 = m - np.trace(m) / 3 * np.eye(3)
    w2 = float(W @ W)
    a_energy = EPS * w2 * math.sqrt(2 * np.trace(m0 @ m0) / 15)
    a_forces = math.sqrt(8 / 9 * EPS ** 2 * w2 ** 2 * float((d * d).sum()) / (3 * len(atoms)))
    return a_energy, a_forces, np.trace(m)


def test_action_rotates_about_com_and_keeps_cells_right_handed(cluster, cell):
    g = -symplug.haar("SO3", 1, seed=4)[0].numpy()  # improper
    moved = transform(cluster, g)
    com = cluster.get_center_of_mass()
    assert np.allclose(moved.get_center_of_mass(), com, atol=1e-12)
    assert np.allclose(moved.positions - com, (cluster.positions - com) @ g.T, atol=1e-12)
    new = transform(cell, g)
    assert np.linalg.det(new.cell.array) > 0
    assert np.allclose(new.cell.array, cell.cell.array @ (-g).T)
    # distances (with periodic images) are unchanged by the action
    assert np.allclose(np.sort(new.get_all_distances(mic=True).ravel()),
                       np.sort(cell.get_all_distances(mic=True).ravel()), atol=1e-10)


def test_emt_is_invariant(cluster, cell):
    result = symplug_atoms.diagnose(EMT(), [cluster], degree=2, progress=False)
    energy, forces = result["outputs"]["energy"], result["outputs"]["forces"]
    assert energy["units"] == "meV/atom" and forces["units"] == "meV/A"
    assert energy["equivariance_rmse"] * len(cluster) / 1000 <= 1e-9  # eV
    assert forces["equivariance_rmse"] / 1000 <= 1e-9  # eV/A
    assert abs(energy["spectrum"]["0,+1"] - 1) < 1e-12
    assert abs(forces["spectrum"]["1,+1"] - 1) < 1e-9
    periodic = symplug_atoms.diagnose(EMT(), [cell], degree=1, progress=False)
    assert set(periodic["outputs"]) == {"energy", "forces", "stress"}
    # the default outputs are those the calculator offers; an explicit one it lacks is named
    no_stress = symplug_atoms.diagnose(NoStressEMT(), [cell], degree=1, progress=False)
    assert set(no_stress["outputs"]) == {"energy", "forces"}
    with pytest.raises(symplug.SymplugError, match="cannot compute output 'stress'"):
        symplug_atoms.diagnose(NoStressEMT(), [cell], outputs=["stress"], degree=1,
                               progress=False)
    assert periodic["outputs"]["stress"]["units"] == "GPa"
    assert periodic["outputs"]["stress"]["equivariance_rmse"] < 1e-9


def test_stress_of_mixed_data_covers_the_periodic_structures(cluster, cell):
    """Clusters and cells together: stress is diagnosed over the cells only, with the same
    numbers as the cells alone; energy and forces over all."""
    mixed = symplug_atoms.diagnose(PlantedPairEMT(), [cluster, cell], degree=2,
                                   progress=False)
    alone = symplug_atoms.diagnose(PlantedPairEMT(), [cell], degree=2, progress=False)
    stress = mixed["outputs"]["stress"]
    assert stress["n_samples"] == 1 and mixed["outputs"]["energy"]["n_samples"] == 2
    assert [p["index"] for p in stress["per_sample"]] == [1]
    assert stress["equivariance_rmse"] > 1e-6  # the planted pair term breaks it
    for key in ("equivariance_rmse", "relative_error"):
        assert abs(stress[key] - alone["outputs"]["stress"][key]) <= 1e-12 * stress[key]
    assert stress["spectrum"] == pytest.approx(alone["outputs"]["stress"]["spectrum"], abs=1e-12)
    with pytest.raises(symplug.SymplugError, match="'stress' exists for none of the samples"):
        symplug_atoms.diagnose(EMT(), [cluster], outputs=["stress"], degree=1, progress=False)


def test_per_atom_energies_and_dipole(cluster, tmp_path):
    result = symplug_atoms.diagnose(EMT(), [cluster], outputs=["energy", "energies"], degree=2,
                                    progress=False)
    energies = result["outputs"]["energies"]
    assert energies["units"] == "meV" and energies["rep"] == "0e"
    assert energies["equivariance_rmse"] / 1000 <= 1e-9  # eV, exactly invariant per atom
    assert abs(energies["spectrum"]["0,+1"] - 1) < 1e-12
    # the dipole q . (r - r_com) + c: A = |c| / sqrt(3); raw power |c|^2 in (0,+1) and
    # |D0|^2 in (1,+1), D0 = q . (r - r_com)
    c2 = float(NET_DIPOLE @ NET_DIPOLE)
    d0 = np.resize(CHARGES, len(cluster)) @ (cluster.positions - cluster.get_center_of_mass())
    result = symplug_atoms.diagnose(DipoleEMT(), [cluster], outputs=["dipole"], degree=2,
                                    progress=False)
    dipole = result["outputs"]["dipole"]
    assert dipole["units"] == "e A" and dipole["rep"] == "1o"
    assert abs(dipole["equivariance_rmse"] - math.sqrt(c2 / 3)) < 1e-12
    assert abs(dipole["spectrum"]["0,+1"] - c2 / (c2 + d0 @ d0)) < 1e-12
    assert abs(dipole["spectrum"]["1,+1"] - d0 @ d0 / (c2 + d0 @ d0)) < 1e-12
    # the same output declared on the command line (model units), next to the defaults
    data = tmp_path / "frame.extxyz"
    ase.io.write(data, [cluster])
    out = tmp_path / "declared.json"
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "diagnose", "atoms",
                           "--model", "atoms_models:DipoleEMT", "--trust-model", "--data", str(data),
                           "--declare", "dipole=1o", "--degree", "2", "--json", str(out),
                           "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stderr
    declared = json.loads(out.read_text())["outputs"]
    assert set(declared) == {"energy", "forces", "dipole"}
    assert declared["dipole"]["units"] == "e A"  # a declared built-in keeps its units
    assert abs(declared["dipole"]["equivariance_rmse"] - math.sqrt(c2 / 3)) < 1e-9  # extxyz
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "diagnose", "atoms",
                           "--model", "emt", "--data", str(data), "--declare", "dipole=1x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "declared output 'dipole'" in proc.stderr


def test_planted_anisotropy_scores_the_analytic_value(cluster):
    a_energy, a_forces, _ = planted_analytic(cluster)
    result = symplug_atoms.diagnose(PlantedEMT(), [cluster], degree=2, progress=False)
    energy, forces = result["outputs"]["energy"], result["outputs"]["forces"]
    n = len(cluster)
    assert abs(energy["equivariance_rmse"] * n / 1000 - a_energy) < 1e-9 * a_energy
    assert abs(forces["equivariance_rmse"] / 1000 - a_forces) < 1e-9 * a_forces
    # the extra power is all in (2,+1): its absolute power is A^2 (meV/atom)^2
    power2 = energy["power"]["2,+1"]
    assert abs(power2 - (a_energy * 1000 / n) ** 2) < 1e-9 * power2
    assert energy["power"]["1,+1"] < 1e-18 and energy["power"]["2,-1"] < 1e-18
    assert result["convergence"]["max_abs_change"] < 1e-10  # band 2: exact at degree 2


def test_symmetrized_calculator_removes_it(cluster):
    a_energy, _, trace = planted_analytic(cluster)
    # the planted term is band 2: its mean needs band 2, its rot_std (a second moment)
    # band 4, i.e. degree 4 (the icosahedral rule, exact to band 5)
    sym = symplug_atoms.SymmetrizedCalculator(PlantedEMT(), degree=4)
    assert sym.grid.size == 120 and sym.rot_std_band == 2
    result = symplug_atoms.diagnose(sym, [cluster], degree=1, progress=False,
                                    check_convergence=False)
    n = len(cluster)
    assert result["outputs"]["energy"]["equivariance_rmse"] * n / 1000 <= 1e-10
    assert result["outputs"]["forces"]["equivariance_rmse"] / 1000 <= 1e-10
    atoms = cluster.copy()
    atoms.calc = sym
    energy = atoms.get_potential_energy()
    emt = cluster.copy()
    emt.calc = EMT()
    # the average of the planted term is eps |w|^2 tr(M) / 3, its forces -2/3 eps |w|^2 d_i
    assert abs(energy - emt.get_potential_energy() - EPS * float(W @ W) * trace / 3) < 1e-10
    d = cluster.positions - cluster.get_center_of_mass()
    expected = emt.get_forces() - 2 / 3 * EPS * float(W @ W) * d
    assert np.abs(atoms.get_forces() - expected).max() < 1e-10
    assert abs(sym.results["energy_rot_std"] - a_energy) < 1e-9 * a_energy
    assert sym.results["forces_rot_std"].shape == (n, 3)


def test_bad_input_is_named(cluster, cell):
    with pytest.raises(symplug.SymplugError, match="empty structure"):
        check_frame(ase.Atoms(), "frame 3")
    bad = cluster.copy()
    bad.positions[4, 1] = np.nan
    with pytest.raises(symplug.SymplugError,
                       match="^sample 0: structure: field 'positions' holds NaN.*atom 4"):
        symplug_atoms.diagnose(EMT(), [bad], degree=1, progress=False, skip_failures=False)
    result = symplug_atoms.diagnose(EMT(), [cluster, bad], degree=1, progress=False)
    assert result["n_samples"] == 1 and result["skipped"] == [
        {"index": 1, "reason": "SymplugError: structure: field 'positions' holds NaN or inf "
                               "(atom 4)"}]
    bad = cluster.copy()
    bad.positions[2] = bad.positions[1] + 0.01
    with pytest.raises(symplug.SymplugError, match="atoms 1 and 2 overlap"):
        check_frame(bad)
    bad = ase.Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]], pbc=True)
    with pytest.raises(symplug.SymplugError, match="field 'cell'"):
        check_frame(bad)
    with pytest.raises(symplug.SymplugError, match="forces of shape \\(13, 2\\)"):
        symplug_atoms.diagnose(BadShapeEMT(), [cluster], degree=1, progress=False,
                               skip_failures=False)
    with pytest.raises(symplug.SymplugError, match="cannot compute output 'dipole'"):
        symplug_atoms.diagnose(EMT(), [cluster], outputs=["dipole"], degree=1, progress=False)
    with pytest.raises(symplug.SymplugError, match="no output 'charge'"):
        symplug_atoms.diagnose(EMT(), [cluster], outputs=["charge"], degree=1, progress=False)


def test_bad_frame_in_a_file_is_flagged_or_named(cluster, tmp_path):
    bad = cluster.copy()
    bad.positions[2] = bad.positions[1] + 0.01
    data = tmp_path / "frames.extxyz"
    ase.io.write(data, [cluster, bad, cluster])
    out = tmp_path / "skipped.json"
    symplug_cli = str(Path(sys.executable).parent / "symplug")
    proc = subprocess.run([symplug_cli, "diagnose", "atoms", "--model", "emt", "--data", str(data),
                           "--degree", "1", "--skip-failures", "--json", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["n_samples"] == 2 and [s["index"] for s in result["skipped"]] == [1]
    assert f"{data} frame 1: atoms 1 and 2 overlap" in result["skipped"][0]["reason"]
    proc = subprocess.run([symplug_cli, "diagnose", "atoms", "--model", "emt", "--data", str(data),
                           "--degree", "1", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"sample 1: {data} frame 1: atoms 1 and 2 overlap" in proc.stderr


def test_failing_structure_is_flagged_and_the_rest_kept(cluster):
    big = ase.cluster.Icosahedron("Cu", 3)
    result = symplug_atoms.diagnose(FailingEMT(), [cluster, big], degree=1, progress=False)
    assert result["n_samples"] == 1 and result["skipped"][0]["index"] == 1
    assert "too many atoms" in result["skipped"][0]["reason"]
    assert result["outputs"]["energy"]["equivariance_rmse"] < 1e-9


def test_transform_labelled_transforms_labels(cell):
    from symplug_atoms.action import transform_labelled

    labelled = cell.copy()
    labelled.calc = EMT()
    labelled.get_stress()
    g = symplug.haar("O3", 1, seed=9)
    new = transform_labelled(labelled, g[0].numpy())
    direct = transform(cell, g[0].numpy())
    direct.calc = EMT()
    assert np.abs(new.calc.results["forces"] - direct.get_forces()).max() < 1e-10
    assert np.abs(new.calc.results["stress"] - direct.get_stress()).max() < 1e-12


def test_split_against_labels_covers_the_labelled_frames(cluster):
    labelled, unlabelled = cluster.copy(), cluster.copy()
    unlabelled.rattle(0.05, seed=3)
    labelled.calc = EMT()
    labelled.get_forces()
    result = symplug_atoms.diagnose(PlantedEMT(), [unlabelled, labelled], degree=2,
                                    progress=False)
    alone = symplug_atoms.diagnose(PlantedEMT(), [labelled], degree=2, progress=False)
    for name in ("energy", "forces"):
        out = result["outputs"][name]
        split = dict(out["bias_variance"])
        assert split.pop("n_labelled") == 1
        # the split is that of the labelled frame alone: bias and orbit variance
        expected = dict(alone["outputs"][name]["bias_variance"])
        assert expected.pop("n_labelled") == 1
        assert split.keys() == expected.keys()
        for key, value in expected.items():
            assert abs(split[key] - value) <= 1e-12 * abs(value)
        assert abs(split["equivariance_rmse"] - out["per_sample"][1]["equivariance_rmse"]) \
            < 1e-12 * split["equivariance_rmse"]
    assert result["outputs"]["energy"]["equivariance_rmse"] != \
        result["outputs"]["energy"]["bias_variance"]["equivariance_rmse"]
    from symplug.report import diagnosis_sections

    text = "\n".join(section.markdown for section in diagnosis_sections("planted", result))
    assert "Only some structures carry reference labels (energy 1 of 2, forces 1 of 2)" in text
    assert "2 structures." in text and result["n_items"] == 2


def test_cli_on_labelled_extxyz(cluster, tmp_path):
    frames = []
    for seed in range(2):
        atoms = cluster.copy()
        atoms.rattle(0.02, seed=10 + seed)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    data = tmp_path / "frames.extxyz"
    ase.io.write(data, frames)
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "diagnose", "atoms",
                           "--model", "atoms_models:PlantedEMT", "--trust-model", "--data", str(data),
                           "--degree", "2", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    energy = result["outputs"]["energy"]
    read_back = ase.io.read(data, index=":")  # extxyz rounds the positions
    expected = [planted_analytic(f)[0] * 1000 / len(f) for f in read_back]
    assert abs(energy["equivariance_rmse"] - math.sqrt(np.mean(np.square(expected)))) < 1e-9
    split = energy["bias_variance"]
    assert abs(split["equivariance_rmse"] - energy["equivariance_rmse"]) < 1e-15
    assert split["symmetrized_rmse"] > 0  # the planted term's average shifts the energy
    assert "energy" in proc.stdout and "meV/atom" in proc.stdout
    # the header counts the user's structures (one per sample)
    assert "(120 elements), 2 structures\n" in proc.stdout, proc.stdout
    assert (result["n_samples"], result["n_items"], result["item_name"]) == (2, 2, "structures")
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "diagnose", "atoms",
                           "--model", "emt", "--data", str(tmp_path / "missing.xyz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr

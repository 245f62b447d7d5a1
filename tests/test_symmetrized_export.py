"""A symmetrised metatomic model for MD engines (symplug_atoms.symmetrized_export): the
exported pet-cu averaged over an O(3) grid, saved, reloaded and run by metatomic-ase's
MetatomicCalculator, against symplug_atoms.SymmetrizedCalculator on the same grid."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("metatomic_ase")

import ase.build  # noqa: E402
import ase.cluster  # noqa: E402
from ase.stress import voigt_6_to_full_3x3_stress  # noqa: E402
from metatomic.torch import ModelOutput, load_atomistic_model  # noqa: E402
from metatomic_ase import MetatomicCalculator  # noqa: E402

import symplug  # noqa: E402
import symplug_atoms  # noqa: E402
from symplug_atoms.action import transform  # noqa: E402
from symplug_atoms.symmetrized_export import (ENERGY_STD, FORCES_STD, STRESS_STD,  # noqa: E402
                                              export_symmetrized, symmetrize_metatomic)

GRID = symplug.quadrature("O3", 1)  # T x {E, I}: 24 elements, a group with equal weights


def structure(name):
    if name == "cluster":
        atoms = ase.cluster.Icosahedron("Cu", 2)
    elif name == "cubic":
        atoms = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True)
    else:  # a skewed primitive cell, 8 atoms
        atoms = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    return atoms


def std_outputs(atoms):
    outputs = {ENERGY_STD: ModelOutput(unit="eV", sample_kind="system"),
               FORCES_STD: ModelOutput(unit="eV/Angstrom", sample_kind="atom")}
    if atoms.pbc.all():
        outputs[STRESS_STD] = ModelOutput(unit="eV/Angstrom^3", sample_kind="system")
    return outputs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from symplug_atoms.export import export_metatomic

    folder = tmp_path_factory.mktemp("symmetrized")
    pet = export_metatomic(symplug_atoms.load_model("pet-cu"), folder / "pet-cu.pt")
    # chunks of 5: 24 = 5 + 5 + 5 + 5 + 4
    wrapped = export_symmetrized(str(pet), GRID, folder / "pet-cu-o3.pt", chunk_size=5)
    return str(pet), str(wrapped)


@pytest.mark.parametrize("name", ["cluster", "cubic", "skewed"])
def test_matches_symmetrized_calculator(files, name):
    """Energy, forces, stress and rotational spreads of the saved, reloaded model under
    MetatomicCalculator equal SymmetrizedCalculator's on the same grid."""
    pet, wrapped = files
    atoms = structure(name)
    calc = MetatomicCalculator(wrapped, additional_outputs=std_outputs(atoms),
                               check_consistency=True)
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    ref = symplug_atoms.SymmetrizedCalculator(MetatomicCalculator(pet), grid=GRID)
    expected = ref.get_property("energy", atoms.copy())
    assert ref.results["energy_rot_std"] > 1e-4  # pet-cu is not invariant: a real average
    assert abs(energy - expected) < 1e-10 * max(1.0, abs(expected))
    assert np.abs(forces - ref.results["forces"]).max() < 1e-10
    extra = {k: v.block().values.detach().numpy() for k, v in calc.additional_outputs.items()}
    assert abs(extra[ENERGY_STD].item() - ref.results["energy_rot_std"]) < 1e-10
    assert np.abs(extra[FORCES_STD].reshape(-1, 3) - ref.results["forces_rot_std"]).max() < 1e-10
    if atoms.pbc.all():
        # the averaged strain derivative is not symmetric (the average is invariant only
        # under the grid's finite group); MetatomicCalculator's Voigt stress is its
        # symmetric part, SymmetrizedCalculator's takes the upper triangle
        full = ref._grid_average(atoms)["stress"]
        assert np.abs(full - full.T).max() > 1e-7
        expected = voigt_6_to_full_3x3_stress(ref.results["stress"])
        sym = (full + full.T) / 2
        assert np.abs(np.diag(expected) - np.diag(sym)).max() < 1e-12
        assert np.abs(voigt_6_to_full_3x3_stress(atoms.get_stress()) - sym).max() < 1e-10
        assert np.abs(extra[STRESS_STD].reshape(3, 3) - ref.results["stress_rot_std"]).max() < 1e-10


@pytest.mark.parametrize("name", ["cluster", "skewed"])
def test_invariant_under_the_grid_group(files, name):
    """The grid is a group: the average is exactly invariant under its elements (a proper
    and an improper one), forces and stress rotate with the structure; the raw model is not."""
    pet, wrapped = files
    atoms = structure(name)
    calc = MetatomicCalculator(wrapped)
    plain = MetatomicCalculator(pet)
    e0, f0 = calc.get_potential_energy(atoms), calc.get_forces(atoms)
    s0 = voigt_6_to_full_3x3_stress(calc.get_stress(atoms)) if atoms.pbc.all() else None
    raw0 = plain.get_potential_energy(atoms)
    for k in (5, 17):  # a proper and an improper element
        g = GRID.matrices[k].numpy()
        moved = transform(atoms, g)
        assert abs(plain.get_potential_energy(moved) - raw0) > 1e-5
        assert abs(calc.get_potential_energy(moved) - e0) < 1e-12 * max(1.0, abs(e0))
        assert np.abs(calc.get_forces(moved) - f0 @ g.T).max() < 1e-10
        if s0 is not None:
            s = voigt_6_to_full_3x3_stress(calc.get_stress(moved))
            assert np.abs(s - g @ s0 @ g.T).max() < 1e-10


def test_forces_and_stress_are_derivatives_of_the_energy(files):
    """Central differences of the energy: forces along a few coordinates, stress along
    the six symmetric strains (model wrapped in memory, run eagerly)."""
    pet, _ = files
    model = symmetrize_metatomic(load_atomistic_model(pet), GRID, chunk_size=7)
    calc = MetatomicCalculator(model)
    atoms = structure("skewed")
    forces = calc.get_forces(atoms)
    stress = voigt_6_to_full_3x3_stress(calc.get_stress(atoms))
    h = 1e-4
    for atom, axis in ((0, 0), (3, 1), (7, 2)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(calc.get_potential_energy(moved))
        assert abs(-(energies[0] - energies[1]) / (2 * h) - forces[atom, axis]) < 1e-7
    volume = atoms.get_volume()
    for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)):
        strain = np.zeros((3, 3))
        strain[i, j] = strain[j, i] = 0.5 if i != j else 1.0
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * h * strain), scale_atoms=True)
            energies.append(calc.get_potential_energy(moved))
        assert abs((energies[0] - energies[1]) / (2 * h) / volume - stress[i, j]) < 1e-7


def test_chunks_no_grad_path_and_metadata(files):
    """The chunk size changes nothing; energy and spreads without gradients (no_grad
    chunks; per-copy gradients only for the forces spread) equal the autograd path; the
    grid's description is in the saved model's metadata."""
    pet, wrapped = files
    atoms = structure("cubic")
    base = MetatomicCalculator(wrapped, additional_outputs=std_outputs(atoms))
    atoms.calc = base
    energy = atoms.get_potential_energy()
    spreads = {k: v.block().values for k, v in base.additional_outputs.items()}
    one = MetatomicCalculator(symmetrize_metatomic(pet, GRID, chunk_size=1))
    assert abs(one.get_potential_energy(atoms.copy()) - energy) < 1e-12
    assert abs(base.compute_energy(atoms)["energy"] - energy) < 1e-12  # no gradients
    with torch.no_grad():
        out = base.run_model(atoms, std_outputs(atoms))
    for name, values in out.items():
        assert torch.allclose(values.block().values, spreads[name], rtol=0, atol=1e-12)
    meta = load_atomistic_model(wrapped).metadata()
    assert json.loads(meta.extra["symplug::grid"]) == json.loads(json.dumps(GRID.describe()))
    assert "24" in meta.description


def test_bad_input(files, tmp_path):
    pet, wrapped = files
    with pytest.raises(symplug.SymplugError, match="symplug.Grid"):
        symmetrize_metatomic(pet, np.eye(3)[None])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(symplug.SymplugError, match="chunk_size"):
            symmetrize_metatomic(pet, GRID, chunk_size=bad)
    with pytest.raises(symplug.SymplugError, match="no metatomic model file"):
        symmetrize_metatomic(tmp_path / "missing.pt", GRID)
    with pytest.raises(symplug.SymplugError, match="AtomisticModel"):
        symmetrize_metatomic(torch.nn.Linear(3, 1), GRID)
    calc = MetatomicCalculator(wrapped)
    atoms = structure("cluster")
    refused = (ValueError, torch.jit.Error)  # the saved model raises TorchScript's Error
    with pytest.raises(refused, match="per structure"):
        calc.get_potential_energies(atoms)  # per-atom energies are refused
    with pytest.raises(refused, match="selected_atoms"):
        from metatensor.torch import Labels

        calc.run_model(atoms, {"energy": ModelOutput(sample_kind="system")},
                       selected_atoms=Labels(["system", "atom"], torch.tensor([[0, 1]])))

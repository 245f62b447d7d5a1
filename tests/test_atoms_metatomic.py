"""metatomic models: loaded from their file, copies evaluated in batches, direct
(non-conservative) forces under both output names, analytic A."""

import math

import numpy as np
import pytest
import torch

import symplug
import symplug_atoms
from symplug_atoms.metatomic import MetatomicModel, is_metatomic_file

import metatomic_models as mm


@pytest.fixture(scope="module", params=["non_conservative_force", "non_conservative_forces"])
def model_file(request, tmp_path_factory):
    return mm.export(tmp_path_factory.mktemp("mta") / "planted.pt", request.param)


def pair_vectors(atoms):
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijD", atoms, mm.CUTOFF)
    return d[i < j]


def test_direct_forces_score_the_analytic_value(model_file, cluster):
    assert is_metatomic_file(model_file)
    model = symplug_atoms.load_model(model_file)
    assert isinstance(model, MetatomicModel) and model.direct_forces
    result = symplug_atoms.diagnose(model, [cluster], degree=2, progress=False)
    w = np.asarray(mm.W)
    w2 = float(w @ w)
    d = pair_vectors(cluster)
    m = d.T @ d
    m0 = m - np.trace(m) / 3 * np.eye(3)
    a_energy = mm.EPS * w2 * math.sqrt(2 * np.trace(m0 @ m0) / 15)  # eV
    n = len(cluster)
    energy = result["outputs"]["energy"]["equivariance_rmse"] * n / 1000
    assert abs(energy - a_energy) < 1e-9 * a_energy
    rel = cluster.positions - cluster.positions.mean(0)
    # the planted term (degree 2, even under inversion) and the lab-fixed c (g^T c,
    # odd) are orthogonal over O(3); g^T c has variance |c|^2 / 3 per component
    c2 = float(np.dot(mm.NET, mm.NET))
    a_forces = math.sqrt(2 / 9 * mm.EPS ** 2 * w2 ** 2 * float((rel * rel).sum()) / (3 * n)
                         + c2 / 3)
    forces = result["outputs"]["forces"]["equivariance_rmse"] / 1000
    assert abs(forces - a_forces) < 1e-9 * a_forces


def test_declared_output_through_run_model(model_file, cluster):
    c2 = float(np.dot(mm.NET_DIPOLE, mm.NET_DIPOLE))
    result = symplug_atoms.diagnose(MetatomicModel(model_file), [cluster], degree=2,
                                    declare={mm.DIPOLE: "1o"}, progress=False)
    assert set(result["outputs"]) == {"energy", "forces", mm.DIPOLE}
    dipole = result["outputs"][mm.DIPOLE]
    assert dipole["units"] == "model units"
    assert abs(dipole["equivariance_rmse"] - math.sqrt(c2 / 3)) < 1e-12
    with pytest.raises(symplug.SymplugError, match="is Cartesian .components xyz.*not '1,.1'"):
        symplug_atoms.diagnose(MetatomicModel(model_file), [cluster], degree=1,
                               declare={mm.DIPOLE: "1,+1"}, progress=False, skip_failures=False)
    with pytest.raises(symplug.SymplugError, match="cannot compute output 'energies'"):
        # its energy output is per structure only
        symplug_atoms.diagnose(MetatomicModel(model_file), [cluster], degree=1,
                               outputs=["energies"], progress=False)


def test_a_calculator_instance_is_batched_like_the_file(model_file, cluster):
    from metatomic_ase import MetatomicCalculator

    from symplug_atoms.models import calculator_model

    copies = symplug_atoms.rotated_copies(cluster, symplug.haar("O3", 3, seed=2))
    # a calculator is diagnosed as it was built: energy gradient, or direct forces
    plain = calculator_model(MetatomicCalculator(model_file))
    direct = calculator_model(MetatomicCalculator(model_file, non_conservative="forces"))
    assert isinstance(plain, MetatomicModel) and not plain.direct_forces
    assert isinstance(direct, MetatomicModel) and direct.direct_forces
    for model, forces in ((plain, "conservative"), (direct, "direct")):
        ours, theirs = model(copies), MetatomicModel(model_file, forces=forces)(copies)
        for name in ("energy", "forces"):
            assert torch.equal(ours[name], theirs[name])
    # file-based models travel to other processes (dask workers) as their file
    import pickle

    model, _ = MetatomicModel(model_file).for_outputs({"energy": "0e", mm.DIPOLE: "1o"})
    again = pickle.loads(pickle.dumps(model))
    assert again.properties == ["energy", mm.DIPOLE] and again.reps == model.reps
    assert all(torch.equal(again(copies)[k], v) for k, v in model(copies).items())
    with pytest.raises(symplug.SymplugError, match="cannot be sent to other processes"):
        pickle.dumps(plain)
    # ... but it is diagnosed in this process like the file (for_outputs copies it)
    ours = symplug_atoms.diagnose(plain, [cluster], degree=1, progress=False)
    theirs = symplug_atoms.diagnose(MetatomicModel(model_file, forces="conservative"), [cluster],
                                    degree=1,
                                    progress=False)
    for name in ("energy", "forces"):
        assert ours["outputs"][name]["equivariance_rmse"] == \
            theirs["outputs"][name]["equivariance_rmse"]


def test_direct_forces_with_stress_on_a_cell(model_file):
    from ase.build import bulk

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    cell.rattle(0.02, seed=4)
    copies = symplug_atoms.rotated_copies(cell, symplug.haar("O3", 2, seed=5))
    direct = MetatomicModel(model_file)(copies)
    conservative = MetatomicModel(model_file, forces="conservative")(copies)
    # stress is the strain derivative of the energy either way; forces differ
    assert direct["stress"].shape == (2, 3, 3)
    assert torch.allclose(direct["stress"], conservative["stress"], rtol=0, atol=1e-12)
    assert torch.allclose(direct["energy"], conservative["energy"], rtol=0, atol=1e-12)
    assert float((direct["forces"] - conservative["forces"]).abs().max()) > 1.0  # meV/A
    assert torch.allclose(direct["forces"].mean(1) / 1000,
                          torch.tensor(mm.NET, dtype=torch.float64).expand(2, 3), atol=1e-12)


def test_md_runs_the_diagnosed_forces(model_file, cluster):
    from symplug_atoms.md import as_calculator

    direct = MetatomicModel(model_file)
    out = direct(symplug_atoms.rotated_copies(cluster, torch.eye(3, dtype=torch.float64)[None]))
    atoms = cluster.copy()
    atoms.calc = as_calculator(direct)
    forces = out["forces"][0].numpy() / 1000  # eV/A, net force included
    # metatomic-ase's MD forces: the direct forces less their mean
    assert np.abs(atoms.get_forces() - (forces - forces.mean(0))).max() < 1e-12
    atoms.calc = as_calculator(MetatomicModel(model_file, forces="conservative"))
    conservative = MetatomicModel(model_file, forces="conservative")(
        symplug_atoms.rotated_copies(cluster, torch.eye(3, dtype=torch.float64)[None]))
    assert np.abs(atoms.get_forces() - conservative["forces"][0].numpy() / 1000).max() < 1e-12


def test_conservative_forces_of_the_same_model(model_file, cluster):
    model = MetatomicModel(model_file, forces="conservative")
    assert not model.direct_forces
    copies = symplug_atoms.rotated_copies(cluster, symplug.haar("O3", 3, seed=1))
    out = model(copies)
    direct = MetatomicModel(model_file)(copies)
    assert out["forces"].shape == direct["forces"].shape == (3, len(cluster), 3)
    assert not np.allclose(out["forces"].numpy(), direct["forces"].numpy())
    assert np.allclose(out["energy"].numpy(), direct["energy"].numpy(), atol=1e-12)


def test_bad_metatomic_requests(tmp_path, cluster):
    with pytest.raises(symplug.SymplugError, match="no such metatomic model file"):
        MetatomicModel(tmp_path / "missing.pt")
    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert not is_metatomic_file(bad)


def _symmetrized_both(model_file, atoms, chunk_size: int):
    """metatomic-ase's SymmetrizedCalculator (l_max 2, all copies in one batch) and ours
    (chunks of ``chunk_size``) on the same rotations, both after computing ``atoms``."""
    import torch
    from ase.calculators.calculator import all_changes
    from metatomic_ase import MetatomicCalculator
    from metatomic_ase import SymmetrizedCalculator as MetatomicSymmetrized

    theirs = MetatomicSymmetrized(MetatomicCalculator(model_file), l_max=2,
                                  store_rotational_std=True)
    grid = symplug.Grid("O3", "lebedev", 1, 2, torch.from_numpy(theirs.quadrature_rotations),
                        torch.from_numpy(theirs.quadrature_weights
                                         / theirs.quadrature_weights.sum()))
    ours = symplug_atoms.SymmetrizedCalculator(MetatomicCalculator(model_file), grid=grid,
                                               chunk_size=chunk_size)
    theirs.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    ours.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    return theirs, ours


def test_chunked_symmetrisation_matches_metatomic_ase(model_file, cluster):
    """Our chunked SymmetrizedCalculator on a metatomic model equals metatomic-ase's
    (all copies in one batch) on the same rotations."""
    theirs, ours = _symmetrized_both(model_file, cluster, chunk_size=7)
    assert abs(theirs.results["energy"] - ours.results["energy"]) < 1e-9
    assert np.abs(theirs.results["forces"] - ours.results["forces"]).max() < 1e-9
    assert np.abs(theirs.results["forces_rot_std"] - ours.results["forces_rot_std"]).max() < 1e-9


@pytest.fixture(scope="module")
def pet_file(tmp_path_factory):
    from symplug_atoms.export import export_metatomic

    return str(export_metatomic(symplug_atoms.load_model("pet-cu"),
                                tmp_path_factory.mktemp("pet") / "pet-cu.pt"))


def test_exported_pet_matches_the_torch_model(pet_file):
    """pet-cu exported as a metatomic model: the same energy, forces and stress as the
    PyTorch model through metatomic-ase (its own neighbour lists, forces by autograd)."""
    import ase.io
    from metatomic_ase import MetatomicCalculator
    from symplug_atoms.torch_model import SHIPPED_DIR, evaluate_copies

    model = symplug_atoms.load_model("pet-cu")
    assert is_metatomic_file(pet_file)
    calc = MetatomicCalculator(pet_file)
    frames = ase.io.read(SHIPPED_DIR / "pet_cu_test.extxyz", ":")
    picked = [frames[0]] + [a for a in frames if a.pbc.all()][:2] + [max(frames, key=len)]
    assert any(a.pbc.all() for a in picked) and any(not a.pbc.any() for a in picked)
    for atoms in picked:
        ref = evaluate_copies(model, atoms, np.eye(3)[None])
        a = atoms.copy()
        a.calc = calc
        assert abs(a.get_potential_energy() - ref["energy"][0]) < 1e-10
        assert np.abs(a.get_forces() - ref["forces"][0]).max() < 1e-8
        if atoms.pbc.all():
            assert np.abs(a.get_stress(voigt=False) - ref["stress"][0]).max() < 1e-10
    # per-atom energies (meV) through compute_energy(per_atom=True), for rotated copies
    exported, names = symplug_atoms.load_model(pet_file).for_outputs({"energy": "0e",
                                                                       "energies": "0e"})
    assert names == ["energy", "energies"]
    copies = symplug_atoms.rotated_copies(picked[1], symplug.haar("O3", 2, seed=3))
    torch_out, metatomic_out = model(copies), exported(copies)
    assert np.abs(metatomic_out["energies"].numpy() - torch_out["energies"].detach().numpy()).max() < 1e-7
    assert np.abs(metatomic_out["energy"].numpy() - torch_out["energy"].detach().numpy()).max() < 1e-10


def test_exported_pet_symmetrised_like_metatomic_ase(pet_file, cluster):
    """symplug's chunked SymmetrizedCalculator and metatomic-ase's on the exported pet-cu,
    same rotations: the same average and rotational spread (energy_rot_std, forces_rot_std)."""
    theirs, ours = _symmetrized_both(pet_file, cluster, chunk_size=8)
    assert theirs.results["energy_rot_std"] > 1e-6  # the PET is not invariant
    assert abs(theirs.results["energy"] - ours.results["energy"]) < 1e-10
    assert abs(theirs.results["energy_rot_std"] - ours.results["energy_rot_std"]) < 1e-10
    assert np.abs(theirs.results["forces"] - ours.results["forces"]).max() < 1e-10
    assert np.abs(theirs.results["forces_rot_std"] - ours.results["forces_rot_std"]).max() < 1e-10


def test_export_refuses_other_architectures(tmp_path):
    from symplug_atoms.export import export_metatomic
    from symplug_atoms.pet import PointEdgeTransformer

    for kwargs in ({"sh_lmax": 1}, {"forces": "pair"}):
        with pytest.raises(symplug.SymplugError, match="only the default"):
            export_metatomic(PointEdgeTransformer(**kwargs), tmp_path / "x.pt")
    with pytest.raises(symplug.SymplugError, match="only a PointEdgeTransformer"):
        export_metatomic(symplug_atoms.load_model("emt"), tmp_path / "x.pt")


def test_blocks_are_flattened_in_key_order_properties_major(model_file):
    """Two spherical blocks (l = 0 and 1) with 2 properties each, per structure:
    declared as 2x0,+1 + 2x1,+1, the values are [p0, p1 | p0 (m=-1..1), p1 (m=-1..1)]."""
    from metatensor.torch import Labels, TensorBlock, TensorMap

    model = MetatomicModel(model_file)
    model.reps = {"t": "2x0,+1+2x1,+1"}
    values = [torch.arange(2 * 1 * 2, dtype=torch.float64).reshape(2, 1, 2),
              100 + torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)]
    blocks = [TensorBlock(values=v, samples=Labels("system", torch.tensor([[1], [0]])),
                          components=[Labels("o3_mu", torch.arange(-l, l + 1).reshape(-1, 1))],
                          properties=Labels("n", torch.tensor([[0], [1]])))
              for l, v in enumerate(values)]
    tmap = TensorMap(Labels(["o3_lambda", "o3_sigma"], torch.tensor([[0, 1], [1, 1]])), blocks)
    out = model._values("t", tmap, n_copies=2, n_atoms=5)
    assert out.shape == (2, 8)
    for sample, system in enumerate([1, 0]):  # samples are placed by their system index
        expected = np.concatenate([values[0][sample].T.reshape(-1),
                                   values[1][sample].T.reshape(-1)])
        assert np.array_equal(out[system], expected)
    model.reps = {"t": "2x0e+2x1o"}
    with pytest.raises(symplug.SymplugError, match="spherical basis .components o3_mu."):
        model._values("t", tmap, n_copies=2, n_atoms=5)
    model.reps = {"t": "2x0,+1+2x1,+1"}
    with pytest.raises(symplug.SymplugError, match="does not hold a value for every copy"):
        model._values("t", tmap, n_copies=3, n_atoms=5)


def test_symmetrized_stress_is_symmetrised_as_ase_does(pet_file):
    """The model's per-copy stress is not symmetric; ASE's Voigt form takes the mean of
    the off-diagonal pairs, so ours must too: the same as metatomic-ase's on the same
    rotations, to round-off."""
    import torch
    from ase.build import bulk
    from ase.calculators.calculator import all_changes
    from metatomic_ase import MetatomicCalculator
    from metatomic_ase import SymmetrizedCalculator as MetatomicSymmetrized

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    theirs = MetatomicSymmetrized(MetatomicCalculator(pet_file), l_max=1)
    grid = symplug.Grid("O3", "lebedev", 1, 2, torch.from_numpy(theirs.quadrature_rotations),
                        torch.from_numpy(theirs.quadrature_weights
                                         / theirs.quadrature_weights.sum()))
    ours = symplug_atoms.SymmetrizedCalculator(MetatomicCalculator(pet_file), grid=grid)
    props = ["energy", "forces", "stress"]
    theirs.calculate(atoms.copy(), props, all_changes)
    ours.calculate(atoms.copy(), props, all_changes)
    full = ours._grid_average(atoms)["stress"]  # the averaged 3x3 stress
    assert np.abs(full - full.T).max() > 1e-6  # really not symmetric
    theirs_stress = np.asarray(theirs.results["stress"])
    if theirs_stress.shape == (3, 3):
        from ase.stress import full_3x3_to_voigt_6_stress
        theirs_stress = full_3x3_to_voigt_6_stress(theirs_stress)
    assert np.abs(ours.results["stress"] - theirs_stress).max() < 1e-12

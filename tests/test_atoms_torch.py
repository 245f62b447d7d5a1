"""Torch models in the atoms domain: the graph-rotation path, autograd forces and
stress, hidden layers, and the shipped reference model."""

import ase.cluster
import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

import symplug
import symplug_atoms
from symplug_atoms.action import RotatedCopies, transform
from symplug_atoms.pet import PointEdgeTransformer
from symplug_atoms.torch_model import SHIPPED, SHIPPED_DIR, TorchAtomsModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TorchAtomsModel(PointEdgeTransformer(d=16, heads=2, cutoff=4.0), cutoff=4.0)


@pytest.fixture(scope="module")
def cell():
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.mark.parametrize("name", ["cluster", "cell"])
def test_rotating_the_graph_equals_rebuilding_it(model, name, request):
    """Copies made by rotating positions, cell and shifts on one graph give the same
    outputs as building the transformed structure from scratch."""
    atoms = request.getfixturevalue(name)
    mats = symplug.haar("O3", 3, seed=2)
    batched = model(RotatedCopies(atoms, mats))
    for q, g in enumerate(mats):
        rebuilt = model(RotatedCopies(transform(atoms, g.numpy()), torch.eye(3)[None].double()))
        for key in batched:
            assert torch.allclose(batched[key][q], rebuilt[key][0], atol=1e-9), key


def test_forces_and_stress_are_derivatives(model, cell):
    out = model(RotatedCopies(cell, torch.eye(3, dtype=torch.float64)[None]))
    h = 1e-5

    def energy(atoms):
        e = model(RotatedCopies(atoms, torch.eye(3, dtype=torch.float64)[None]))["energy"]
        return float(e.detach()) * len(atoms) / 1000  # eV

    moved = [cell.copy() for _ in range(2)]
    moved[0].positions[1, 2] += h
    moved[1].positions[1, 2] -= h
    fd_force = -(energy(moved[0]) - energy(moved[1])) / (2 * h) * 1000
    assert abs(float(out["forces"][0, 1, 2]) - fd_force) < 1e-5
    strained = []
    for sign in (1, -1):
        eps = np.eye(3)
        eps[0, 1] = eps[1, 0] = sign * h / 2
        s = cell.copy()
        s.set_cell(cell.cell.array @ eps, scale_atoms=True)
        strained.append(energy(s))
    fd_stress = (strained[0] - strained[1]) / (2 * h) / cell.get_volume() / ase.units.GPa
    assert abs(float(out["stress"][0, 0, 1]) - fd_stress) < 1e-5
    # atomic energies (meV) sum to the energy (meV/atom times N)
    assert out["energies"].shape == (1, len(cell))
    assert abs(float(out["energies"].detach().sum())
               - float(out["energy"][0, 0].detach()) * len(cell)) < 1e-9


def test_a_bare_module_with_a_cutoff_loads_as_a_torch_model(cluster):
    model = symplug_atoms.load_model("atoms_models:small_pet", trusted=True)
    assert isinstance(model, symplug_atoms.TorchAtomsModel) and model.cutoff == 3.0
    out = model(RotatedCopies(cluster, symplug.haar("O3", 2, seed=0)))
    assert out["forces"].shape == (2, len(cluster), 3)
    with pytest.raises(symplug.SymplugError, match="without a numeric 'cutoff'"):
        symplug_atoms.load_model("torch.nn:Identity", trusted=True)


def test_layers_captured_and_unconstrained(model, cluster):
    result = symplug_atoms.diagnose(model, [cluster], degree=2, layers=["embedding", "layers.0",
                                                                        "heads.1"],
                                    progress=False, check_convergence=False)
    assert result["outputs"]["energy"]["equivariance_rmse"] > 1e-3  # untrained: not invariant
    for name in ("embedding", "layers.0", "heads.1"):
        layer = result["layers"][name]
        assert 0 < layer["invariant_fraction"] < 1
        assert abs(sum(layer["spectrum"].values()) + layer["truncation"] - 1) < 1e-12
    lie = symplug.lie_derivatives(model, cluster, symplug_atoms.rotated_copies,
                                  outputs={"energy": "0e", "forces": "1o"})
    assert lie["energy"]["Lz"].method == "central" and lie["energy"]["Lz"].rms > 0


def test_shipped_reference_model_reproduces_its_test_errors():
    """The shipped weights give back the test errors stored with them (same rotations)."""
    from symplug_atoms.train import Item, errors

    path = SHIPPED_DIR / SHIPPED["pet-cu"]
    saved = torch.load(path, weights_only=True)
    loaded = symplug_atoms.load_model("pet-cu")
    assert isinstance(loaded, TorchAtomsModel) and loaded.cutoff == saved["config"]["cutoff"]
    module = PointEdgeTransformer(**{k: tuple(v) if k == "species" else v
                                     for k, v in saved["config"].items()})
    module.load_state_dict(saved["state_dict"])
    test_frames = ase.io.read(path.with_name(path.stem + "_test.extxyz"), index=":")
    assert len(test_frames) == saved["training"]["n_test"]
    found = errors(module.float().eval(), [Item(f, module.cutoff) for f in test_frames])
    for key, value in saved["test_errors"].items():
        assert abs(found[key] - value) < 1e-3 * value + 1e-3, key
    with pytest.raises(symplug.SymplugError, match="no such model file"):
        symplug_atoms.load_reference("/nonexistent/model.pt")


def test_a_model_in_another_dtype_leaves_the_callers_module_alone():
    """Building a TorchAtomsModel in a dtype other than the module's converts a copy:
    the caller's module keeps its dtype and parameters, and a float64 model built on
    the same module before and after still evaluates in float64 (it did not while the
    float32 model converted the shared module in place)."""
    torch.manual_seed(0)
    module = PointEdgeTransformer(d=8, heads=2, cutoff=4.0).double()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    wide = TorchAtomsModel(module, cutoff=4.0)  # float64: the module itself, no copy
    narrow = TorchAtomsModel(module, cutoff=4.0, dtype=torch.float32)
    atoms = ase.cluster.Icosahedron("Cu", 2)
    copies = RotatedCopies(atoms, torch.eye(3, dtype=torch.float64)[None])
    out64 = wide(copies)  # failed (float64 inputs, float32 weights) before the fix
    assert all(p.dtype == torch.float64 for p in module.parameters())
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())
    assert wide.module is module and narrow.module is not module
    assert all(p.dtype == torch.float32 for p in narrow.module.parameters())
    assert out64["forces"].dtype == torch.float64
    out32 = narrow(copies)
    assert out32["forces"].dtype == torch.float32
    assert torch.allclose(out32["energy"].double(), out64["energy"], rtol=1e-4, atol=1e-3)
    again = TorchAtomsModel(module, cutoff=4.0)(copies)
    assert torch.equal(again["energy"], out64["energy"])
    # the converted copy holds its own parameters: training it leaves the caller's alone
    with torch.no_grad():
        next(narrow.module.parameters()).add_(1.0)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())


def test_in_dtype_converts_floating_tensors_of_a_copy_and_keeps_ties():
    from symplug_atoms.torch_model import in_dtype

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)
            self.b = torch.nn.Linear(3, 3)
            self.b.weight = self.a.weight  # one parameter in two places
            self.register_buffer("count", torch.tensor([3, 4]))
            self.register_buffer("scale", torch.tensor(0.5))
            self.a.bias.requires_grad_(False)

    module = Tied().float()  # the tests run with float64 as the default dtype
    same = in_dtype(module, torch.float32)
    assert same is module  # nothing to convert: shared, no copy
    wide = in_dtype(module, torch.float64)
    assert wide is not module and wide.a.weight is wide.b.weight
    assert wide.a.weight.dtype == wide.scale.dtype == torch.float64
    assert wide.count.dtype == torch.int64 and not wide.a.bias.requires_grad
    assert module.a.weight.dtype == module.scale.dtype == torch.float32
    assert torch.equal(wide.a.weight.float(), module.a.weight)
    assert wide.count.data_ptr() != module.count.data_ptr()  # a copy, not a view

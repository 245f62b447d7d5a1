"""symplug against metatomic's ``SymmetrizedModel`` on the same model and quadrature.

The model (built here, TorchScript-able) sums over the full neighbour list of pairs
(i, j, d = r_j - r_i + images):

    E = sum_pairs 0.1 (|d| - 2.55)^2 + EPS2 (d . w)^2 + EPS3 q_i (d . w)^3
        + EPS_CHIRAL sum_{pairs p, p' of the same atom i} q_j (d_p x d_p') . w,

q_i = +-1 for even/odd i. It is not rotation invariant: the orbit of the energy has
power in (l, +1) for l = 0..3 and, from the chiral term, in (1, -1); the forces in
(l, +1) for l = 0..2. ``non_conservative_force`` is the analytic -dE/dr: a per-atom
output that ``SymmetrizedModel`` averages and projects like any other (it takes no
gradients of its own outputs). symplug diagnoses the conservative forces, autograd of
the energy through metatomic-ase, so the comparison also checks that they are the same
forces.

Both tools run on a rattled Cu13 cluster and a rattled 4-atom fcc cell in float64,
symplug on the quadrature of the ``SymmetrizedModel`` (:func:`metatomic_grid`): A^2/d
of energy and forces and every B sector agree to 1e-12 relative (sectors that vanish
exactly: to 1e-12 of the structure's total power). symplug reports meV/atom and meV/A,
metatomic eV and eV/A.
"""

from typing import Dict, List, Optional

import ase.build
import numpy as np
import pytest
import torch
import vesin.metatomic
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput,
                             NeighborListOptions, System, systems_to_torch)
from metatomic.torch.o3 import SymmetrizedModel

import symplug_atoms
from symplug import symmetry_tensormaps
from symplug.spectra import sector_key, sectors
from symplug_atoms.metatomic import MetatomicModel
from symplug_atoms.metatomic_symmetry import (from_metatomic, metatomic_grid, to_core,
                                              to_metatomic)

CUTOFF = 3.0
W = [0.3, -0.5, 0.8]
EPS2, EPS3, EPS_CHIRAL = 0.05, 0.02, 0.02
LMAX = 3  # max_angular_momentum_character; the grid integrates band 2 LMAX exactly
FORCE = "non_conservative_force"
VARIANCE, PROJECTION = symmetry_tensormaps.VARIANCE, symmetry_tensormaps.CHARACTER_PROJECTION


class AnisotropicPairModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.tensor(W, dtype=torch.float64))
        self.eps2, self.eps3, self.eps_chiral = EPS2, EPS3, EPS_CHIRAL
        self.nl = NeighborListOptions(cutoff=CUTOFF, full_list=True, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.nl]

    def _pairs(self, system: System):
        nl = system.get_neighbor_list(self.nl)
        i = nl.samples.column("first_atom").to(torch.long)
        j = nl.samples.column("second_atom").to(torch.long)
        shifts = torch.stack([nl.samples.column("cell_shift_a"), nl.samples.column("cell_shift_b"),
                              nl.samples.column("cell_shift_c")], dim=1)
        d = system.positions[j] - system.positions[i] + shifts.to(torch.float64) @ system.cell
        q = 1.0 - 2.0 * (i % 2).to(torch.float64)
        return i, j, d, q

    def _chiral(self, i, j, d):
        """(pairs sharing their first atom, q_j of the first pair, d x w)"""
        same = (i[:, None] == i[None, :]).to(torch.float64)
        q_j = 1.0 - 2.0 * (j % 2).to(torch.float64)
        return same, q_j, torch.linalg.cross(d, self.w.expand(d.shape[0], 3), dim=1)

    def energy(self, system: System) -> torch.Tensor:
        i, j, d, q = self._pairs(system)
        p = d @ self.w
        r = torch.linalg.vector_norm(d, dim=1)
        same, q_j, d_x_w = self._chiral(i, j, d)
        chiral = (same * q_j[:, None] * (d @ d_x_w.T)).sum()  # d1 . (d2 x w) = (d1 x d2) . w
        pairs = (0.1 * (r - 2.55) ** 2 + self.eps2 * p * p + self.eps3 * q * p * p * p).sum()
        return pairs + self.eps_chiral * chiral

    def forces(self, system: System) -> torch.Tensor:
        i, j, d, q = self._pairs(system)
        p = d @ self.w
        r = torch.linalg.vector_norm(d, dim=1)
        de_dd = (0.2 * (r - 2.55) / r)[:, None] * d \
            + (2 * self.eps2 * p + 3 * self.eps3 * q * p * p)[:, None] * self.w[None, :]
        same, q_j, d_x_w = self._chiral(i, j, d)
        de_dd = de_dd + self.eps_chiral * (q_j[:, None] * (same @ d_x_w)
                                           - same.T @ (q_j[:, None] * d_x_w))
        forces = torch.zeros_like(system.positions)
        forces.index_add_(0, i, de_dd)  # d depends on r_j - r_i
        forces.index_add_(0, j, -de_dd)
        return forces

    def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:
        keys = Labels("_", torch.tensor([[0]]))
        result: Dict[str, TensorMap] = {}
        if "energy" in outputs:
            energy = torch.stack([self.energy(s) for s in systems]).reshape(-1, 1)
            samples = Labels("system", torch.arange(len(systems)).reshape(-1, 1))
            result["energy"] = TensorMap(keys, [TensorBlock(
                energy, samples, [], Labels("energy", torch.tensor([[0]])))])
        if "non_conservative_force" in outputs:
            forces: List[torch.Tensor] = []
            rows: List[torch.Tensor] = []
            for k, system in enumerate(systems):
                forces.append(self.forces(system))
                n = len(system)
                rows.append(torch.stack([torch.full((n,), k), torch.arange(n)], dim=1))
            result["non_conservative_force"] = TensorMap(keys, [TensorBlock(
                torch.cat(forces).reshape(-1, 3, 1), Labels(["system", "atom"], torch.cat(rows)),
                [Labels("xyz", torch.tensor([[0], [1], [2]]))],
                Labels("non_conservative_force", torch.tensor([[0]])))])
        return result


@pytest.fixture(scope="module")
def frames(cluster):
    cell = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    cell.rattle(0.05, seed=3)
    return [cluster, cell]


@pytest.fixture(scope="module")
def runs(frames, tmp_path_factory):
    """metatomic's outputs (averages, variances, projections), its grid, symplug's result."""
    module = AnisotropicPairModel().eval()
    symmetrized = SymmetrizedModel(module, max_angular_momentum_target=1,
                                   max_angular_momentum_character=LMAX)
    systems = systems_to_torch(frames, dtype=torch.float64)
    for calculator in vesin.metatomic.neighbor_lists_for_model("Angstrom", module,
                                                               model_length_unit="Angstrom"):
        calculator.add_neighbor_list(systems)
    kinds = {"energy": "system", FORCE: "atom"}
    requests = {prefix + name: ModelOutput(sample_kind=kind)
                for name, kind in kinds.items() for prefix in ("", VARIANCE, PROJECTION)}
    outputs = symmetrized(systems, requests, None)

    grid = metatomic_grid(symmetrized)
    capabilities = ModelCapabilities(
        outputs={"energy": ModelOutput(unit="eV", sample_kind="system")},
        atomic_types=[29], interaction_range=CUTOFF, length_unit="Angstrom",
        supported_devices=["cpu"], dtype="float64")
    path = tmp_path_factory.mktemp("metatomic") / "anisotropic.pt"
    AtomisticModel(module, ModelMetadata(), capabilities).save(str(path))
    result = symplug_atoms.diagnose(MetatomicModel(path, forces="conservative"), frames,
                                    outputs=["energy", "forces"], grid=grid, lmax=LMAX,
                                    check_convergence=False, progress=False,
                                    skip_failures=False)
    return outputs, grid, result


def per_system(block, n_systems: int) -> np.ndarray:
    """Sum of each system's rows, components and properties of a metatensor-torch block."""
    values = block.values.detach().reshape(len(block.samples), -1).sum(1).numpy()
    return np.bincount(block.samples.column("system").numpy(), values, n_systems)


def scale(frames) -> dict:
    """(symplug unit / metatomic unit)^2 per output and structure."""
    return {"energy": [(1000.0 / len(f)) ** 2 for f in frames], "forces": [1e6] * len(frames)}


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


def test_grid_is_the_symmetrized_models(runs):
    outputs, grid, result = runs
    assert grid.size == 2 * 182 and result["grid"]["size"] == grid.size  # Lebedev 7 x 7 gamma
    assert abs(float(grid.weights.sum()) - 1) < 1e-15
    det = torch.linalg.det(grid.matrices)
    assert bool((det[:182] > 0).all()) and bool((det[182:] < 0).all())
    assert grid.moment_degree == LMAX


def test_variance_matches_symplugs_a(runs, frames):
    outputs, _, result = runs
    n_atoms = np.array([len(f) for f in frames])
    for name, source in (("energy", "energy"), ("forces", FORCE)):
        variance = outputs[VARIANCE + source]
        assert len(variance.keys) == 1
        mt = per_system(variance.block(0), len(frames))
        if name == "forces":
            mt = mt / n_atoms  # per-atom A^2/d -> per structure
        ours = [row["variance"] / scale(frames)[name][row["index"]]
                for row in result["outputs"][name]["per_sample"]]
        for a, b in zip(ours, mt):
            assert b > 1e-6 and relative(a, b) < 1e-12, (name, a, b)


def test_every_character_projection_sector_matches_symplugs_b(runs, frames):
    outputs, _, result = runs
    for name, source in (("energy", "energy"), ("forces", FORCE)):
        projection = outputs[PROJECTION + source]
        assert projection.keys.names == ["o3_lambda", "o3_sigma", "chi_lambda", "chi_sigma"]
        ours = result["outputs"][name]["per_sample_spectrum"]
        total = [sum(row["power"].values()) / scale(frames)[name][row["index"]] for row in ours]
        significant = set()
        for l, sigma in sectors("O3", LMAX):
            mt = per_system(projection.block({"chi_lambda": l, "chi_sigma": sigma}), len(frames))
            for row, b in zip(ours, mt):
                a = row["power"][sector_key((l, sigma))] / scale(frames)[name][row["index"]]
                floor = 1e-12 * total[row["index"]]
                assert abs(a - b) <= max(1e-12 * max(abs(a), abs(b)), floor), (name, l, sigma)
                if b > floor:
                    significant.add((l, sigma))
        expected = {(0, 1), (1, 1), (2, 1)} | ({(1, -1), (3, 1)} if name == "energy" else set())
        assert significant == expected, name


def test_round_trip_through_metatomic_tensormaps(runs, frames, tmp_path):
    outputs, _, result = runs
    written = to_metatomic(result, frames)
    assert set(written) == {VARIANCE + "energy", PROJECTION + "energy",
                            VARIANCE + FORCE, PROJECTION + FORCE}
    # the energy maps have metatomic's exact metadata; the forces maps its keys and
    # properties, one sample per structure (symplug keeps per-structure totals)
    for request, tensor in written.items():
        theirs = to_core(outputs[request])
        assert tensor.keys == theirs.keys
        for ours, reference in zip(tensor.blocks(), theirs.blocks()):
            assert ours.properties == reference.properties
            if request.endswith("energy"):
                assert ours.samples == reference.samples
                assert ours.components == reference.components
            else:
                assert ours.samples.names == ["system"]
    assert written[VARIANCE + "energy"].info()["unit"] == "(eV)^2"

    symmetry_tensormaps.save(written, tmp_path)
    back = from_metatomic(symmetry_tensormaps.load(tmp_path), frames)["outputs"]
    for name in ("energy", "forces"):
        entry, again = result["outputs"][name], back[name]
        assert relative(again["equivariance_rmse"], entry["equivariance_rmse"]) < 1e-14
        for a, b in zip(again["per_sample"], entry["per_sample"]):
            assert a["index"] == b["index"] and relative(a["variance"], b["variance"]) < 1e-14
        for a, b in zip(again["per_sample_spectrum"], entry["per_sample_spectrum"]):
            for key, power in b["power"].items():
                assert abs(a["power"][key] - power) <= 1e-14 * max(abs(power), 1e-300)
        for key, power in entry["power"].items():
            assert abs(again["power"][key] - power) <= 1e-14 * sum(entry["power"].values())


def test_metatomic_outputs_read_as_a_symplug_result(runs, frames):
    outputs, _, result = runs
    read = from_metatomic(outputs, frames)["outputs"]
    assert set(read) == {"energy", "forces"}
    for name in ("energy", "forces"):
        entry, theirs = result["outputs"][name], read[name]
        assert theirs["n_samples"] == entry["n_samples"] == len(frames)
        assert relative(theirs["equivariance_rmse"], entry["equivariance_rmse"]) < 1e-12
        assert relative(theirs["relative_error"], entry["relative_error"]) < 1e-12
        assert relative(theirs["norm2"], entry["norm2"]) < 1e-12
        for key, fraction in entry["spectrum"].items():
            assert abs(theirs["spectrum"][key] - fraction) < 1e-12
        assert abs(theirs["truncation"] - entry["truncation"]) < 1e-12
        for a, b in zip(theirs["per_sample_spectrum"], entry["per_sample_spectrum"]):
            for key, fraction in b["spectrum"].items():
                assert abs(a["spectrum"][key] - fraction) < 1e-12

"""The orbit engine and data-set diagnosis on real models with known answers."""

import math
import re

import pytest
import torch

import symplug
from symplug.testing import rotate_points

from helpers import CoordinateMLP, DistanceModel, load_example

example = load_example("e3nn_equivariance")


@pytest.fixture(scope="module")
def clouds():
    return example.make_clouds(3, points=5, seed=1)


def test_e3nn_network_is_equivariant_to_1e10(clouds):
    net = example.E3nnPointNet()
    result = symplug.diagnose(net, clouds, example.point_domain(), degree=2,
                              layers=["conv", "mix"], progress=False)
    for name, out in result["outputs"].items():
        assert out["equivariance_rmse"] <= 1e-10, name
    # every hidden feature is built from l <= 2 natural-parity irreps: band 2, sigma = +1
    for layer in result["layers"].values():
        assert abs(layer["truncation"]) < 1e-12
        assert all(abs(v) < 1e-12 for k, v in layer["spectrum"].items() if k.endswith("-1"))
    assert abs(result["outputs"]["quadrupole"]["spectrum"]["2,+1"] - 1) < 1e-12
    assert result["convergence"]["max_abs_change"] < 1e-10


def test_planted_breaking_scores_the_analytic_value(clouds):
    eps, w, e = 1e-3, torch.tensor([1.0, 2.0, -0.5]), torch.tensor([0.6, 0.0, 0.8])
    model = example.PlantedBreaking(example.E3nnPointNet(), eps, w, e)
    result = symplug.diagnose(model, clouds, example.point_domain(), degree=2, progress=False)
    dipole = result["outputs"]["dipole"]["equivariance_rmse"]
    assert abs(dipole - eps * float(w.norm()) / math.sqrt(3)) < 1e-12
    energy = result["outputs"]["energy"]["equivariance_rmse"]
    expected = eps * math.sqrt(sum(float(c[0] @ c[0]) / 3 for c in clouds) / len(clouds))
    assert abs(energy - expected) < 1e-12
    assert result["outputs"]["quadrupole"]["equivariance_rmse"] < 1e-10


def test_linear_layer_spectrum_is_exact():
    """h = W vec(g x) + b: power |M_k|_F^2 / 3 in (1,+1) and b_k^2 in (0,+1)."""
    pts = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    model = CoordinateMLP(points=4)
    grid = symplug.quadrature("O3", 2)
    res = symplug.evaluate_orbit(model, pts, rotate_points, grid, outputs={"energy": "0e"},
                                 layers=["embed"], lmax=2, chunk_size=50)
    spec = res.layers["embed"]
    w = model.embed.weight.detach().reshape(-1, 4, 3)  # (hidden, point, xyz)
    m = torch.einsum("kpi,pj->kij", w, pts)  # h_k = tr(g M_k^T) + b_k
    expected_l1 = float((m ** 2).sum()) / 3
    expected_l0 = float((model.embed.bias.detach() ** 2).sum())
    assert abs(spec.power[(1, 1)] - expected_l1) < 1e-12 * expected_l1
    assert abs(spec.power[(0, 1)] - expected_l0) < 1e-12
    assert abs(spec.truncation) < 1e-12
    assert res.outputs["energy"].rmse > 1e-3  # the unconstrained MLP is not invariant


def test_chunk_size_does_not_change_results():
    pts = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    model, grid = CoordinateMLP(points=4), symplug.quadrature("O3", 3)
    a = symplug.evaluate_orbit(model, pts, rotate_points, grid, outputs={"dipole": "1o"},
                               layers=["act"], chunk_size=7)
    b = symplug.evaluate_orbit(model, pts, rotate_points, grid, outputs={"dipole": "1o"},
                               layers=["act"], chunk_size=1000)
    assert abs(a.outputs["dipole"].variance - b.outputs["dipole"].variance) < 1e-14
    pa, pb = a.layers["act"].power, b.layers["act"].power
    assert max(abs(pa[k] - pb[k]) for k in pa) < 1e-13


def test_invariant_model_layers(clouds):
    result = symplug.diagnose(DistanceModel(), clouds, example.point_domain(), degree=2,
                              outputs=["energy"], layers=["pair"], progress=False)
    assert result["outputs"]["energy"]["equivariance_rmse"] < 1e-12
    assert abs(result["layers"]["pair"]["invariant_fraction"] - 1) < 1e-12
    assert abs(result["layers"]["pair"]["invariant_fraction_centered"] - 1) < 1e-12


def test_user_mistakes_are_named(clouds):
    domain = example.point_domain()
    with pytest.raises(symplug.SymplugError, match="no layer 'nope'"):
        symplug.diagnose(DistanceModel(), clouds, domain, degree=1, outputs=["energy"],
                         layers=["nope"], progress=False)
    with pytest.raises(symplug.SymplugError, match="no output 'dipole'"):
        symplug.diagnose(DistanceModel(), clouds, domain, degree=1, outputs=["dipole"],
                         progress=False)
    with pytest.raises(symplug.SymplugError, match="not offered"):
        symplug.diagnose(DistanceModel(), clouds, domain, group="SO2", degree=1, progress=False)


def test_convergence_reports_the_change_of_a_non_band_limited_quantity():
    """cos(k z.g n) is not band-limited: degree 2 and degree 4 disagree; a band-2 quantity does not."""
    n = torch.tensor([0.0, 0.6, 0.8])

    def evaluate(grid, k):
        values = torch.cos(k * (grid.matrices @ n)[:, 2])
        spec = symplug.symmetry_content(values, grid, 2)
        return {f"frac{l}": spec.fractions[(l, 1)] for l in range(3)}

    for finer in (4, None):  # a finer degree, or the same rule turned (the default)
        grid = symplug.quadrature("O3", 2)
        smooth = symplug.convergence(lambda g: evaluate(g, 0.1), grid, finer)
        rough = symplug.convergence(lambda g: evaluate(g, 6.0), grid, finer)
        assert smooth["method"] == ("finer" if finer else "rotated")
        assert smooth["finer_degree"] == (finer or 2)
        assert rough["max_abs_change"] > 100 * smooth["max_abs_change"]
        band2 = symplug.convergence(lambda g: evaluate(g, 0.0), grid, finer)
        assert band2["max_abs_change"] < 1e-14


def test_failing_samples_are_flagged_and_counted(clouds):
    class FailsOnBigClouds(DistanceModel):
        def forward(self, pos):
            if pos.abs().max() > 8.0:
                raise ValueError("cloud too wide")
            return super().forward(pos)

    wide = clouds[0] * 10
    samples = [clouds[1], wide, clouds[2]]
    result = symplug.diagnose(FailsOnBigClouds(), samples, example.point_domain(), degree=1,
                              outputs=["energy"], progress=False, skip_failures=True)
    assert result["n_samples"] == 2
    assert result["skipped"] == [{"index": 1, "reason": "ValueError: cloud too wide"}]
    assert [s["index"] for s in result["outputs"]["energy"]["per_sample"]] == [0, 2]
    with pytest.raises(symplug.SymplugError, match="^sample 1: ValueError: cloud too wide"):
        symplug.diagnose(FailsOnBigClouds(), samples, example.point_domain(), degree=1,
                         outputs=["energy"], progress=False)
    # partitions of known size: the index in the data set; lazy ones: within the partition
    parts = symplug.Partitions([[clouds[1]], [clouds[2], wide]])
    with pytest.raises(symplug.SymplugError, match="^sample 2: ValueError"):
        symplug.diagnose(FailsOnBigClouds(), parts, example.point_domain(), degree=1,
                         outputs=["energy"], progress=False)
    dask = pytest.importorskip("dask")
    lazy = symplug.Partitions([[clouds[1]], dask.delayed(list)([clouds[2], wide])])
    with pytest.raises(symplug.SymplugError, match="^sample 1 of partition 1: ValueError"):
        symplug.diagnose(FailsOnBigClouds(), lazy, example.point_domain(), degree=1,
                         outputs=["energy"], progress=False)


def test_items_are_counted_in_the_domain_words(clouds):
    """``Domain.count_items``/``item_name``: n_items sums the kept samples' items (here the
    points of each cloud) and the text counts them; by default one "samples" per sample."""
    import dataclasses

    from symplug.cli import summary_table

    plain = symplug.diagnose(DistanceModel(), clouds, example.point_domain(), degree=1,
                             outputs=["energy"], progress=False, check_convergence=False)
    assert (plain["n_samples"], plain["n_items"], plain["item_name"]) == (3, 3, "samples")
    assert summary_table(plain).splitlines()[0].endswith("elements), 3 samples")
    points = dataclasses.replace(example.point_domain(), count_items=lambda x: x.shape[0],
                                 item_name="points")
    parts = symplug.Partitions([clouds[:1], clouds[1:]])
    result = symplug.diagnose(DistanceModel(), parts, points, degree=1, outputs=["energy"],
                              progress=False, check_convergence=False)
    assert (result["n_samples"], result["n_items"], result["item_name"]) == (3, 15, "points")
    assert summary_table(result).splitlines()[0].endswith("elements), 15 points (3 engine samples)")
    bad = dataclasses.replace(points, count_items=lambda x: 2.5)
    with pytest.raises(symplug.SymplugError, match="^sample 0: domain 'points': count_items "
                                                   "returned 2.5, not an integer >= 0"):
        symplug.diagnose(DistanceModel(), clouds, bad, degree=1, outputs=["energy"],
                         progress=False, check_convergence=False)
    for field, value, problem in (("count_items", 3, "count_items is not callable"),
                                  ("item_name", "", "item_name '' is not a plural noun")):
        with pytest.raises(symplug.PluginError, match=problem):
            dataclasses.replace(points, **{field: value}).validate("mine")


def test_non_finite_outputs_are_failures_not_zeros(clouds):
    class NaNOnBigClouds(DistanceModel):
        def forward(self, pos):
            out = super().forward(pos)
            return {k: v * float("nan") for k, v in out.items()} if pos.abs().max() > 8.0 else out

    samples = [clouds[1], clouds[0] * 10, clouds[2]]
    result = symplug.diagnose(NaNOnBigClouds(), samples, example.point_domain(), degree=1,
                              outputs=["energy"], progress=False, skip_failures=True)
    assert result["n_samples"] == 2
    assert [s["index"] for s in result["skipped"]] == [1]
    assert re.fullmatch(r"SymplugError: output 'energy' is not finite \(NaN or inf\) on (\d+) of "
                        r"the \1 copies of a model call, first on grid element 0",
                        result["skipped"][0]["reason"])
    assert math.isfinite(result["outputs"]["energy"]["equivariance_rmse"])
    with pytest.raises(symplug.SymplugError, match="^sample 1: output 'energy' is not finite"):
        symplug.diagnose(NaNOnBigClouds(), samples, example.point_domain(), degree=1,
                         outputs=["energy"], progress=False)


def test_non_finite_layers_are_named(clouds):
    class NaNSideLayer(DistanceModel):
        def __init__(self):
            super().__init__()
            self.side = torch.nn.Linear(1, 2)
            with torch.no_grad():
                self.side.weight.fill_(float("nan"))

        def forward(self, pos):
            self.side(torch.cdist(pos, pos).unsqueeze(-1))  # captured, unused
            return super().forward(pos)

    with pytest.raises(symplug.SymplugError, match="^sample 0: layer 'side' is not finite"):
        symplug.diagnose(NaNSideLayer(), clouds[:1], example.point_domain(), degree=1,
                         outputs=["energy"], layers=["side"], progress=False)


def test_a_model_states_the_units_of_its_outputs(clouds):
    """A model's ``output_units`` (e.g. a tagger's logit score) replace the domain's
    default units in the result."""
    class InLogits(DistanceModel):
        output_units = {"energy": "logit"}

    result = symplug.diagnose(InLogits(), clouds, example.point_domain(), degree=1,
                              outputs=["energy"], progress=False)
    assert result["outputs"]["energy"]["units"] == "logit"
    plain = symplug.diagnose(DistanceModel(), clouds, example.point_domain(), degree=1,
                             outputs=["energy"], progress=False)
    assert plain["outputs"]["energy"]["units"] == example.OUTPUTS["energy"].units

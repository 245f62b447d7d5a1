"""Diagnosis rules (symplug.findings) on planted models with known spectra, driven
through the real symplug.diagnose.

The model: energy = sum_ij tanh(d_ij) (exactly invariant) + eps * t(x), dipole =
sum_i tanh(|x_i|) x_i (exactly equivariant). Planted breaking terms t with known
breaking spectra, c = n . x_0 / |x_0|:
  P_l(c)                  all in (l,+1), A^2 = eps^2 / (2l+1) per sample;
  x_0 . (x_1 x x_2)       a pseudoscalar: all in (0,-1), A^2 = eps^2 t^2;
  n . (x_0 x x_1)         det(g) times a vector: all in (1,-1);
  n . x_0                 all in (1,+1), A^2 = eps^2 |x_0|^2 / 3.
Layers: ``coords`` (raw coordinates, l = 1), ``pairs`` (distances, invariant) and
``mixed`` (distances and skip * x_0).
"""

import json
import math

import pytest
import torch

import symplug
from symplug.findings import Finding, findings
from symplug.result import write_json
from symplug.testing import rotate_points

N1 = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, -0.2], dtype=torch.float64), dim=0)
LAYERS = ["coords", "pairs", "mixed"]


def _cos(pos):
    return pos[:, 0] @ N1 / pos[:, 0].norm(dim=-1)


BREAKING = {
    "P1": lambda pos: _cos(pos),
    "P2": lambda pos: (3 * _cos(pos) ** 2 - 1) / 2,
    "P3": lambda pos: (5 * _cos(pos) ** 3 - 3 * _cos(pos)) / 2,
    "P2+P3/20": lambda pos: (3 * _cos(pos) ** 2 - 1) / 2 + (5 * _cos(pos) ** 3 - 3 * _cos(pos)) / 40,
    "cos6": lambda pos: torch.cos(6 * _cos(pos)),
    "triple": lambda pos: (pos[:, 0] * torch.linalg.cross(pos[:, 1], pos[:, 2])).sum(-1),
    "axial": lambda pos: torch.linalg.cross(pos[:, 0], pos[:, 1]) @ N1,
    "linear": lambda pos: pos[:, 0] @ N1,
}


def clean_energy(pos):
    pos = pos if pos.ndim == 3 else pos[None]
    i, j = torch.triu_indices(pos.shape[1], pos.shape[1], 1)
    return torch.tanh((pos[:, i] - pos[:, j]).norm(dim=-1)).sum(1)


class Planted(torch.nn.Module):
    def __init__(self, breaking: str | None = None, eps: float = 0.0, skip: float = 0.0):
        super().__init__()
        self.breaking, self.eps, self.skip = breaking, eps, skip
        self.coords, self.pairs, self.mixed = (torch.nn.Identity(), torch.nn.Identity(),
                                               torch.nn.Identity())
        self.angular = torch.nn.Identity()  # cos(6 c): far from band-limited

    def forward(self, pos):
        self.coords(pos.flatten(1))
        i, j = torch.triu_indices(pos.shape[1], pos.shape[1], 1)
        d = self.pairs((pos[:, i] - pos[:, j]).norm(dim=-1))
        self.mixed(torch.cat([d, self.skip * pos[:, 0]], 1))
        self.angular(BREAKING["cos6"](pos)[:, None])
        energy = torch.tanh(d).sum(1)
        if self.breaking is not None:
            energy = energy + self.eps * BREAKING[self.breaking](pos)
        dipole = (torch.tanh(pos.norm(dim=-1))[..., None] * pos).sum(1)
        return {"energy": energy, "dipole": dipole}


def domain(reference=None):
    return symplug.Domain(name="points", act=rotate_points, groups=("O3", "SO3", "SO2"),
                          outputs={"energy": symplug.Output("0e", "eV"),
                                   "dipole": symplug.Output("1o", "e*A")},
                          reference=reference)


@pytest.fixture(scope="module")
def clouds():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(3)]


def run(model, clouds, degree=2, dom=None, **kw):
    return symplug.diagnose(model, clouds, dom or domain(), degree=degree, progress=False, **kw)


def codes(result, severities=("warning", "error")):
    return [f["code"] for f in result["findings"] if f["severity"] in severities]


def test_clean_model_has_only_the_info_on_its_invariant_layer(clouds):
    labels = domain(lambda pos: {"energy": clean_energy(pos)[0]})
    result = run(Planted(), clouds, layers=LAYERS, dom=labels)
    assert result["outputs"]["energy"]["bias_variance"]["random_orientation_rmse"] < 1e-12
    assert [(f["code"], f["severity"], f["where"]) for f in result["findings"]] == [
        ("invariance-reached", "info", "layers.pairs")]
    assert "(layers in order: 'coords' 0%, 'pairs' 100%)" in result["findings"][0]["evidence"]
    far = run(Planted(), [3 * c for c in clouds])
    assert far["findings"] == [] and findings(far, reference=result) == []
    assert run(Planted(), clouds, group="SO2")["findings"] == []


def test_low_l_breaking_quotes_the_planted_p1(clouds):
    eps = 0.1
    result = run(Planted("P1", eps), clouds)
    energy = result["outputs"]["energy"]
    assert abs(energy["equivariance_rmse"] - eps / math.sqrt(3)) < 1e-12
    # all of the breaking (sum over samples of A^2) is in (1,+1)
    assert abs(energy["breaking_spectrum"]["power"]["1,+1"] - 3 * eps ** 2 / 3) < 1e-14
    [f] = result["findings"]
    assert (f["code"], f["severity"], f["where"]) == ("low-l-breaking", "warning", "outputs.energy")
    assert f["evidence"] == ("100% of the breaking power of output 'energy' is in l = 1 "
                             "sectors ((1,+1) 100%); A = 0.0577 eV")
    assert "augment" in f["remedy"]
    # about the z axis the same term is m = 1 (plus an invariant m = 0 part)
    so2 = run(Planted("P1", eps), clouds, group="SO2")
    assert codes(so2) == ["low-l-breaking"] and "((1,0) 100%)" in so2["findings"][0]["evidence"]


def test_monte_carlo_breaking_spectrum_is_free_of_the_invariant_part(clouds):
    """On Haar samples the energy's large invariant part would leak into every sector;
    the breaking spectrum is taken around z(g_0), so only the planted P_1 shows."""
    result = run(Planted("P1", 0.1), clouds, kind="haar", n=400, seed=0,
                 lmax=2, check_convergence=False)
    [f] = result["findings"]
    assert f["code"] == "low-l-breaking"
    share = float(f["evidence"].split("%")[0])
    assert 75 <= share <= 100  # sampling noise spreads some of it over l = 2 (N = 400)


def test_breaking_at_l2_inside_the_band_is_silent(clouds):
    result = run(Planted("P2", 0.1), clouds)
    assert abs(result["outputs"]["energy"]["breaking_spectrum"]["power"]["2,+1"]
               - 3 * 0.01 / 5) < 1e-14
    assert result["findings"] == []


def test_aliasing_above_and_at_the_band_limit(clouds):
    above = run(Planted("P3", 0.1), clouds, degree=3, lmax=2)
    assert abs(above["outputs"]["energy"]["equivariance_rmse"] - 0.1 / math.sqrt(7)) < 1e-12
    [f] = above["findings"]
    assert (f["code"], f["where"]) == ("aliasing", "outputs.energy")
    assert f["evidence"] == ("100% of the breaking power of output 'energy' (A = 0.0378 eV) "
                             "lies above the resolved l_max = 2")
    edge = run(Planted("P2+P3/20", 0.1), clouds, degree=3, lmax=2)
    share_above = (0.05 ** 2 / 7) / (1 / 5 + 0.05 ** 2 / 7)  # 1.78e-3: below TRUNCATION_TOL
    a = 0.1 * math.sqrt(1 / 5 + 0.05 ** 2 / 7)
    assert abs(edge["outputs"]["energy"]["equivariance_rmse"] - a) < 1e-12
    [f] = edge["findings"]
    assert f["code"] == "aliasing"
    assert f["evidence"] == (f"100% of the breaking power of output 'energy' (A = {a:.3g} eV) is "
                             f"at the band edge l = l_max = 2 and {share_above:.1e} above it")
    assert "raise the degree" in f["remedy"]


def test_aliasing_of_a_response_that_is_not_band_limited(clouds):
    """cos(6 c) in the energy and in layer ``angular``: power above l_max = 2, and the
    layer's spectrum changes on the check grid. (The share above l_max of a response that
    is not band-limited depends on the rule: this one is the Lebedev product rule.)"""
    result = run(Planted("cos6", 0.1), clouds, layers=["angular"], kind="lebedev")
    found = {f["where"]: f for f in result["findings"]}
    assert set(found) == {"outputs.energy", "layers.angular", "convergence"}
    assert {f["code"] for f in found.values()} == {"aliasing"}
    shares = result["outputs"]["energy"]["breaking_spectrum"]["power"]
    a2 = sum(s["variance"] for s in result["outputs"]["energy"]["per_sample"])
    above = 1 - sum(v for k, v in shares.items() if k != "0,+1") / a2
    assert above > 0.5 and found["outputs.energy"]["evidence"].startswith(
        f"{100 * above:.0f}% of the breaking power of output 'energy'")
    layer = result["layers"]["angular"]
    assert found["layers.angular"]["evidence"].startswith(
        f"{100 * layer['truncation'] / (1 - layer['invariant_fraction']):.0f}% of the "
        "non-invariant power of layer 'angular' lies above the resolved l_max = 2")
    changes = result["convergence"]["changes"]
    worst = max((k for k in changes if ".spectrum." in k), key=changes.get)
    assert worst.startswith("layers.angular.spectrum.") and changes[worst] > 0.01
    assert found["convergence"]["evidence"] == (
        f"not converged: on the check grid (the same rule turned by a random rotation, "
        f"{result['convergence']['finer_size']} elements) {worst} changes by {changes[worst]:.2e}")


def test_odd_parity_breaking_of_so3_augmented_model(clouds):
    eps = 0.1
    result = run(Planted("triple", eps), clouds)
    t2 = sum(float(BREAKING["triple"](c[None])[0]) ** 2 for c in clouds) / len(clouds)
    a = result["outputs"]["energy"]["equivariance_rmse"]
    assert abs(a - eps * math.sqrt(t2)) < 1e-12
    [f] = result["findings"]
    assert (f["code"], f["severity"]) == ("odd-parity-breaking", "warning")
    assert f["evidence"] == ("100% of the breaking power of output 'energy' is in sigma = -1 "
                             f"sectors ((0,-1) 100%); A = {a:.3g} eV")
    assert "augment with O3" in f["remedy"] and "100% of this breaking" in f["remedy"]
    # rotations alone do not see it: the model is SO(3)-invariant
    assert run(Planted("triple", eps), clouds, group="SO3")["findings"] == []


def test_axial_breaking_is_odd_but_not_removed_by_inversion(clouds):
    result = run(Planted("axial", 0.1), clouds)
    energy = result["outputs"]["energy"]
    a2 = sum(s["variance"] for s in energy["per_sample"])  # all of A^2 is in (1,-1)
    assert abs(energy["breaking_spectrum"]["power"]["1,-1"] - a2) < 1e-12 * a2
    found = {f["code"]: f for f in result["findings"]}
    assert set(found) == {"low-l-breaking", "odd-parity-breaking"}
    assert "((1,-1) 100%)" in found["odd-parity-breaking"]["evidence"]
    assert "0% of this breaking" in found["odd-parity-breaking"]["remedy"]


def test_invariance_lost_after_it_was_reached(clouds):
    skip = 0.5
    result = run(Planted(skip=skip), clouds, layers=LAYERS)
    dists = torch.stack([torch.pdist(c) for c in clouds])
    s_d = float(((dists - dists.mean(0)) ** 2).sum())
    expected = s_d / (s_d + skip ** 2 * sum(float(c[0] @ c[0]) for c in clouds))
    assert abs(result["layers"]["mixed"]["invariant_fraction_centered"] - expected) < 1e-12
    lost = [f for f in result["findings"] if f["code"] == "invariance-lost"]
    assert [(f["severity"], f["where"]) for f in lost] == [("warning", "layers.mixed")]
    assert f"centred invariant fraction {expected:.4f}, down from 1.0000 at layer 'pairs'" \
        in lost[0]["evidence"]
    assert result["findings"][0]["code"] == "invariance-lost"  # warnings before info
    # a drop without earlier invariance is a fact, not a failure
    order = run(Planted(skip=skip), clouds, layers=["mixed", "coords"], check_convergence=False)
    assert [(f["code"], f["severity"], f["where"]) for f in order["findings"]] == [
        ("invariance-lost", "info", "layers.coords")]


@pytest.mark.parametrize("delta, severity", [(0.1, "error"), (0.25, "warning"), (1.0, None)])
def test_equivariance_error_against_accuracy(clouds, delta, severity):
    """Pi f = exact energy, labels offset by delta: symmetrised RMSE = delta,
    equivariance RMSE = eps / sqrt(3)."""
    eps = 0.3
    labels = domain(lambda pos: {"energy": clean_energy(pos)[0] - delta})
    result = run(Planted("P1", eps), clouds, dom=labels, check_convergence=False)
    split = result["outputs"]["energy"]["bias_variance"]
    assert abs(split["symmetrized_rmse"] - delta) < 1e-12
    assert abs(split["equivariance_rmse"] - eps / math.sqrt(3)) < 1e-12
    found = [f for f in result["findings"] if f["code"] == "equivariance-dominates-error"]
    if severity is None:
        assert found == []
        return
    [f] = found
    ratio, share = eps / math.sqrt(3) / delta, eps ** 2 / 3 / (eps ** 2 / 3 + delta ** 2)
    assert f["severity"] == severity
    assert f"is {ratio:.2f}x the error of the symmetrised model {delta:.3g} eV" in f["evidence"]
    assert f"symmetry breaking makes {100 * share:.0f}% of the squared error" in f["evidence"]


def test_ood_growth(clouds):
    model = Planted("linear", 0.1)
    test_set = run(model, clouds, check_convergence=False)
    expected = 0.1 * math.sqrt(sum(float(c[0] @ c[0]) for c in clouds) / 3 / len(clouds))
    assert abs(test_set["outputs"]["energy"]["equivariance_rmse"] - expected) < 1e-12
    for scale, severity in ((3.0, "warning"), (12.0, "error")):
        md = run(model, [scale * c for c in clouds], check_convergence=False)
        [f] = [f for f in findings(md, reference=test_set) if f.code == "ood-growth"]
        assert (f.severity, f.where) == (severity, "outputs.energy")
        assert f.evidence.startswith(f"A of output 'energy' grows {scale:.2f}x out of "
                                     f"distribution: {scale * expected:.3g} eV on 3 samples")
        assert not any(f.code == "ood-growth" for f in findings(test_set, reference=md))
    so3 = run(model, clouds, group="SO3", check_convergence=False)
    with pytest.raises(symplug.SymplugError, match="different groups: 'SO3' vs reference 'O3'"):
        findings(so3, reference=test_set)
    other_units = json.loads(json.dumps(test_set))
    other_units["outputs"]["energy"]["units"] = "meV"
    with pytest.raises(symplug.SymplugError, match="'meV' in the reference"):
        findings(test_set, reference=other_units)


def test_findings_of_a_result_read_back_from_json(clouds, tmp_path):
    result = run(Planted("triple", 0.1, skip=0.5), clouds, layers=LAYERS)
    path = write_json(result, tmp_path / "r.json")
    again = json.loads(path.read_text())
    assert [f.to_dict() for f in findings(again)] == result["findings"]
    assert [f["severity"] for f in result["findings"]] == ["warning", "warning", "info"]
    assert set(result["findings"][0]) == {"code", "severity", "evidence", "remedy", "where"}


def test_finding_record():
    f = Finding("aliasing", "warning", "e", "r")
    assert f.to_dict() == {"code": "aliasing", "severity": "warning", "evidence": "e",
                           "remedy": "r", "where": None}
    with pytest.raises(symplug.SymplugError, match="severity 'fatal'"):
        Finding("x", "fatal", "e", "r")


def test_evaluation_against_labels_in_metatrains_terms(clouds):
    """Energy = clean + c + eps P2(cos): the O(3) average is clean + c, so against the
    clean labels the O(3)-averaged RMSE and MAE are |c|, the equivariance RMSE is
    eps / sqrt(5) (<P2^2> = 1/5), the oriented RMSE sqrt(c^2 + eps^2 / 5), and the share
    of its square due to symmetry breaking eps^2/5 / (c^2 + eps^2/5). P2 is band 2: the
    check grid agrees, and the 1 % flag says so."""
    c, eps = -0.03, 0.2

    class Offset(torch.nn.Module):
        def forward(self, pos):
            return {"energy": clean_energy(pos) + c + eps * BREAKING["P2"](pos)}

    labels = domain(lambda pos: {"energy": clean_energy(pos)[0]})
    result = run(Offset(), clouds, dom=labels, outputs=["energy"])
    bv = result["outputs"]["energy"]["bias_variance"]
    eq2 = eps ** 2 / 5
    assert abs(bv["symmetrized_rmse"] - abs(c)) < 1e-12
    assert abs(bv["symmetrized_mae"] - abs(c)) < 1e-12
    assert abs(bv["equivariance_rmse"] - math.sqrt(eq2)) < 1e-12
    assert abs(bv["random_orientation_rmse"] - math.sqrt(c * c + eq2)) < 1e-12
    assert abs(bv["symmetry_share"] - eq2 / (c * c + eq2)) < 1e-12
    out = result["outputs"]["energy"]
    assert out["grid_converged"] is True and out["grid_change"] < 1e-9
    from symplug.cli import summary_table
    table = summary_table(result)
    assert "O(3)-avg MAE" in table and f"{eq2 / (c * c + eq2):.1%}" in table


def test_typed_diagnosis_keys_sectors_and_quantities_by_tuples(clouds):
    """diagnosis_of is diagnose typed: (l, sigma) tuples and tuple quantities inside, the
    JSON strings only in to_dict; from_dict reads the JSON back to the same diagnosis."""
    typed = symplug.diagnosis_of(Planted("cos6", 0.1), clouds, domain(), degree=2,
                                 layers=["angular"], kind="lebedev", progress=False)
    assert isinstance(typed, symplug.Diagnosis)
    assert set(typed.outputs["energy"].breaking_spectrum.power) == {
        (l, sigma) for l in range(3) for sigma in (1, -1)}
    assert ("outputs", "energy", "equivariance_rmse") in typed.convergence.changes
    assert typed.convergence.worst_quantity[:3] == ("layers", "angular", "spectrum")
    result = typed.to_dict()
    assert result == run(Planted("cos6", 0.1), clouds, layers=["angular"], kind="lebedev")
    assert "layers.angular.spectrum.2,+1" in result["convergence"]["changes"]
    again = symplug.Diagnosis.from_dict(json.loads(json.dumps(result)))
    assert again == typed and again.to_dict() == result
    assert findings(again) == findings(result) == list(typed.findings)

"""Grids by purpose: every rule integrates every Wigner-D function up to its stated
band to round-off and visibly fails one step beyond; ``kind="auto"`` picks the smallest;
the convergence check (the same rule turned) catches aliasing whose size is known
analytically, at the cost of one grid."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import lebedev_rule

import symplug
from symplug.testing import rotate_points
from symplug.wigner import wigner_D


def wigner_means(grid, l):
    """(|sum_q w_q D^l(R_q)|max, |sum_q w_q s_q D^l(R_q)|max): the grid's integral of
    the Wigner-D functions of order l on both cosets, minus the exact value."""
    sign, rot = grid.group.proper_part(grid.matrices)
    d = wigner_D(l, rot)
    exact = torch.eye(1, dtype=d.dtype) if l == 0 else torch.zeros_like(d[0])
    proper = torch.einsum("q,qmn->mn", grid.weights, d) - exact
    improper = torch.einsum("q,q,qmn->mn", grid.weights, sign, d)
    return float(proper.abs().max()), float(improper.abs().max())


RULES = ([("finite", "mean", L) for L in (1, 2, 3, 5)]
         + [("lebedev", "mean", L) for L in (1, 2, 3, 4, 6)]
         + [("gauss-legendre", "mean", L) for L in (1, 2, 3)]
         + [("auto", "diagnosis", L) for L in (1, 2, 3, 4)]
         + [("auto", "mean", L) for L in (1, 3, 4, 6)])


@pytest.mark.parametrize("group", ["SO3", "O3"])
@pytest.mark.parametrize("kind,purpose,degree", RULES)
def test_every_rule_is_exact_to_its_band_and_fails_beyond(group, kind, purpose, degree):
    grid = symplug.quadrature(group, degree, kind=kind, purpose=purpose)
    assert grid.exact_degree >= (2 * degree if purpose == "diagnosis" else degree)
    assert bool((grid.weights > 0).all()) and abs(float(grid.weights.sum()) - 1) < 1e-14
    for l in range(grid.exact_degree + 1):
        proper, improper = wigner_means(grid, l)
        assert proper < 1e-13, (l, proper)
        if group == "O3":  # the improper coset: s R averages every D^l to zero
            assert improper < 1e-13, (l, improper)
    assert wigner_means(grid, grid.exact_degree + 1)[0] > 1e-3
    # a rule turned by a fixed rotation stays exact to the same band
    turned = grid.rotated(seed=7)
    assert turned.exact_degree == grid.exact_degree and turned.size == grid.size
    assert max(wigner_means(turned, l)[0] for l in range(grid.exact_degree + 1)) < 1e-13


def test_finite_groups_and_their_bands():
    """D2, T, O, I integrate D^l for 1 <= l <= 1, 2, 3, 5; each has an invariant at the
    next l (the cubic harmonic at l = 4 for O, an icosahedral one at l = 6 for I)."""
    expected = {1: (4, 1), 2: (12, 2), 3: (24, 3), 4: (60, 5), 5: (60, 5)}
    for degree, (size, band) in expected.items():
        grid = symplug.quadrature("SO3", degree, kind="finite", purpose="mean")
        assert (grid.size, grid.exact_degree) == (size, band)
        o3 = symplug.quadrature("O3", degree, kind="finite", purpose="mean")
        assert o3.size == 2 * size
    with pytest.raises(symplug.GridError, match="no finite rotation group integrates band 6"):
        symplug.quadrature("SO3", 6, kind="finite", purpose="mean")


def test_auto_takes_the_smallest_positive_weight_rule():
    sizes = {("mean", 1): 8, ("mean", 2): 24, ("mean", 3): 48, ("mean", 5): 120,
             ("mean", 6): 364, ("diagnosis", 1): 24, ("diagnosis", 2): 120,
             ("diagnosis", 3): 364, ("diagnosis", 4): 684}
    for (purpose, degree), size in sizes.items():
        grid = symplug.quadrature("O3", degree, purpose=purpose)
        others = [symplug.quadrature("O3", degree, kind=k, purpose=purpose).size
                  for k in ("lebedev", "gauss-legendre")]
        assert grid.size == size and grid.size <= min(others), (purpose, degree)
        record = grid.describe()
        assert record["purpose"] == purpose and record["kind"] in ("finite", "lebedev")
        assert record["rule"].startswith("rotation group" if grid.kind == "finite" else "Lebedev")
    # the mean of band L needs only K = L + 1 in-plane angles
    grid = symplug.quadrature("SO3", 6, kind="lebedev", purpose="mean")
    assert grid.size == lebedev_rule(7)[0].shape[1] * 7


def test_second_moments_need_the_diagnosis_grid():
    mean = symplug.quadrature("O3", 3, purpose="mean")  # exact to band 3: B_l for l <= 1
    assert mean.moment_degree == 1
    with pytest.raises(symplug.GridError, match="exceeds the degree 1"):
        symplug.symmetry_content(torch.zeros(mean.size), mean, 2)


# -- the convergence check on a planted response with known aliasing ------------------

def cubic_harmonic(u):
    """K4(u) = u_x^4 + u_y^4 + u_z^4 - 3/5 on unit vectors: the l = 4 harmonic that the
    octahedral group leaves invariant."""
    return (u ** 4).sum(-1) - 0.6


class CubicEnergy(torch.nn.Module):
    """E(x) = sum_ij |x_i - x_j| + eps sum_i K4(x_i / |x_i|): an invariant part plus a
    band-4 breaking term (``eps_l1`` adds a band-1 term e . x_0)."""

    def __init__(self, eps, eps_l1=0.0):
        super().__init__()
        self.eps, self.eps_l1 = eps, eps_l1

    def forward(self, pos):
        invariant = torch.cdist(pos, pos).sum((1, 2))
        unit = pos / pos.norm(dim=-1, keepdim=True)
        e = torch.tensor([0.6, 0.0, 0.8], dtype=pos.dtype)
        return {"energy": invariant + self.eps * cubic_harmonic(unit).sum(-1)
                + self.eps_l1 * pos[:, 0] @ e}


def analytic_a(clouds, eps):
    """A of the K4 term over SO(3): by the addition theorem,
    int K4(R a) K4(R b) dR = <K4^2>_S2 P_4(a . b), and its mean is zero."""
    nodes, w = lebedev_rule(11)  # exact for the degree-8 polynomial K4^2
    k4_sq = float((w * cubic_harmonic(torch.from_numpy(nodes.T)).numpy() ** 2).sum() / w.sum())
    a2 = []
    for x in clouds:
        u = x / x.norm(dim=-1, keepdim=True)
        c = (u @ u.T).numpy()
        p4 = (35 * c ** 4 - 30 * c ** 2 + 3) / 8
        a2.append(eps ** 2 * k4_sq * p4.sum())
    return math.sqrt(np.mean(a2))


@pytest.fixture(scope="module")
def clouds():
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(3)]


def points():
    return symplug.Domain(name="points", act=rotate_points,
                          outputs={"energy": symplug.Output("0e", "a.u.")}, groups=("O3", "SO3"))


def test_check_flags_the_aliasing_a_48_element_grid_hides(clouds):
    """On the octahedral rule (48 elements with inversion, exact to band 3) the K4 term
    is invariant, so its A reads 0; the true A is analytic. The same rule turned by a
    random rotation sees it: the check costs one grid and flags the change."""
    eps = 0.05
    grid48 = symplug.quadrature("O3", 3, kind="finite", purpose="mean")
    assert grid48.size == 48
    result = symplug.diagnose(CubicEnergy(eps), clouds, points(), grid=grid48, lmax=1,
                              progress=False)
    assert result["outputs"]["energy"]["equivariance_rmse"] < 1e-12  # aliased to zero
    conv = result["convergence"]
    assert conv["method"] == "rotated" and conv["finer_size"] == 48
    assert conv["worst_quantity"] == "outputs.energy.equivariance_rmse"
    assert conv["max_rel_change"] > 0.99  # 0 against the turned grid's nonzero A
    [f] = [f for f in result["findings"] if f["where"] == "convergence"]
    assert f["code"] == "aliasing" and "turned by a random rotation, 48 elements" in f["evidence"]
    # a grid exact for the response (band 4: diagnosis degree 4) gives the analytic A,
    # and its own check agrees to round-off
    fine = symplug.diagnose(CubicEnergy(eps), clouds, points(), degree=4, progress=False)
    assert abs(fine["outputs"]["energy"]["equivariance_rmse"] - analytic_a(clouds, eps)) < 1e-12
    assert fine["convergence"]["max_rel_change"] < 1e-9
    assert not [f for f in fine["findings"] if f["where"] == "convergence"]


def test_check_agrees_to_round_off_on_a_band_limited_response(clouds):
    """A band-1 breaking term on the same 48 elements (exact for its second moments):
    A is analytic (eps |x_0| / sqrt(3)) and the turned grid agrees to round-off."""
    eps = 0.01
    grid48 = symplug.quadrature("O3", 3, kind="finite", purpose="mean")
    result = symplug.diagnose(CubicEnergy(0.0, eps), clouds, points(), grid=grid48, lmax=1,
                              progress=False)
    expected = eps * math.sqrt(np.mean([float(x[0] @ x[0]) for x in clouds]) / 3)
    assert abs(result["outputs"]["energy"]["equivariance_rmse"] - expected) < 1e-13
    assert result["convergence"]["max_rel_change"] < 1e-9


def test_check_costs_one_grid(clouds):
    """Model evaluations of a certified diagnosis: the grid and its turned copy."""
    class Counting(CubicEnergy):
        copies = 0

        def forward(self, pos):
            Counting.copies += pos.shape[0]
            return super().forward(pos)

    for degree, size in ((1, 24), (2, 120), (3, 364)):
        Counting.copies = 0
        symplug.diagnose(Counting(0.01), clouds[:1], points(), degree=degree, progress=False)
        assert Counting.copies == 2 * size

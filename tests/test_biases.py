"""Minimal inductive biases of the reference models (spherical-harmonic direction
embeddings, the pair-force head, the Lorentz readout) and the symmetrised tagger:
known answers in float64, and the shipped checkpoints unchanged."""

import ase
import ase.cluster
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

import symplug
import symplug_atoms
from symplug_atoms.action import RotatedCopies
from symplug_atoms.graph import build_graph
from symplug_atoms.pet import PointEdgeTransformer, smooth_cutoff
from symplug_atoms.torch_model import TorchAtomsModel, load_reference

jets_mod = pytest.importorskip("symplug_jets")
from symplug_jets.action import boost, rotate_jets  # noqa: E402
from symplug_jets.rootio import read_root  # noqa: E402
from symplug_jets.symmetrize import SymmetrizedTagger  # noqa: E402
from symplug_jets.tagger_model import LorentzReadout, ParticleTransformerTagger  # noqa: E402
from symplug_jets.taggers import REFERENCE, CallableTagger  # noqa: E402
from symplug_jets.taggers import load_reference as load_tagger  # noqa: E402

EYE = torch.eye(3, dtype=torch.float64)[None]


def above(spectrum: dict, lmax: int) -> float:
    """Spectral weight in sectors with l (or |m|) above ``lmax``."""
    return sum(v for k, v in spectrum.items() if int(k.split(",")[0]) > lmax)


@pytest.fixture(scope="module")
def small():
    """Four Cu atoms, no symmetry."""
    return ase.Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0.1, 0], [0.3, 2.4, 0.2],
                                       [0.2, 0.5, 2.6]])


@pytest.fixture(scope="module")
def jets():
    return read_root(REFERENCE.with_name("tagger_test.root"), max_particles=32)


def atoms_model(**options) -> TorchAtomsModel:
    torch.manual_seed(0)
    return TorchAtomsModel(PointEdgeTransformer(d=8, heads=2, cutoff=4.0, **options), cutoff=4.0)


# --- atoms ------------------------------------------------------------------------------


def test_shipped_pet_cu_outputs_unchanged(cluster):
    """Defaults are the shipped architecture: values recorded before the options existed."""
    out = load_reference()(RotatedCopies(cluster, EYE))
    assert float(out["energy"][0, 0].detach()) == pytest.approx(836.1987772499398, rel=1e-12)
    expected = [-267.7751121089789, 140.2959114699363, 257.56929134145304, -910.571110012478,
                -208.85251648973176, 682.582199078837, -1248.7093019069387, -23.42610625464735,
                -790.7228229972962]
    np.testing.assert_allclose(out["forces"][0, :3].detach().numpy().ravel(), expected,
                               rtol=1e-12)


@pytest.mark.parametrize("lmax", [0, 1, 2])
def test_sh_embedding_is_band_limited(small, lmax):
    """The ``embedding`` tokens of sh_lmax = L have no power above L, all in natural parity."""
    result = symplug_atoms.diagnose(atoms_model(sh_lmax=lmax), [small], outputs=["energy"],
                                    layers=["embedding"], degree=lmax + 2,
                                    check_convergence=False, progress=False)
    layer = result["layers"]["embedding"]
    assert above(layer["spectrum"], lmax) < 1e-12
    assert abs(layer["truncation"]) < 1e-12
    assert sum(v for k, v in layer["spectrum"].items() if k.endswith("-1")) < 1e-12
    if lmax > 0:  # the direction is really used: power at l = L
        assert layer["spectrum"][f"{lmax},+1"] > 1e-6


def test_raw_embedding_is_not_band_limited(small):
    """Control: the raw Cartesian input through the MLP has power above l = 1."""
    result = symplug_atoms.diagnose(atoms_model(), [small], outputs=["energy"],
                                    layers=["embedding"], degree=3, check_convergence=False,
                                    progress=False)
    assert above(result["layers"]["embedding"]["spectrum"], 1) > 1e-7


@pytest.mark.parametrize("forces", ["conservative", "pair"])
def test_sh0_model_is_exactly_invariant(small, forces):
    """sh_lmax = 0 leaves only distances: energy invariant, forces equivariant (A = 0)."""
    result = symplug_atoms.diagnose(atoms_model(sh_lmax=0, forces=forces), [small], degree=2,
                                    check_convergence=False, progress=False)
    for name in ("energy", "forces"):
        assert result["outputs"][name]["relative_error"] < 1e-12, name


def test_pair_forces_are_the_pair_sum(cluster):
    """forces="pair" gives F_i = sum_j w_ij r_ij with w_ij = (s_ij + s_ji)/2 f_c(r_ij), s read
    by ``force_head``; net force and net torque vanish for any weights."""
    model = atoms_model(forces="pair")
    captured = {}
    hook = model.module.force_head.register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("s", out.detach()))
    out = model(RotatedCopies(cluster, EYE))
    hook.remove()
    forces = out["forces"][0].detach().numpy() / 1000.0  # eV/A
    graph = build_graph(cluster, 4.0)
    s = captured["s"].reshape(-1)[graph.centers * graph.max_neighbors + graph.slot]
    pos = torch.as_tensor(cluster.positions - cluster.get_center_of_mass())
    r = pos[graph.neighbors] - pos[graph.centers]
    w = 0.5 * (s + s[graph.reverse]) * smooth_cutoff(r.norm(dim=-1), 4.0, 0.5)
    expected = torch.zeros(len(cluster), 3, dtype=torch.float64).index_add(
        0, graph.centers, w[:, None] * r).numpy()
    np.testing.assert_allclose(forces, expected, atol=1e-12 * np.abs(expected).max())
    scale = np.abs(forces).max()
    assert np.abs(forces.sum(0)).max() < 1e-12 * scale * len(cluster)
    torque = np.cross(pos.numpy(), forces).sum(0)
    assert np.abs(torque).max() < 1e-12 * scale * len(cluster) * 5


def test_pair_forces_sum_to_zero_in_a_cell():
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    out = atoms_model(forces="pair", sh_lmax=2)(RotatedCopies(atoms, EYE))
    forces = out["forces"][0].detach().numpy()
    assert np.abs(forces.sum(0)).max() < 1e-11 * np.abs(forces).max() * len(atoms)
    assert torch.isfinite(out["stress"]).all()


@pytest.mark.parametrize("options", [{"sh_lmax": -1}, {"sh_lmax": 1.5}, {"sh_lmax": True},
                                     {"forces": "direct"}])
def test_bad_pet_options(options):
    with pytest.raises(ValueError, match="sh_lmax|forces"):
        PointEdgeTransformer(**options)


def test_train_accepts_model_options(tmp_path):
    """train() builds the variant, and its checkpoint reloads with the options."""
    from symplug_atoms.train import main, train

    frames = []
    for k in range(10):
        atoms = ase.cluster.Icosahedron("Cu", 2)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    payload = train(tmp_path / "m.pt", epochs=1, seed=0, batch=4, lr=1e-3, d=8, layers=1,
                    cutoff=4.0, sh_lmax=1, forces="pair", frames=frames, threads=1)
    assert payload["config"]["sh_lmax"] == 1 and payload["config"]["forces"] == "pair"
    model = load_reference(tmp_path / "m.pt")
    assert model.module.sh_lmax == 1 and model.module.forces == "pair"
    out = model(RotatedCopies(frames[0], EYE))
    assert np.abs(out["forces"][0].detach().numpy().sum(0)).max() < 1e-9
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x.pt"), "--sh-lmax", "-1"])
    assert exc.value.code == 2


# --- jets -------------------------------------------------------------------------------


def test_shipped_tagger_scores_unchanged(jets):
    tagger = load_tagger()
    full = read_root(REFERENCE.with_name("tagger_test.root"))
    score = tagger.fn(torch.from_numpy(full.p4[:4]), torch.from_numpy(full.mask[:4]))
    np.testing.assert_allclose(score.detach().numpy(),
                               [0.9269123129676208, 0.9736974930575324, 0.8808344866624047,
                                0.00027491635892884665], rtol=1e-12)


def tagger_of(module: ParticleTransformerTagger) -> CallableTagger:
    module = module.double().eval()
    tagger = CallableTagger(lambda p4, mask: module.score(p4, mask), "test")
    tagger.module = module
    return tagger


@pytest.mark.parametrize("lmax", [1, 2])
def test_sh_tagger_is_invariant_about_the_beam(jets, lmax):
    """Jet-frame harmonics make every input invariant about the beam: A = 0; the
    ``direction`` layer is band-limited to |m| <= L about each jet's axis."""
    torch.manual_seed(0)
    tagger = tagger_of(ParticleTransformerTagger(d=16, sh_lmax=lmax))
    sample = jets.subset(np.arange(8))
    beam = jets_mod.diagnose(tagger, sample, group="SO2", degree=4, check_convergence=False,
                             progress=False)
    assert beam["outputs"]["score"]["equivariance_rmse"] < 1e-12
    axis = jets_mod.diagnose(tagger, sample, group="SO2", degree=lmax + 3, frame="jet",
                             layers=["direction", "blocks.0"], check_convergence=False,
                             progress=False)
    assert above(axis["layers"]["direction"]["spectrum"], lmax) < 1e-12
    assert axis["layers"]["direction"]["spectrum"][f"{lmax},0"] > 1e-8
    assert above(axis["layers"]["blocks.0"]["spectrum"], lmax) > 1e-8  # the trunk is free


def test_raw_tagger_is_not_invariant_about_the_beam(jets):
    torch.manual_seed(0)
    tagger = tagger_of(ParticleTransformerTagger(d=16))
    beam = jets_mod.diagnose(tagger, jets.subset(np.arange(8)), group="SO2", degree=4,
                             check_convergence=False, progress=False)
    assert beam["outputs"]["score"]["equivariance_rmse"] > 1e-6


def test_lorentz_readout_is_invariant_on_fixed_weights(jets):
    """With tokens that do not change, the readout is invariant under SO(3) and boosts."""
    torch.manual_seed(0)
    readout = LorentzReadout(16).double()
    block = {"p4": torch.from_numpy(jets.p4[:6]), "mask": torch.from_numpy(jets.mask[:6])}
    x = torch.randn(6, jets.p4.shape[1], 16, dtype=torch.float64)
    grid = symplug.quadrature("O3", 2)
    copies = rotate_jets(block, grid.matrices)
    with torch.no_grad():
        logits = readout(x.repeat(grid.size, 1, 1), copies["p4"], copies["mask"])
    values = logits.reshape(grid.size, 6 * 2, 1)
    err = symplug.equivariance_error(values, grid, "0e")
    assert err.rmse < 1e-12 * float(values.abs().max())
    with torch.no_grad():
        base = readout(x, block["p4"], block["mask"])
        for axis in ("beam", "jet"):
            boosted = torch.from_numpy(np.where(jets.mask[:6, :, None],
                                                boost(jets.p4[:6], 0.7, axis), 0.0))
            moved = readout(x, boosted, block["mask"])
            assert torch.allclose(moved, base, rtol=0, atol=1e-10 * float(base.abs().max()))


@pytest.mark.parametrize("options", [{"sh_lmax": -2}, {"sh_lmax": 2.0}, {"readout": "mean"}])
def test_bad_tagger_options(options):
    with pytest.raises(ValueError, match="sh_lmax|readout"):
        ParticleTransformerTagger(**options)


def test_symmetrized_tagger_known_averages(jets):
    """sum px^2 averages to sum (px^2 + py^2)/2 about the beam and to sum |p|^2/3 over SO3."""
    def px2(p4, mask):
        return (p4[..., 1] ** 2 * mask).sum(-1)

    p4, mask = torch.from_numpy(jets.p4[:5]), torch.from_numpy(jets.mask[:5]).double()
    # px^2 is a band-2 response: its mean is exact on a rule of band 2
    beam = SymmetrizedTagger(px2, "SO2", degree=2)(p4, mask)
    expected = ((p4[..., 1] ** 2 + p4[..., 2] ** 2) * mask).sum(-1) / 2
    torch.testing.assert_close(beam, expected, rtol=1e-12, atol=0)
    so3 = SymmetrizedTagger(px2, "SO3", degree=2)(p4, mask)
    torch.testing.assert_close(so3, ((p4[..., 1:] ** 2).sum(-1) * mask).sum(-1) / 3,
                               rtol=1e-12, atol=0)
    raw = px2(p4, mask)
    assert not torch.allclose(raw, expected, rtol=1e-6)


def test_train_tagger_accepts_model_options(jets):
    from symplug_jets.train_tagger import main, train

    model, payload, test = train(jets.subset(np.arange(60)), epochs=1, seed=0, threads=1,
                                 sh_lmax=1, readout="lorentz")
    assert payload["config"] == {"d": 32, "heads": 4, "n_blocks": 2, "sh_lmax": 1,
                                 "readout": "lorentz"}
    assert model.shift.numel() == 7 and len(test) == 9
    reloaded = ParticleTransformerTagger(**payload["config"])
    reloaded.load_state_dict(payload["state_dict"])
    with pytest.raises(SystemExit) as exc:
        main(["--out", "unused.pt", "--sh-lmax", "-1"])
    assert exc.value.code == 2

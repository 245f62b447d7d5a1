"""metatrain's PET with a band-limited edge embedding (a minimal inductive bias) and
without augmentation: the band limit as an exact polynomial degree, a real ``mtt
train`` of the L = 0 variant that is exactly invariant in float64 and raises no
warning in float32, and the patches undone after their block."""

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("metatrain")

import symplug_atoms  # noqa: E402
from helpers import train_small_pet  # noqa: E402
from symplug_atoms.metatrain_variants import (  # noqa: E402
    BandLimitedEdgeEmbedder, band_limited_pet, main, sh_lmax_of, without_augmentation)


def monomials(directions: np.ndarray, degree: int) -> np.ndarray:
    """All monomials x^a y^b z^c, a + b + c <= degree, of unit vectors (n, 3)."""
    columns = [np.prod(directions ** np.array(p), axis=1)
               for p in itertools.product(range(degree + 1), repeat=3) if sum(p) <= degree]
    return np.stack(columns, axis=1)


def fit_residual(values: np.ndarray, basis: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
    return float(np.abs(basis @ coef - values).max() / np.abs(values).max())


@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_the_embedding_is_a_polynomial_of_degree_lmax_in_the_direction(lmax):
    """Band-limited to l <= L on the sphere = a polynomial of degree L in the unit
    direction (and not of degree L - 1): exact in float64."""
    torch.manual_seed(0)
    embed = BandLimitedEdgeEmbedder(lmax, 6, cutoff=4.5).double()
    gen = np.random.default_rng(0)
    directions = gen.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    r = 2.7
    edges = torch.as_tensor(np.concatenate([r * directions, np.full((200, 1), r)], axis=1))
    values = embed(edges).detach().numpy()
    assert fit_residual(values, monomials(directions, lmax)) < 1e-10
    if lmax > 0:
        assert fit_residual(values, monomials(directions, lmax - 1)) > 1e-3


def test_padded_edges_give_finite_values_and_gradients():
    embed = BandLimitedEdgeEmbedder(2, 4, cutoff=4.5).double()
    edges = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    out = embed(edges)
    grad, = torch.autograd.grad(out.square().sum(), edges, create_graph=True)
    second, = torch.autograd.grad(grad.sum(), edges)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert torch.isfinite(second).all()


def test_bad_band_is_refused_before_any_training(capsys):
    with pytest.raises(ValueError, match="sh_lmax must be an integer >= 0, got -1"):
        with band_limited_pet(-1):
            pass
    with pytest.raises(SystemExit) as exit_info:
        main(["--sh-lmax", "-1", "train", "options.yaml"])
    assert exit_info.value.code == 2
    assert "--sh-lmax must be >= 0, got -1" in capsys.readouterr().err


def test_the_patches_are_undone_after_their_block():
    from metatrain.pet.modules.transformer import CartesianTransformer
    from metatrain.utils.augmentation import O3Augmenter

    init, augment = CartesianTransformer.__init__, O3Augmenter.apply_random_augmentations
    with band_limited_pet(1), without_augmentation():
        assert CartesianTransformer.__init__ is not init
        assert O3Augmenter.apply_random_augmentations is not augment
    assert CartesianTransformer.__init__ is init
    assert O3Augmenter.apply_random_augmentations is augment


@pytest.fixture(scope="module")
def invariant_pet(tmp_path_factory):
    """A real 2-epoch ``mtt train`` of the L = 0 variant (2 GNN layers)."""
    folder = tmp_path_factory.mktemp("pet_sh0")
    frames = train_small_pet(folder, gnn_layers=2, variant=("--sh-lmax", "0"))
    return folder, next(f for f in frames if not f.get_pbc().any())


def test_the_l0_variant_is_exactly_invariant_in_float64(invariant_pet):
    """Its checkpoint loads as any metatrain checkpoint (the band read from its weights),
    and symplug finds no breaking beyond float64 round-off in outputs or hidden layers."""
    folder, cluster = invariant_pet
    import metatomic.torch  # noqa: F401  (the checkpoint holds metatomic's classes)

    checkpoint = torch.load(folder / "pet.ckpt", weights_only=False)
    assert sh_lmax_of(checkpoint) == 0
    with band_limited_pet(0):  # a block around the loading, as a training script has
        model = symplug_atoms.load_model(str(folder / "pet.ckpt"), trusted=True)
    layers = ["backend.gnn_layers.0", "backend.gnn_layers.1"]
    result = symplug_atoms.diagnose(model, [cluster], degree=2, layers=layers, progress=False,
                                    check_convergence=False)
    assert result["precision"]["dtype"] == "float64"
    for name in ("energy", "forces"):
        assert result["outputs"][name]["relative_error"] < 1e-12
    for name in layers:
        assert result["layers"][name]["invariant_fraction"] == pytest.approx(1, abs=1e-12)
    assert not [f for f in result["findings"] if f["severity"] in ("warning", "error")]


def test_the_exported_l0_variant_raises_no_warning_in_float32(invariant_pet):
    """The exported TorchScript model holds the band-limited embedder: exact up to float32
    round-off, which symplug does not report as breaking."""
    folder, cluster = invariant_pet
    exported = torch.jit.load(folder / "pet.pt")
    assert any("harmonics" in name for name, _ in exported.named_modules())
    result = symplug_atoms.diagnose(symplug_atoms.load_model(str(folder / "pet.pt")), [cluster],
                                    degree=2, progress=False, check_convergence=False)
    assert result["precision"] == {"dtype": "float32", "epsilon": 2.0 ** -23, "source": "model"}
    for name in ("energy", "forces"):
        assert 0 < result["outputs"][name]["relative_error"] < 1e-5  # float32 round-off
    assert not [f for f in result["findings"] if f["severity"] in ("warning", "error")], \
        result["findings"]

"""weaver-core's ParticleTransformer diagnosed as-is through the weaver signature,
hidden layers included (sequence-first blocks)."""

import numpy as np
import pytest
import torch

pytest.importorskip("weaver")

import symplug_jets as sj  # noqa: E402
from symplug_jets.taggers import REFERENCE  # noqa: E402


@pytest.fixture(scope="module")
def part():
    torch.manual_seed(0)
    module = sj.ParticleTransformerWrapper(input_dim=7, num_classes=2, pair_input_dim=4,
                                           embed_dims=(32, 32, 32), pair_embed_dims=(16, 16, 16),
                                           num_heads=4, num_layers=2, num_cls_layers=1,
                                           fc_params=[]).double()
    return sj.WeaverTagger(module)


@pytest.fixture(scope="module")
def jets():
    found = sj.read_root(REFERENCE.with_name("tagger_test.root"), max_particles=64)
    return found.subset(np.arange(32))


def test_particle_transformer_is_beam_invariant_by_construction(part, jets):
    """Its kin features and pair features (ln kT, ln z, ln dR, ln m^2) depend only on
    differences in azimuth: invariant about the beam to float64 round-off."""
    result = sj.diagnose(part, jets, group="SO2", degree=2, layers=["mod.embed", "mod.blocks.0"],
                         progress=False, check_convergence=False)
    assert result["outputs"]["score"]["equivariance_rmse"] < 1e-10
    assert result["outputs"]["score"]["units"] == "probability"  # softmax over the classes
    for layer in result["layers"].values():
        assert abs(layer["invariant_fraction"] - 1) < 1e-10


def test_particle_transformer_about_the_jet_axis(part, jets):
    result = sj.diagnose(part, jets, group="SO2", degree=2, frame="jet",
                         layers=["mod.blocks.1"], progress=False, check_convergence=False)
    assert result["outputs"]["score"]["equivariance_rmse"] > 1e-3
    layer = result["layers"]["mod.blocks.1"]
    assert 0 < layer["invariant_fraction"] < 1
    assert abs(sum(layer["spectrum"].values()) + layer["truncation"] - 1) < 1e-12

"""Data-parallel diagnosis: partitions on a 2-worker dask cluster give the numbers of
one process (float64, to 1e-12), for jets read through uproot.dask and for atoms."""

import json
import math

import numpy as np
import pytest
import torch

import symplug

distributed = pytest.importorskip("distributed")
sj = pytest.importorskip("symplug_jets")
sa = pytest.importorskip("symplug_atoms")

from symplug_jets.domain import blocks, jet_partitions, jets_domain  # noqa: E402
from symplug_jets.rootio import read_root, write_jets, write_root  # noqa: E402


def assert_same_result(a: dict, b: dict, tol: float = 1e-12, path: str = "") -> None:
    """Every number of two results within ``tol`` (relative to max(1, |x|)); everything
    else equal."""
    if isinstance(a, dict):
        keys = set(a) - {"symplug_version"}
        assert keys == set(b) - {"symplug_version"}, (path, keys ^ set(b))
        for k in keys:
            assert_same_result(a[k], b[k], tol, f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_result(x, y, tol, f"{path}[{i}]")
    elif isinstance(a, float) and math.isfinite(a):
        assert abs(a - b) <= tol * max(1.0, abs(a)), (path, a, b)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def client():
    with symplug.connect(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory):
    """96 jets of the shipped test file (6 blocks of 16), with its labels and observers."""
    from symplug_jets.taggers import REFERENCE

    jets = read_root(REFERENCE.with_name("tagger_test.root")).subset(np.arange(96))
    path = tmp_path_factory.mktemp("jets") / "jets.root"
    write_jets(path, jets)
    return path


# the third run is local on purpose, beside the active client of the other two
@pytest.mark.filterwarnings("ignore:Running on a single-machine scheduler:UserWarning")
def test_jets_on_two_workers_equal_one_process(client, jets_file):
    tagger = sj.load_tagger("reference")
    domain = jets_domain("lab")
    options = dict(group="SO2", degree=4, layers=["embed", "pool"], progress=False,
                   skip_failures=True)
    single = symplug.diagnose(tagger, blocks(read_root(jets_file)), domain, **options)
    parts = jet_partitions([jets_file], step_size=32)  # 3 partitions of 2 blocks
    assert len(parts) == 3
    spread = symplug.diagnose(tagger, parts, domain, client=client, **options)
    local = symplug.diagnose(tagger, jet_partitions([jets_file], step_size=48), domain, **options)
    assert single["n_samples"] == spread["n_samples"] == 6
    assert single["n_items"] == spread["n_items"] == 96 and spread["item_name"] == "jets"
    assert single["summary"]["auc"] > 0.8 and single["summary"]["n_jets"] == 96
    assert single["layers"]["pool"]["invariant_fraction_centered"] < 1.0
    assert_same_result(spread, single)
    assert_same_result(local, single)


def test_atoms_frames_on_two_workers_equal_one_process(client, tmp_path):
    import ase.io
    from symplug_atoms.domain import atoms_domain, frame_partitions, read_frames
    from symplug_atoms.torch_model import SHIPPED_DIR

    frames = [read_frames(SHIPPED_DIR / "pet_cu_test.extxyz")[i] for i in (0, 2, 3, 8, 23)]
    assert all(len(f) == 13 for f in frames)  # the Cu13 clusters: seconds, not minutes
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames)
    model = sa.load_model("pet-cu")
    layers = ["embedding", "layers.0"]
    options = dict(group="O3", degree=2, layers=layers, progress=False, skip_failures=True)
    single = symplug.diagnose(model, read_frames(path), atoms_domain(), **options)
    parts = frame_partitions([path], size=2)
    assert len(parts) == 3
    spread = symplug.diagnose(model, parts, atoms_domain(), client=client, **options)
    assert spread["n_samples"] == 5 and "bias_variance" in spread["outputs"]["forces"]
    assert_same_result(spread, single)


def test_without_per_sample_lists_the_sums_are_the_same(client, jets_file):
    """per_sample=False: partitions send sums only; every aggregate is unchanged."""
    tagger = sj.load_tagger("reference")
    options = dict(group="SO2", degree=2, layers=["pool"], progress=False,
                   skip_failures=True, check_convergence=False)
    full = symplug.diagnose(tagger, blocks(read_root(jets_file)), jets_domain(), **options)
    lean = symplug.diagnose(tagger, jet_partitions([jets_file], step_size=32), jets_domain(),
                            client=client, per_sample=False, **options)
    for key in ("per_sample", "per_sample_spectrum"):
        assert key in full["outputs"]["score"] and key not in lean["outputs"]["score"]
        del full["outputs"]["score"][key]
    for key in ("per_sample_spectrum", "per_sample_invariant_fraction"):
        assert key not in lean["layers"]["pool"]
        del full["layers"]["pool"][key]
    assert_same_result(lean, full)


def test_feature_moments_merge_to_the_data_set_centring():
    """Chan's merge of per-sample moments gives the two-pass centred power."""
    from symplug.spectra import FeatureMoments

    gen = torch.Generator().manual_seed(0)
    means = [5.0 + torch.randn(n, 3, 4, generator=gen) for n in (1, 7, 3)]
    merged = FeatureMoments.of(means[0]).merge(FeatureMoments.of(means[1])).merge(
        FeatureMoments.of(means[2]))
    flat = torch.cat([m.reshape(-1, 4) for m in means])
    assert merged.count == flat.shape[0]
    assert torch.allclose(merged.mean, flat.mean(0), rtol=0, atol=1e-14)
    assert torch.allclose(merged.m2, ((flat - flat.mean(0)) ** 2).sum(0), rtol=1e-13, atol=0)


def test_a_failing_sample_is_skipped_with_its_global_index(client):
    """Sample indices count through the partitions; a failure on a worker is flagged."""
    from symplug import Domain, Output

    def act(sample, mats):
        if float(sample.sum()) < 0:
            raise ValueError("negative sample")
        return torch.einsum("bij,nj->bni", mats, sample)

    domain = Domain("toy", act, {"energy": Output("0e")})
    model = lambda x: {"energy": (x[..., 2] ** 2).sum(-1)}  # noqa: E731
    gen = torch.Generator().manual_seed(1)
    samples = [torch.randn(4, 3, generator=gen).abs() for _ in range(6)]
    samples[4] = -samples[4]
    parts = symplug.partition(samples, 3)
    spread = symplug.diagnose(model, parts, domain, degree=2, progress=False,
                              skip_failures=True, client=client)
    single = symplug.diagnose(model, samples, domain, degree=2, progress=False,
                              skip_failures=True)
    assert spread["skipped"] == [{"index": 4, "reason": "ValueError: negative sample"}]
    assert [s["index"] for s in spread["outputs"]["energy"]["per_sample"]] == [0, 1, 2, 3, 5]
    assert_same_result(spread, single)


def test_cli_diagnose_on_a_local_cluster_and_a_scheduler(client, jets_file, tmp_path, capsys):
    from symplug.cli import main

    common = ["diagnose", "jets", "--model", "reference", "--data", str(jets_file),
              "--degree", "2", "--no-convergence", "--skip-failures", "--quiet"]
    address = client.scheduler.address
    for name, extra in (("workers", ["--workers", "2", "--partition-size", "32"]),
                        ("scheduler", ["--scheduler", address, "--partition-size", "48"]),
                        ("single", [])):
        assert main(common + extra + ["--json", str(tmp_path / f"{name}.json")]) == 0
    single = json.loads((tmp_path / "single.json").read_text())
    for name in ("workers", "scheduler"):
        assert_same_result(json.loads((tmp_path / f"{name}.json").read_text()), single)
    assert main(["diagnose", "jets", "--model", "reference", "--data", str(jets_file),
                 "--workers", "2", "--max-samples", "2"]) == 2
    assert "--max-samples" in capsys.readouterr().err


def test_skipped_jets_keep_their_entry_and_file_and_an_all_bad_partition_is_an_error(
        client, tmp_path):
    from symplug_jets.taggers import REFERENCE

    jets = read_root(REFERENCE.with_name("tagger_test.root")).subset(np.arange(48))
    constituents = [p[m] for p, m in zip(jets.p4, jets.mask)]
    labels = {n: jets.labels[:, k].astype(np.int32) for k, n in enumerate(jets.label_names)}
    constituents[40] = np.zeros((0, 4))
    path = tmp_path / "one_bad.root"
    write_root(path, constituents, labels)
    options = dict(group="SO2", degree=2, progress=False, check_convergence=False)
    spread = sj.diagnose(sj.load_tagger("reference"), path, **options)  # one process
    parts = symplug.diagnose(sj.load_tagger("reference"), jet_partitions([path], step_size=16),
                             jets_domain(), client=client, skip_failures=True, **options)
    expected = [{"entry": 40, "reason": "no constituents", "file": str(path)}]
    assert spread["summary"]["skipped"] == parts["summary"]["skipped"] == expected
    assert parts["summary"]["n_jets"] == 47
    assert spread["n_items"] == parts["n_items"] == 47  # jets, counted on the workers
    constituents[32:48] = [np.zeros((0, 4))] * 16
    write_root(tmp_path / "bad_tail.root", constituents, labels)
    with pytest.raises(symplug.SymplugError, match=r"bad_tail.root: no usable jets in entries 32 to 47"):
        symplug.diagnose(sj.load_tagger("reference"),
                         jet_partitions([tmp_path / "bad_tail.root"], step_size=16),
                         jets_domain(), client=client, **options)

"""The jets adapter: ROOT/HDF5 jets that are broken or unphysical ("jets-data"), the
options of ``symplug jets generate``, ``diagnose jets`` and the analysis script
("options"), and taggers and weaver-style models that misbehave ("models").

Files are small synthetic ROOT files written with uproot (TTree ``tree``, jagged
``part_energy``/``part_px``/``part_py``/``part_pz`` in GeV, ``label_*``, ``jet_*``);
diagnoses use the ``mass`` tagger, SO2 degree 1 (3 rotations), no convergence check.
The taggers below are loaded by the CLI as ``bad_inputs.cases_jets:NAME``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from . import ERROR, RESULT, SKIP, Case

HERE = "bad_inputs.cases_jets"
SHIPPED_JETS = Path(__file__).resolve().parents[2] / "plugins/symplug_jets/data/tagger_test.root"
P4 = ("part_energy", "part_px", "part_py", "part_pz")
MAX_BATCH = 40  # above the orbit pass's batches here (16 and 32 jets), below the summary's 48


# -- synthetic jets ------------------------------------------------------------------------

def _jet(rng: np.random.Generator, count: int = 6) -> np.ndarray:
    """(count, 4) massless constituents (E, px, py, pz) about an axis at |eta| < 1.5."""
    eta, phi = rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
    axis = np.array([np.cos(phi), np.sin(phi), np.sinh(eta)])
    p = axis / np.linalg.norm(axis) * rng.uniform(20, 80, (count, 1)) + rng.normal(size=(count, 3))
    return np.concatenate([np.linalg.norm(p, axis=1)[:, None], p], 1)


def _sample(n: int = 24, seed: int = 0) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    top = (np.arange(n) % 2).astype(np.int32)
    return [_jet(rng, int(rng.integers(3, 12))) for _ in range(n)], \
        {"label_Top": top, "label_QCD": 1 - top}


def _write(tmp: Path, cons=None, labels=None, observers=None, name="jets.root") -> Path:
    from symplug_jets.rootio import write_root

    default_cons, default_labels = _sample()
    return write_root(tmp / name, default_cons if cons is None else cons,
                      default_labels if labels is None else labels, observers)


def _tree(tmp: Path, branches: dict, name: str = "jets.root", tree: str = "tree") -> Path:
    """A TTree of arbitrary branches (awkward or numpy values)."""
    import awkward as ak
    import uproot

    path = tmp / name
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: (ak.type(v).content if isinstance(v, ak.Array) else
                            np.dtype((np.asarray(v).dtype, np.asarray(v).shape[1:])))
                        for k, v in branches.items()})
        f[tree].extend(branches)
    return path


def _branches(cons=None, labels=None) -> dict:
    import awkward as ak

    cons, default = (_sample()[0], _sample()[1]) if cons is None else (cons, _sample()[1])
    return {**{b: ak.Array([c[:, k] for c in cons]) for k, b in enumerate(P4)},
            **(default if labels is None else labels)}


def _diagnose(path, model: str = "mass", *extra: str, domain: str = "jets") -> list[str]:
    trust = ["--trust-model"] if ":" in model else []  # the test's own module:function taggers
    return ["diagnose", domain, "--model", model, "--data", str(path), "--group", "SO2",
            "--degree", "1", "--no-convergence", "--quiet", "--json", "{tmp}/result.json",
            *trust, *extra]


def _changed(edit, **write) -> callable:
    """argv of a diagnosis of the default sample after ``edit(cons, labels)``."""
    def argv(tmp: Path) -> list[str]:
        cons, labels = _sample()
        cons = [c.copy() for c in cons]
        edit(cons, labels)
        return _diagnose(_write(tmp, cons, labels, **write))
    return argv


def _summary(tmp: Path) -> dict:
    return json.loads((tmp / "result.json").read_text())["summary"]


def _skipped_reason(pattern: str, n_jets: int):
    def check(tmp: Path, out: str) -> None:
        s = _summary(tmp)
        assert s["n_jets"] == n_jets, s["n_jets"]
        assert any(pattern in k["reason"] for k in s["skipped"]), s["skipped"]
    return check


def _kept(n_jets: int, auc: bool = True):
    def check(tmp: Path, out: str) -> None:
        s = _summary(tmp)
        assert s["n_jets"] == n_jets and not s["skipped"], s
        assert (s.get("auc") is not None) == auc and 0.0 <= (s.get("auc") or 0.0) <= 1.0, s
    return check


# -- ROOT files -----------------------------------------------------------------------------

def _text(tmp: Path) -> list[str]:
    (tmp / "jets.root").write_text("part_px,part_py\n1,2\n")
    return _diagnose(tmp / "jets.root")


def _empty_file(tmp: Path) -> list[str]:
    (tmp / "jets.root").write_bytes(b"")
    return _diagnose(tmp / "jets.root")


def _truncated(tmp: Path) -> list[str]:
    data = _write(tmp, name="full.root").read_bytes()
    (tmp / "jets.root").write_bytes(data[: len(data) // 2])
    return _diagnose(tmp / "jets.root")


def _torn_on_workers(tmp: Path) -> list[str]:
    """The shipped file cut after its metadata: the tree opens, its baskets are gone, so
    the failure comes from a worker reading a partition."""
    data = SHIPPED_JETS.read_bytes()
    (tmp / "torn.root").write_bytes(data[:400_000])
    return _diagnose(tmp / "torn.root", "mass", "--workers", "1")


def _folder(tmp: Path) -> list[str]:
    (tmp / "jets.root").mkdir()
    return _diagnose(tmp / "jets.root")


def _histogram_only(tmp: Path) -> list[str]:
    import uproot

    with uproot.recreate(tmp / "jets.root") as f:
        f["h_pt"] = np.histogram([500.0, 600.0])
    return _diagnose(tmp / "jets.root")


def _histogram_named_tree(tmp: Path) -> list[str]:
    import uproot

    with uproot.recreate(tmp / "jets.root") as f:
        f["tree"] = np.histogram([500.0, 600.0])
    return _diagnose(tmp / "jets.root")


def _wrong_tree(tmp: Path) -> list[str]:
    return _diagnose(_tree(tmp, _branches(), tree="Events"))


def _missing_branch(tmp: Path) -> list[str]:
    branches = _branches()
    del branches["part_pz"]
    return _diagnose(_tree(tmp, branches))


def _flat_constituents(tmp: Path) -> list[str]:
    branches = _branches()
    branches["part_px"] = np.ones(24)  # one number per jet: a jet-level branch by mistake
    return _diagnose(_tree(tmp, branches))


def _matrix_per_jet(tmp: Path) -> list[str]:
    branches = _branches()
    branches["part_energy"] = np.ones((24, 16, 3))  # a (P, 3) block per jet, not energies
    return _diagnose(_tree(tmp, branches))


def _jagged_label(tmp: Path) -> list[str]:
    import awkward as ak

    branches = _branches()
    branches["label_Top"] = ak.Array([[float(x)] * 2 for x in branches["label_Top"]])
    return _diagnose(_tree(tmp, branches))


def _jagged_observer(tmp: Path) -> list[str]:
    import awkward as ak

    branches = _branches()
    branches["jet_pt"] = ak.Array([[500.0]] * 24)
    return _diagnose(_tree(tmp, branches))


def _ragged(tmp: Path) -> list[str]:
    import awkward as ak

    branches = _branches()
    px = [list(x) for x in ak.to_list(branches["part_px"])]
    px[2] = px[2][:-1]
    branches["part_px"] = ak.Array(px)
    return _diagnose(_tree(tmp, branches))


def _empty_tree(tmp: Path) -> list[str]:
    import awkward as ak
    import uproot

    with uproot.recreate(tmp / "jets.root") as f:
        f.mktree("tree", {b: ak.types.ListType(ak.types.NumpyType("float64")) for b in P4})
    return _diagnose(tmp / "jets.root")


def _fixed_length(tmp: Path) -> list[str]:
    """Fixed-length float32 arrays, zero-padded to 16 (as some converters write)."""
    cons, labels = _sample()
    padded = np.zeros((len(cons), 16, 4), np.float32)
    for i, c in enumerate(cons):
        padded[i, :len(c)] = c
    return _diagnose(_tree(tmp, {**{b: padded[..., k] for k, b in enumerate(P4)}, **labels}))


def _int_momenta(tmp: Path) -> list[str]:
    import awkward as ak

    cons, labels = _sample()
    cons = [np.round(c * 1000) for c in cons]  # MeV integers (the mass tagger reads GeV)
    branches = {b: ak.values_astype(ak.Array([c[:, k] for c in cons]), np.int64)
                for k, b in enumerate(P4)}
    branches["part_energy"] = ak.Array([np.ceil(np.linalg.norm(c[:, 1:], axis=1)).astype(np.int64)
                                        for c in cons])
    return _diagnose(_tree(tmp, {**branches, **labels}))


def _rntuple(tmp: Path) -> list[str]:
    """``f["tree"] = {...}`` writes an RNTuple in uproot 5.7, not a TTree: read alike."""
    import uproot

    with uproot.recreate(tmp / "jets.root") as f:
        f["tree"] = _branches()
    return _diagnose(tmp / "jets.root")


def _float32_massless(tmp: Path) -> list[str]:
    cons, labels = _sample()
    cons = [c.astype(np.float32).astype(np.float64) for c in cons]  # E = |p| up to 6e-8
    for c in cons:
        c[:, 0] = np.nextafter(c[:, 0].astype(np.float32), np.float32(0))
    return _diagnose(_write(tmp, cons, labels))


def _two_files_one_empty(tmp: Path) -> list[str]:
    import awkward as ak
    import uproot

    good = _write(tmp, name="good.root")
    with uproot.recreate(tmp / "empty.root") as f:
        f.mktree("tree", {b: ak.types.ListType(ak.types.NumpyType("float64")) for b in P4})
    argv = _diagnose(good)
    argv[argv.index("--data") + 1:argv.index("--data") + 2] = [str(good), str(tmp / "empty.root")]
    return argv


def _zero_jets(cons, labels) -> None:
    cons[3] = np.zeros((0, 4))
    cons[7] = np.zeros((0, 4))


def _padding_only(cons, labels) -> None:
    cons[5] = np.zeros((8, 4))


def _nan_energy(cons, labels) -> None:
    cons[4][1, 0] = np.nan


def _inf_momentum(cons, labels) -> None:
    cons[6][0, 3] = np.inf


def _huge(cons, labels) -> None:
    cons[2][0] = [1e300, 0.0, 0.0, 1e300]


def _negative_energy(cons, labels) -> None:
    cons[1][0, 0] = -cons[1][0, 0]  # E = -|p|: m^2 = 0, only the sign is wrong


def _spacelike(cons, labels) -> None:
    cons[9][0, 0] = 0.5 * cons[9][0, 0]  # E = |p| / 2


def _along_beam(cons, labels) -> None:
    cons[10] = np.array([[300.0, 0.0, 0.0, 300.0], [200.0, 0.0, 0.0, 200.0]])


def _too_many_constituents(cons, labels) -> None:
    cons[0] = _jet(np.random.default_rng(5), 300)  # kept: the leading 128 in pT


def _single_constituent(cons, labels) -> None:
    cons[0] = cons[0][:1]


def _soft_labels(cons, labels) -> None:
    labels["label_Top"] = np.where(labels["label_Top"] == 1, 0.9, 0.1)
    labels["label_QCD"] = 1.0 - labels["label_Top"]


def _multi_hot(cons, labels) -> None:
    labels["label_QCD"] = labels["label_QCD"].copy()
    labels["label_QCD"][3] = 1


def _no_class(cons, labels) -> None:
    labels["label_Top"] = labels["label_Top"].copy()
    labels["label_Top"][0] = 0
    labels["label_QCD"] = labels["label_QCD"].copy()
    labels["label_QCD"][0] = 0


def _nan_label(cons, labels) -> None:
    labels["label_Top"] = labels["label_Top"].astype(np.float64)
    labels["label_Top"][2] = np.nan


def _label_two(cons, labels) -> None:
    labels.pop("label_QCD")
    labels["label_Top"] = np.where(labels["label_Top"] == 1, 2, 0)  # class index, not a flag


def _bool_labels(cons, labels) -> None:
    labels.update({k: v.astype(bool) for k, v in labels.items()})


def _one_label_branch(cons, labels) -> None:
    labels.pop("label_QCD")


def _one_class(cons, labels) -> None:
    labels["label_Top"] = np.ones(24, np.int32)
    labels["label_QCD"] = np.zeros(24, np.int32)


def _no_labels(cons, labels) -> None:
    labels.clear()


def _nan_observer(tmp: Path) -> list[str]:
    pt = np.full(24, 550.0)
    pt[3] = np.nan  # observers are carried, never inputs
    return _diagnose(_write(tmp, observers={"jet_pt": pt}))


def _back_to_back(tmp: Path) -> list[str]:
    cons, labels = _sample()
    cons[4] = np.array([[100.0, 100.0, 0.0, 0.0], [100.0, -100.0, 0.0, 0.0]])  # no jet axis
    return _diagnose(_write(tmp, cons, labels), domain="jets_axis")


def _h5(tmp: Path, edit=None) -> Path:
    import pandas as pd

    cons, labels = _sample()
    frame = {}
    for c, k in (("E", 0), ("PX", 1), ("PY", 2), ("PZ", 3)):
        for i in range(12):
            frame[f"{c}_{i}"] = [j[i, k] if i < len(j) else 0.0 for j in cons]
    frame["is_signal_new"] = labels["label_Top"]
    frame = pd.DataFrame(frame)
    if edit:
        edit(frame)
    frame.to_hdf(tmp / "jets.h5", key="table")
    return tmp / "jets.h5"


def _h5_bad_label(tmp: Path) -> list[str]:
    def edit(frame):
        frame.loc[5, "is_signal_new"] = 2
    return _diagnose(_h5(tmp, edit))


def _h5_no_label(tmp: Path) -> list[str]:
    return _diagnose(_h5(tmp, lambda frame: frame.pop("is_signal_new")))


def _h5_not_hdf5(tmp: Path) -> list[str]:
    (tmp / "jets.h5").write_text("E_0,PX_0\n")
    return _diagnose(tmp / "jets.h5")


def _read_max_particles(tmp: Path):
    from symplug_jets import read_root

    return read_root(_write(tmp), max_particles=0)


def _read_unknown_label(tmp: Path):
    from symplug_jets import read_root

    return read_root(_write(tmp), labels=["label_Wqq"])


def _auc_nan(tmp: Path):
    from symplug_jets import auc

    return auc(np.full(8, np.nan), np.arange(8) % 2)


def _auc_inf(tmp: Path):
    from symplug_jets import auc

    return auc(np.array([0.1, np.inf, 0.3, 0.9]), np.array([0, 1, 0, 1]))


def _auc_class_index(tmp: Path):
    from symplug_jets import auc

    return auc(np.linspace(0, 1, 6), np.array([0, 1, 2, 0, 1, 2]))


def _auc_lengths(tmp: Path):
    from symplug_jets import auc

    return auc(np.linspace(0, 1, 6), np.array([0, 1, 0, 1]))


def _rejection_one_class(tmp: Path):
    from symplug_jets import rejection

    return rejection(np.linspace(0, 1, 6), np.zeros(6, bool), 0.5)


def _boost_scan_nan(tmp: Path):
    from symplug_jets import boost_scan, read_root

    def nan_when_boosted(p4, mask):  # overflows on extreme boosts
        import torch

        e = (p4[..., 0] * mask).sum(1)
        return torch.where(e > 1e9, torch.nan, 0.5)

    return boost_scan(nan_when_boosted, read_root(_write(tmp)), [0.0, 20.0])


def _boost_scan_check(tmp: Path, rows) -> None:
    assert rows[0]["auc"] == 0.5 and rows[1]["auc"] is None, rows
    assert "NaN or inf" in rows[1]["undefined"], rows[1]


# -- taggers (bad_inputs.cases_jets:NAME) ----------------------------------------------------

def _mass(p4, mask):
    from symplug_jets.taggers import mass_tagger

    return mass_tagger(p4, mask)


def one_too_many(p4, mask):
    return _mass(p4, mask)[:-1]


def scalar_score(p4, mask):
    return _mass(p4, mask).mean()


def returns_none(p4, mask):
    return None


def returns_words(p4, mask):
    return ["top"] * p4.shape[0]


def complex_scores(p4, mask):
    return _mass(p4, mask).to(__import__("torch").complex128)


def three_dims(p4, mask):
    return _mass(p4, mask)[:, None, None].expand(-1, 2, 1)


def three_classes(p4, mask):
    import torch

    s = _mass(p4, mask)
    return torch.stack([s / 2, s / 2, 1 - s], 1)  # a JetClass head on a top/QCD file


def one_column(p4, mask):
    return _mass(p4, mask)[:, None]


def hard_decisions(p4, mask):
    return (_mass(p4, mask) > 0.5).long()


def numpy_scores(p4, mask):
    return _mass(p4, mask).numpy()


def all_nan(p4, mask):
    return _mass(p4, mask) * float("nan")


def nan_for_busy_jets(p4, mask):
    import torch

    s = _mass(p4, mask)
    return torch.where(mask.sum(1) > 15, torch.nan, s)  # a feature overflows on busy jets


def raises(p4, mask):
    raise ValueError("feature 'part_d0val' missing from the input")


def fixed_batch(p4, mask):
    """An exported model with a static batch dimension: more jets than it was built for fail."""
    if p4.shape[0] > MAX_BATCH:
        raise RuntimeError(f"expected batch of at most {MAX_BATCH}, got {p4.shape[0]}")
    return _mass(p4, mask)


def nan_on_large_batch(p4, mask):
    """Overflows (NaN) on batches larger than the orbit pass's: only the summary sees it."""
    s = _mass(p4, mask)
    return s * float("nan") if p4.shape[0] > MAX_BATCH else s


NOT_CALLABLE = 0.5


def _tagger_module(tmp: Path, name: str, source: str) -> None:
    (tmp / f"{name}.py").write_text(source)
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))


def _import_error_module(tmp: Path) -> list[str]:
    _tagger_module(tmp, "tagger_needs_gpu", "raise RuntimeError('CUDA driver not found')\n")
    return _diagnose(_write(tmp), "tagger_needs_gpu:score")


def _syntax_error_module(tmp: Path) -> list[str]:
    _tagger_module(tmp, "tagger_typo", "def score(p4, mask)\n    return p4\n")
    return _diagnose(_write(tmp), "tagger_typo:score")


def _weaver_module(tmp: Path) -> list[str]:
    _tagger_module(tmp, "weaver_tagger_ok", '''
import torch
from symplug_jets import WeaverTagger


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(7, 2).double()

    def forward(self, points, features, lorentz_vectors, mask):
        return self.fc((features * mask).sum(-1))


tagger = WeaverTagger(Net())
''')
    return _diagnose(_write(tmp), "weaver_tagger_ok:tagger")


def _checkpoint(tmp: Path, what: str) -> list[str]:
    import torch

    path = tmp / "tagger.pt"
    if what == "text":
        path.write_text("epoch 20, auc 0.96\n")
    elif what == "state_dict":
        from symplug_jets.tagger_model import ParticleTransformerTagger

        torch.save(ParticleTransformerTagger().state_dict(), path)
    elif what == "mismatch":
        saved = torch.load(Path(__import__("symplug_jets").__file__).parent / "data" / "tagger.pt",
                           weights_only=True)
        saved["config"] = {**saved["config"], "dim": 2 * saved["config"].get("dim", 32)}
        torch.save(saved, path)
    return _diagnose(_write(tmp), str(path))


# -- weaver-style taggers (Python API) -------------------------------------------------------

def _part(**config):
    from symplug_jets import ParticleTransformerWrapper

    base = dict(input_dim=7, num_classes=2, pair_input_dim=4, embed_dims=(8, 8, 8),
                pair_embed_dims=(4, 4, 4), num_heads=2, num_layers=1, num_cls_layers=1,
                fc_params=[])
    return ParticleTransformerWrapper(**{**base, **config}).double()


def _diagnose_weaver(tmp: Path, tagger):
    from symplug_jets import diagnose, read_root

    return diagnose(tagger, read_root(_write(tmp)), group="SO2", degree=1, progress=False,
                    check_convergence=False, skip_failures=False)


def _weaver_full_config(tmp: Path):
    from symplug_jets import WeaverTagger

    return _diagnose_weaver(tmp, WeaverTagger(_part(input_dim=17)))  # JetClass "full": 17


def _weaver_unknown_option(tmp: Path):
    return _part(num_layer=2)


def _weaver_one_class(tmp: Path):
    from symplug_jets import WeaverTagger

    return _diagnose_weaver(tmp, WeaverTagger(_part(num_classes=1)))


def _weaver_tuple(tmp: Path):
    import torch
    from symplug_jets import WeaverTagger

    class WithFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(7, 2).double()

        def forward(self, points, features, lorentz_vectors, mask):
            pooled = (features * mask).sum(-1)
            return self.fc(pooled), pooled  # (logits, embedding): a training-time head

    return _diagnose_weaver(tmp, WeaverTagger(WithFeatures()))


def _weaver_not_module(tmp: Path):
    from symplug_jets import WeaverTagger

    return WeaverTagger({"state_dict": {}})  # a loaded checkpoint instead of the network


def _weaver_bad_recipe(tmp: Path):
    from symplug_jets import WeaverTagger, kin_features

    return _diagnose_weaver(tmp, WeaverTagger(_part(), recipe=lambda p4, m: kin_features(p4, m)[:3]))


# -- analysis script and finetune -----------------------------------------------------------

def _analysis(*argv: str):
    def call(tmp: Path):
        path = Path(__file__).resolve().parents[2] / "examples" / "jet_tagging_analysis.py"
        spec = importlib.util.spec_from_file_location("jet_tagging_analysis", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = [a.replace("{tmp}", str(tmp)) for a in argv]
        if "--data" not in args:
            args += ["--data", str(_write(tmp))]
        return module.main([*args, "--quiet", "--degree", "1"] if "--degree" not in args
                           else [*args, "--quiet"])
    return call


def _analysis_data(edit):
    def call(tmp: Path):
        cons, labels = _sample()
        edit(cons, labels)
        return _analysis("--data", str(_write(tmp, cons, labels)), "--out", "{tmp}/out")(tmp)
    return call


def _finetune(model: str, edit=None):
    def argv(tmp: Path) -> list[str]:
        cons, labels = _sample()
        if edit:
            edit(cons, labels)
        return ["finetune", "jets", "--model", model, "--data", str(_write(tmp, cons, labels)),
                "--epochs", "1", "--out", "{tmp}/ft", "--quiet"]
    return argv


def _generate_check(tmp: Path, out: str) -> None:
    assert "2 jets (1 top, 1 QCD)" in out, out
    from symplug_jets import read_root

    assert len(read_root(tmp / "gen.root")) == 2


def _undefined_check(pattern: str, flip: bool):
    def check(tmp: Path, out: str) -> None:
        s = _summary(tmp)
        assert s["auc"] is None and s["background_rejection"] is None and s["roc"] is None, s
        assert pattern in s["undefined"] and f"summary: {s['undefined']}" in out, (s, out)
        assert (s["flip_rate"] is None) == (not flip), s["flip_rate"]
    return check


def _unlabelled_check(s: dict) -> None:
    assert "auc" not in s and "n_signal" not in s and s["flip_rate"] is not None, s


def _sample64(tmp: Path, model: str, *extra: str) -> list[str]:
    cons, labels = _sample(64, seed=1)
    return _diagnose(_write(tmp, cons, labels), model, *extra)


CASES = [
    # -- jets-data: files that are not jets -------------------------------------------------
    Case("jets/text-file-named-root", "jets-data", ERROR, r"jets\.root: not a readable ROOT file",
         argv=_text),
    Case("jets/empty-file", "jets-data", ERROR, r"jets\.root: not a readable ROOT file",
         argv=_empty_file),
    Case("jets/truncated-transfer", "jets-data", ERROR,
         r"jets\.root: (not a readable ROOT file|cannot read TTree)", argv=_truncated),
    Case("jets/torn-baskets-on-workers", "jets-data", ERROR,
         r"a task on the dask cluster failed \(jets partitions\): OSError: .*torn\.root",
         argv=_torn_on_workers),
    Case("jets/missing-file", "jets-data", ERROR, r"nope\.root(: no such file|' does not exist)",
         argv=_diagnose("{tmp}/nope.root")),
    Case("jets/folder-as-file", "jets-data", ERROR, r"jets\.root: a folder", argv=_folder),
    Case("jets/histograms-only", "jets-data", ERROR, r"no TTree 'tree' \(found h_pt\)",
         argv=_histogram_only),
    Case("jets/histogram-named-tree", "jets-data", ERROR, r"'tree' is a TH1D, not a TTree",
         argv=_histogram_named_tree),
    Case("jets/weaver-events-tree-name", "jets-data", ERROR, r"no TTree 'tree' \(found Events\)",
         argv=_wrong_tree),
    Case("jets/missing-pz-branch", "jets-data", ERROR, r"has no branch 'part_pz'",
         argv=_missing_branch),
    Case("jets/constituent-branch-flat", "jets-data", ERROR,
         r"branch 'part_px' is float64, expected a list of numbers per jet",
         argv=_flat_constituents),
    Case("jets/constituent-branch-matrix-per-jet", "jets-data", ERROR,
         r"branch 'part_energy' is 16 \* 3 \* float64, expected a list", argv=_matrix_per_jet),
    Case("jets/label-branch-jagged", "jets-data", ERROR,
         r"branch 'label_Top' is .*, expected one number per jet", argv=_jagged_label),
    Case("jets/observer-branch-jagged", "jets-data", ERROR,
         r"branch 'jet_pt' is .*, expected one number per jet", argv=_jagged_observer),
    Case("jets/ragged-constituent-branches", "jets-data", ERROR,
         r"jet 2 has \d+ entries in 'part_px' but \d+ in 'part_energy'", argv=_ragged),
    Case("jets/empty-tree", "jets-data", ERROR, r"jets\.root: TTree 'tree' has no entries",
         argv=_empty_tree),
    Case("jets/second-file-empty", "jets-data", ERROR, r"empty\.root: TTree 'tree' has no entries",
         argv=_two_files_one_empty),
    Case("jets/every-jet-empty", "jets-data", ERROR,
         r"no usable jets in entries 0 to 23 \(24 skipped; first: no constituents\)",
         argv=_changed(lambda cons, labels: cons.__setitem__(slice(None), [np.zeros((0, 4))] * 24))),
    # -- jets-data: unphysical jets, skipped and counted -------------------------------------
    Case("jets/jets-without-constituents", "jets-data", RESULT, argv=_changed(_zero_jets),
         check=_skipped_reason("no constituents", 22)),
    Case("jets/zero-four-vectors-only", "jets-data", RESULT, argv=_changed(_padding_only),
         check=_skipped_reason("no constituents", 23)),
    Case("jets/fixed-length-zero-padded-float32", "jets-data", RESULT, argv=_fixed_length,
         check=_kept(24)),
    Case("jets/nan-energy", "jets-data", RESULT, argv=_changed(_nan_energy),
         check=_skipped_reason("non-finite constituent momenta", 23)),
    Case("jets/inf-pz", "jets-data", RESULT, argv=_changed(_inf_momentum),
         check=_skipped_reason("non-finite constituent momenta", 23)),
    Case("jets/huge-momenta", "jets-data", RESULT, argv=_changed(_huge),
         check=_skipped_reason("momentum above 1e+06 GeV", 23)),
    Case("jets/negative-energy-massless", "jets-data", RESULT, argv=_changed(_negative_energy),
         check=_skipped_reason("negative energy", 23)),
    Case("jets/spacelike-constituent", "jets-data", RESULT, argv=_changed(_spacelike),
         check=_skipped_reason("E < |p|", 23)),
    Case("jets/float32-rounded-massless-kept", "jets-data", RESULT, argv=_float32_massless,
         check=_kept(24)),
    Case("jets/jet-along-the-beam", "jets-data", RESULT, argv=_changed(_along_beam),
         check=_skipped_reason("zero summed pT", 23)),
    Case("jets/back-to-back-no-jet-axis", "jets-data", RESULT, argv=_back_to_back,
         check=_skipped_reason("no jet axis", 23)),
    Case("jets/300-constituents-leading-128", "jets-data", RESULT,
         argv=_changed(_too_many_constituents), check=_kept(24)),
    Case("jets/single-constituent-jet", "jets-data", RESULT,
         argv=_changed(_single_constituent), check=_kept(24)),
    Case("jets/integer-mev-branches", "jets-data", RESULT, argv=_int_momenta, check=_kept(24)),
    Case("jets/rntuple-layout", "jets-data", RESULT, argv=_rntuple, check=_kept(24)),
    Case("jets/nan-observer-carried", "jets-data", RESULT, argv=_nan_observer, check=_kept(24)),
    # -- jets-data: labels -----------------------------------------------------------------
    Case("jets/soft-labels", "jets-data", ERROR,
         r"jet 0: label branch 'label_QCD' is 0\.9; labels must be 0 or 1 .*soft",
         argv=_changed(_soft_labels)),
    Case("jets/multi-hot-labels", "jets-data", ERROR,
         r"jet 3 has 2 of the label branches label_QCD, label_Top set.*multi-hot",
         argv=_changed(_multi_hot)),
    Case("jets/jet-without-class", "jets-data", ERROR, r"jet 0 has 0 of the label branches.*unlabelled",
         argv=_changed(_no_class)),
    Case("jets/nan-label", "jets-data", ERROR, r"jet 2: label branch 'label_Top' is nan",
         argv=_changed(_nan_label)),
    Case("jets/class-index-as-label", "jets-data", ERROR, r"jet 1: label branch 'label_Top' is 2",
         argv=_changed(_label_two)),
    Case("jets/bool-labels", "jets-data", RESULT, argv=_changed(_bool_labels), check=_kept(24)),
    Case("jets/single-binary-label-branch", "jets-data", RESULT,
         argv=_changed(_one_label_branch), check=_kept(24)),
    Case("jets/only-signal-jets", "jets-data", RESULT, argv=_changed(_one_class),
         check=_undefined_check("only signal jets (24): the ROC needs both", flip=True)),
    Case("jets/unlabelled-file", "jets-data", RESULT, argv=_changed(_no_labels),
         check=lambda tmp, out: _unlabelled_check(_summary(tmp))),
    # -- jets-data: the Top Quark Tagging HDF5 layout ---------------------------------------
    Case("jets/h5-is-signal-2", "jets-data", ERROR, r"jets\.h5: jet 5: column 'is_signal_new' is 2",
         argv=_h5_bad_label),
    Case("jets/h5-no-label-column", "jets-data", ERROR, r"has no column 'is_signal_new'",
         argv=_h5_no_label),
    Case("jets/h5-not-hdf5", "jets-data", ERROR, r"jets\.h5: not a readable HDF5 table",
         argv=_h5_not_hdf5),
    # -- jets-data: the Python API ---------------------------------------------------------
    Case("jets/read-max-particles-0", "jets-data", ERROR, r"max_particles must be >= 1",
         call=_read_max_particles),
    Case("jets/read-unknown-label", "jets-data", ERROR, r"unknown label branch 'label_Wqq'",
         call=_read_unknown_label),
    Case("jets/auc-all-nan", "jets-data", ERROR, r"undefined: 8 of 8 scores are NaN or inf",
         call=_auc_nan),
    Case("jets/auc-inf-score", "jets-data", ERROR, r"undefined: 1 of 4 scores .*first: jet 1",
         call=_auc_inf),
    Case("jets/auc-class-index", "jets-data", ERROR, r"is_signal of jet 2 is .*bool or 0/1",
         call=_auc_class_index),
    Case("jets/auc-length-mismatch", "jets-data", ERROR, r"scores \(6,\) and is_signal \(4,\)",
         call=_auc_lengths),
    Case("jets/rejection-background-only", "jets-data", ERROR,
         r"only background jets \(6\).*both signal and background", call=_rejection_one_class),
    Case("jets/boost-scan-nan-stated", "jets-data", RESULT, call=_boost_scan_nan,
         check=_boost_scan_check),
    # -- options ---------------------------------------------------------------------------
    Case("options/jets-generate-n-0", "options", ERROR, r"--n must be >= 1",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--n", "0"]),
    Case("options/jets-generate-seed-negative", "options", ERROR, r"--seed must be in \[0, ",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--n", "1", "--seed", "-1"]),
    Case("options/jets-generate-seed-beyond-pythia", "options", ERROR,
         r"--seed must be in \[0, 899999999\]",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--n", "1", "--seed", "900000000"]),
    Case("options/jets-generate-pt-inverted", "options", ERROR, r"--pt-max must be in \(--pt-min",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--pt-min", "650", "--pt-max", "550"]),
    Case("options/jets-generate-pt-min-low", "options", ERROR, r"--pt-min must be in \[100, 7000\]",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--pt-min", "20"]),
    Case("options/jets-generate-pt-max-nan", "options", ERROR, r"--pt-max .* got nan",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--pt-max", "nan"]),
    Case("options/jets-generate-n-not-int", "options", ERROR, r"argument --n: invalid int value",
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--n", "1e3"]),
    Case("options/jets-generate-one-per-class", "options", RESULT, timeout=180,
         argv=["jets", "generate", "--out", "{tmp}/gen.root", "--n", "1", "--quiet"],
         check=_generate_check),
    Case("options/jets-diagnose-partition-size-0", "options", ERROR,
         r"--partition-size: must be >= 1",
         argv=lambda tmp: _diagnose(_write(tmp), "mass", "--workers", "1",
                                    "--partition-size", "0")),
    Case("options/jets-analysis-max-jets-0", "options", ERROR, r"--max-jets must be >= 2",
         call=_analysis("--max-jets", "0", "--out", "{tmp}/out")),
    Case("options/jets-analysis-degree-negative", "options", ERROR, r"--degree must be in \[0, 12\]",
         call=_analysis("--degree", "-1", "--out", "{tmp}/out")),
    Case("options/jets-analysis-out-is-file", "options", ERROR, r"--out .*: a file, not a folder",
         call=lambda tmp: _analysis("--out", "{tmp}/out")(tmp) if (tmp / "out").touch() is None
         else None),
    Case("options/jets-analysis-missing-data", "options", ERROR, r"missing\.root: no such file",
         call=_analysis("--data", "{tmp}/missing.root", "--out", "{tmp}/out")),
    Case("options/jets-analysis-unknown-model", "options", ERROR, r"unknown tagger 'partnet'",
         call=_analysis("--model", "partnet", "--out", "{tmp}/out")),
    Case("options/jets-analysis-unlabelled", "options", ERROR, r"needs labelled jets",
         call=_analysis_data(_no_labels)),
    Case("options/jets-analysis-one-class", "options", ERROR,
         r"undefined: only signal jets .*both signal and background",
         call=_analysis_data(_one_class)),
    # -- models ----------------------------------------------------------------------------
    Case("models/jets-unknown-shipped-tagger", "models", ERROR, r"unknown tagger 'particlenet'",
         argv=lambda tmp: _diagnose(_write(tmp), "particlenet")),
    Case("models/jets-missing-module", "models", ERROR,
         r"cannot load tagger 'my_tagger:score'.*ModuleNotFoundError",
         argv=lambda tmp: _diagnose(_write(tmp), "my_tagger:score")),
    Case("models/jets-module-fails-on-import", "models", ERROR,
         r"cannot load tagger 'tagger_needs_gpu:score': RuntimeError: CUDA driver not found",
         argv=_import_error_module),
    Case("models/jets-module-syntax-error", "models", ERROR,
         r"cannot load tagger 'tagger_typo:score': SyntaxError", argv=_syntax_error_module),
    Case("models/jets-attribute-not-callable", "models", ERROR, r"is not callable",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:NOT_CALLABLE")),
    Case("models/jets-checkpoint-missing", "models", ERROR, r"no such tagger checkpoint",
         argv=lambda tmp: _diagnose(_write(tmp), "{tmp}/best.pt")),
    Case("models/jets-checkpoint-text", "models", ERROR,
         r"tagger\.pt: not a readable tagger checkpoint",
         argv=lambda tmp: _checkpoint(tmp, "text")),
    Case("models/jets-checkpoint-bare-state-dict", "models", ERROR,
         r"not a symplug tagger checkpoint \(KeyError", argv=lambda tmp: _checkpoint(tmp, "state_dict")),
    Case("models/jets-checkpoint-config-mismatch", "models", ERROR,
         r"not a symplug tagger checkpoint \((RuntimeError|TypeError)",
         argv=lambda tmp: _checkpoint(tmp, "mismatch")),
    Case("models/jets-tagger-drops-a-jet", "models", ERROR,
         r"returned \(\d+,\) scores for \d+ jets",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:one_too_many")),
    Case("models/jets-tagger-scalar", "models", ERROR, r"returned \(\) scores for",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:scalar_score")),
    Case("models/jets-tagger-returns-none", "models", ERROR, r"returned a NoneType, not scores",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:returns_none")),
    Case("models/jets-tagger-returns-words", "models", ERROR, r"returned a list, not scores",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:returns_words")),
    Case("models/jets-tagger-complex", "models", ERROR, r"returned complex scores",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:complex_scores")),
    Case("models/jets-tagger-three-dims", "models", ERROR,
         r"returned \(\d+, 2, 1\) scores.*expected \(N,\) or \(N, C\)",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:three_dims")),
    Case("models/jets-tagger-more-classes-than-labels", "models", ERROR,
         r"jets summary failed: the tagger's scores are \(24, 3\).*one column per label branch \(2",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:three_classes")),
    Case("models/jets-tagger-more-classes-skip-failures", "models", SKIP,
         r"jets summary skipped: the tagger's scores are \(24, 3\)",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:three_classes", "--skip-failures")),
    Case("models/jets-tagger-one-column", "models", RESULT, check=_kept(24),
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:one_column")),
    Case("models/jets-tagger-hard-decisions", "models", RESULT, check=_kept(24),
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:hard_decisions")),
    Case("models/jets-tagger-numpy", "models", RESULT, check=_kept(24),
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:numpy_scores")),
    Case("models/jets-tagger-all-nan", "models", ERROR, r"sample 0: .*(NaN|non-finite)",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:all_nan")),
    Case("models/jets-tagger-nan-some-blocks-skipped", "models", SKIP, r"NaN|non-finite",
         argv=lambda tmp: _diagnose(_write(tmp, [_jet(np.random.default_rng(k), 6 if k < 16 else 20)
                                                 for k in range(32)],
                                                {"label_Top": np.arange(32) % 2}),
                                    f"{HERE}:nan_for_busy_jets", "--skip-failures")),
    Case("models/jets-tagger-raises-every-block", "models", ERROR,
         r"every sample failed; the first: ValueError: feature 'part_d0val' missing",
         argv=lambda tmp: _diagnose(_write(tmp), f"{HERE}:raises", "--skip-failures")),
    Case("models/jets-tagger-fails-in-summary", "models", ERROR,
         r"jets summary failed: RuntimeError: expected batch of at most 40, got 48",
         argv=lambda tmp: _sample64(tmp, f"{HERE}:fixed_batch")),
    Case("models/jets-tagger-fails-in-summary-skip-failures", "models", SKIP,
         r"jets summary skipped: RuntimeError: expected batch of at most 40",
         argv=lambda tmp: _sample64(tmp, f"{HERE}:fixed_batch", "--skip-failures")),
    Case("models/jets-tagger-nan-only-in-summary", "models", RESULT,
         argv=lambda tmp: _sample64(tmp, f"{HERE}:nan_on_large_batch"),
         check=_undefined_check("48 of 64 scores are NaN or inf", flip=False)),
    Case("models/jets-weaver-tagger-from-module", "models", RESULT, argv=_weaver_module,
         check=_kept(24)),
    Case("models/jets-weaver-full-config-on-kin-features", "models", ERROR, r"sample 0: .*",
         call=_weaver_full_config),
    Case("models/jets-weaver-unknown-config-key", "models", ERROR,
         r"ParticleTransformer config .*TypeError.*num_layer", call=_weaver_unknown_option),
    Case("models/jets-weaver-one-class-head", "models", ERROR,
         r"returned \(\d+, 1\) for \d+ jets; expected \(N, C >= 2\) class logits",
         call=_weaver_one_class),
    Case("models/jets-weaver-returns-tuple", "models", ERROR,
         r"the module returned tuple .*expected \(N, C >= 2\)", call=_weaver_tuple),
    Case("models/jets-weaver-checkpoint-not-module", "models", ERROR,
         r"WeaverTagger needs a torch\.nn\.Module, got dict", call=_weaver_not_module),
    Case("models/jets-weaver-recipe-three-inputs", "models", ERROR,
         r"the recipe must return \(points, features, lorentz_vectors, mask\)",
         call=_weaver_bad_recipe),
    Case("models/jets-finetune-analytic-tagger", "models", ERROR,
         r"fine-tuning needs a torch tagger", argv=_finetune("mass")),
    Case("models/jets-finetune-unlabelled", "models", ERROR, r"fine-tuning needs labelled jets",
         argv=_finetune("reference", _no_labels)),
]

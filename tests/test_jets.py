"""The jets adapter: ROOT I/O in the JetClass layout, group actions on 4-momenta,
taggers with known symmetry, field metrics and bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

import symplug
import symplug_jets as sj
from symplug_jets.rootio import P4_BRANCHES


def make_jets(n=24, seed=0):
    rng = np.random.default_rng(seed)
    cons, labels = [], []
    for k in range(n):
        count = int(rng.integers(4, 15))
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        p = axis * rng.uniform(20, 80, size=(count, 1)) + rng.normal(size=(count, 3)) * 5
        cons.append(np.concatenate([np.linalg.norm(p, axis=1)[:, None], p], 1))
        labels.append(k % 2)
    lab = np.array(labels, dtype=np.int32)
    return cons, {"label_Top": lab, "label_QCD": 1 - lab}


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory):
    cons, labels = make_jets()
    path = tmp_path_factory.mktemp("jets") / "jets.root"
    sj.write_root(path, cons, labels, {"jet_pt": np.arange(len(cons), dtype=float)})
    return path


@pytest.fixture(scope="module")
def jets(jets_file):
    return sj.read_root(jets_file, labels=["label_Top", "label_QCD"], max_particles=16)


@pytest.mark.parametrize("group", ["SO2", "O2", "SO3", "O3"])
@pytest.mark.parametrize("frame", ["lab", "jet"])
def test_mass_tagger_is_invariant(jets, group, frame):
    result = sj.diagnose(sj.load_tagger("mass"), jets, group=group, degree=2, frame=frame,
                         progress=False, check_convergence=False)
    assert result["outputs"]["score"]["equivariance_rmse"] <= 1e-10
    assert result["summary"]["flip_rate"] == 0.0


@pytest.mark.parametrize("axis", ["beam", "jet"])
def test_mass_tagger_does_not_drift_under_boosts(jets, axis):
    for row in sj.boost_scan(sj.load_tagger("mass"), jets, [0.0, 0.5, 1.0, 2.0], axis=axis):
        assert row["score_shift_rms"] < 1e-10
        assert row["auc"] == sj.boost_scan(sj.load_tagger("mass"), jets, [0.0])[0]["auc"]


def test_pz2_tagger_violation_is_analytic(jets):
    """u(g) = z.g M g^T z with M = sum p p^T: A^2 = 2 tr(M0^2) / 15 under SO(3); 0 about the beam."""
    so3 = sj.diagnose(sj.load_tagger("pz2"), jets, group="SO3", degree=2, progress=False)
    expected = []
    for p4, mask in zip(jets.p4, jets.mask):
        p = p4[mask, 1:]
        m = p.T @ p
        m0 = m - np.trace(m) / 3 * np.eye(3)
        expected.append(2 * np.trace(m0 @ m0) / 15)
    a = so3["outputs"]["score"]["equivariance_rmse"]
    assert abs(a - math.sqrt(np.mean(expected))) < 1e-9 * a
    assert abs(so3["outputs"]["score"]["spectrum"]["0,0"] + so3["outputs"]["score"]["spectrum"]["2,0"] - 1) < 1e-12
    beam = sj.diagnose(sj.load_tagger("pz2"), jets, group="SO2", degree=2, progress=False)
    assert beam["outputs"]["score"]["equivariance_rmse"] < 1e-9
    axis = sj.diagnose(sj.load_tagger("pz2"), jets, group="SO2", degree=2, frame="jet",
                       progress=False)
    assert axis["outputs"]["score"]["equivariance_rmse"] > 1.0  # not a symmetry about the jet axis


def test_metrics_known_values():
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert sj.auc(scores, labels) == 0.75
    assert sj.auc(np.array([0.2, 0.2, 0.2, 0.2]), labels) == 0.5  # ties count one half
    assert sj.background_rejection(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0]), 0.5) == float("inf")
    # eps_S = 0.5 is reached at threshold 0.8 (one of two signal jets) with no background
    assert sj.background_rejection(scores, labels, 0.5) == float("inf")
    assert abs(sj.background_rejection(scores, labels, 1.0) - 2.0) < 1e-12
    with pytest.raises(symplug.SymplugError, match="both signal and background"):
        sj.auc(scores, np.ones(4))


def test_rotations_and_boosts_keep_masses(jets):
    g = symplug.haar("O3", 3, seed=1)
    rotated = sj.rotate_jets({"p4": jets.p4[:2], "mask": jets.mask[:2]}, g)
    assert rotated["p4"].shape == (6, 16, 4)
    m2 = lambda p: p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)  # noqa: E731
    assert np.allclose(m2(rotated["p4"].numpy()), np.tile(m2(jets.p4[:2]), (3, 1)), atol=1e-9)
    boosted = sj.boost(jets.p4, 1.3, "jet")
    assert np.allclose(m2(boosted), m2(jets.p4), atol=1e-7)


def test_boosts_are_the_analytic_lorentz_transformations(jets):
    """Along z: E' = ch E + sh pz, pz' = sh E + ch pz, pT unchanged; along the jet
    axis n: the same with p.n, and the jet's transverse momentum to n unchanged;
    zero padding stays zero."""
    y = 0.8
    ch, sh = np.cosh(y), np.sinh(y)
    p4 = jets.p4
    beam = sj.boost(p4, y, "beam")
    e, px, py, pz = np.moveaxis(p4, -1, 0)
    expected = np.stack([ch * e + sh * pz, px, py, sh * e + ch * pz], axis=-1)
    assert np.abs(beam - expected).max() < 1e-12 * np.abs(p4).max()
    n = p4[..., 1:].sum(1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    par = np.einsum("jpi,ji->jp", p4[..., 1:], n)
    along = sj.boost(p4, y, "jet")
    assert np.abs(along[..., 0] - (ch * e + sh * par)).max() < 1e-12 * np.abs(p4).max()
    par_new = np.einsum("jpi,ji->jp", along[..., 1:], n)
    assert np.abs(par_new - (sh * e + ch * par)).max() < 1e-12 * np.abs(p4).max()
    perp = lambda q, pa: q[..., 1:] - pa[..., None] * n[:, None, :]  # noqa: E731
    assert np.abs(perp(along, par_new) - perp(p4, par)).max() < 1e-12 * np.abs(p4).max()
    assert (along[~jets.mask.astype(bool)] == 0).all()


def test_predictions_file_in_weaver_layout(jets, tmp_path):
    tagger = sj.load_tagger("mass")
    score = tagger({"p4": __import__("torch").from_numpy(jets.p4),
                    "mask": __import__("torch").from_numpy(jets.mask),
                    "copies": 1, "jets": len(jets)})["score"][0].detach().numpy()
    out = sj.write_predictions(tmp_path / "pred.root", jets, np.stack([score, 1 - score], 1),
                               ["label_Top", "label_QCD"])
    events = uproot.open(out)["Events"].arrays(library="np")
    assert {"score_label_Top", "score_label_QCD", "label_Top", "label_QCD", "jet_pt"} <= set(events)
    assert np.allclose(events["score_label_Top"], score)


def test_bad_input(tmp_path, jets_file):
    with pytest.raises(symplug.SymplugError, match="not a readable ROOT file"):
        (tmp_path / "x.root").write_text("not root")
        sj.read_root(tmp_path / "x.root")
    data = jets_file.read_bytes()
    (tmp_path / "cut.root").write_bytes(data[: len(data) // 2])
    with pytest.raises(symplug.SymplugError, match="cut.root"):
        sj.read_root(tmp_path / "cut.root")
    with pytest.raises(symplug.SymplugError, match="unknown label branch 'label_Wqq'"):
        sj.read_root(jets_file, labels=["label_Wqq"])
    with pytest.raises(symplug.SymplugError, match="no TTree 'events'"):
        sj.read_root(jets_file, tree="events")
    with uproot.recreate(tmp_path / "missing.root") as f:
        f["tree"] = {"part_px": ak.Array([[1.0]])}
    with pytest.raises(symplug.SymplugError, match="no branch 'part_energy'"):
        sj.read_root(tmp_path / "missing.root")
    # inconsistent jagged lengths
    good = [ak.Array([[10.0, 5.0], [3.0]])] * 4
    bad = dict(zip(P4_BRANCHES, good))
    bad["part_px"] = ak.Array([[1.0, 2.0], [1.0, 1.0]])
    with uproot.recreate(tmp_path / "ragged.root") as f:
        f.mktree("tree", {b: "var * float64" for b in P4_BRANCHES})
        f["tree"].extend(bad)
    with pytest.raises(symplug.SymplugError, match="jet 1 has 2 entries in 'part_px'"):
        sj.read_root(tmp_path / "ragged.root")


def test_bad_jets_are_skipped_and_counted(tmp_path):
    cons, labels = make_jets(6)
    cons[1] = np.zeros((0, 4))
    cons[3] = cons[3].copy()
    cons[3][0, 1] = np.nan
    cons[4] = cons[4].copy()
    cons[4][0, 0] = 0.1  # E much smaller than |p|: negative mass squared
    path = sj.write_root(tmp_path / "bad.root", cons, labels)
    jets = sj.read_root(path)
    assert len(jets) == 3 and list(jets.index) == [0, 2, 5]
    assert [i for i, _ in jets.skipped] == [1, 3, 4]
    result = sj.diagnose(sj.load_tagger("mass"), jets, group="SO2", degree=1, progress=False,
                         check_convergence=False)
    assert result["summary"]["n_jets"] == 3 and len(result["summary"]["skipped"]) == 3


def test_cli_diagnose_jets(jets_file, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "diagnose", "jets",
                           "--model", "pz2", "--data", str(jets_file), "--group", "SO2",
                           "--degree", "2", "--json", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["outputs"]["score"]["equivariance_rmse"] < 1e-9
    assert result["summary"]["n_jets"] == 24 and "auc" in result["summary"]


def test_generated_jets(tmp_path):
    from symplug_jets.generate import generate_file

    path = generate_file(tmp_path / "gen.root", 4, seed=7, progress=False)
    jets = sj.read_root(path)
    assert len(jets) == 8 and jets.labels.sum(0).tolist() == [4.0, 4.0]
    pt, eta = jets.observers["jet_pt"], jets.observers["jet_eta"]
    assert ((pt >= 550) & (pt < 650)).all() and (np.abs(eta) < 2).all()
    total = (jets.p4 * jets.mask[..., None]).sum(1)
    assert np.allclose(np.hypot(total[:, 1], total[:, 2]), pt, rtol=1e-6)  # all constituents kept
    top = jets.labels[:, jets.label_names.index("label_Top")] > 0
    assert (jets.observers["jet_mass"][top] > 100).all()  # contained hadronic tops
    again = sj.read_root(generate_file(tmp_path / "again.root", 4, seed=7, progress=False))
    assert np.array_equal(again.p4, jets.p4)  # seeded
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "jets", "generate",
                           "--out", str(tmp_path / "cli.root"), "--n", "2", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "4 jets" in proc.stdout
    # stdout holds the one line of the result: FastJet's C++ banner is kept off it
    assert "FastJet release" not in proc.stdout and "#---" not in proc.stdout, proc.stdout
    assert proc.stdout.strip().count("\n") == 0, proc.stdout
    assert "FastJet release" not in proc.stderr  # credited in one line, not the banner


def test_generate_help_says_n_is_per_class():
    proc = subprocess.run([str(Path(sys.executable).parent / "symplug"), "jets", "generate",
                           "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "jets per class: N top and N QCD jets, 2N in all" in text


def test_reference_tagger_reproduces_its_test_metrics():
    """The shipped tagger, on its shipped test jets, gives back the stored test figures."""
    from symplug_jets.taggers import REFERENCE

    saved = __import__("torch").load(REFERENCE, weights_only=True)
    jets = sj.read_root(REFERENCE.with_name("tagger_test.root"), max_particles=64)
    tagger = sj.load_tagger("reference")
    torch = __import__("torch")
    score = tagger({"p4": torch.from_numpy(jets.p4), "mask": torch.from_numpy(jets.mask),
                    "copies": 1, "jets": len(jets)})["score"][0].detach().numpy()
    is_top = jets.labels[:, jets.label_names.index("label_Top")] > 0.5
    assert abs(sj.auc(score, is_top) - saved["test"]["auc"]) < 2e-3  # float64 vs float32
    assert saved["test"]["auc"] > 0.85
    # hidden layers are reachable through the tagger's module
    result = sj.diagnose(tagger, jets.subset(np.arange(16)), group="SO2", degree=1,
                         layers=["embed", "blocks.0", "pool"], progress=False,
                         check_convergence=False)
    for layer in result["layers"].values():
        assert abs(sum(layer["spectrum"].values()) + layer["truncation"] - 1) < 1e-12


def test_analysis_script(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "examples" / "jet_tagging_analysis.py"),
                           "--max-jets", "40", "--degree", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("table.md", "roc.png", "boost.png", "predictions.root",
                 "result_lab_SO2.json", "result_jet_SO2.json", "result_lab_SO3.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = (tmp_path / "table.md").read_text()
    assert "AUC" in table and "1/eps_B at eps_S = 0.3" in table and "flip rate" in table
    # the field's words: jets, the score's units, the rotations, the grid check
    assert "jets (signal / background)" in table and "| score " in table and "probability" in table
    assert "3 equispaced angles (degree 1)" in table and "grid check, SO(3), lab frame" in table
    # progress on every step, on stderr; stdout keeps the table
    steps = [line for line in proc.stderr.splitlines() if line.startswith("jet analysis [")]
    assert len(steps) == 6 and "jet analysis [6/6" in steps[-1], proc.stderr[-2000:]
    assert "jet analysis [" not in proc.stdout and "| AUC" in proc.stdout
    # every diagnosis of the analysis runs the convergence check (one grid more)
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    for s in analysis["symmetries"]:
        assert s["grid_check"]["checked"] and s["grid_check"]["method"] == "rotated"
        result = json.loads((tmp_path / s["result"]).read_text())
        assert result["convergence"]["method"] == "rotated"
        assert result["convergence"]["finer_size"] == result["grid"]["size"]
    assert analysis["symmetries"][0]["rotations"] == \
        "SO(2) about the beam: 3 equispaced angles (degree 1)"
    assert analysis["score_units"] == "probability"
    assert analysis["n_signal"] + analysis["n_background"] == analysis["n_jets"] == 40


def test_rejection_with_its_resolution_known_counts():
    """10 signal jets, 200 background jets of which 4 score above every signal jet: at
    eps_S = 0.5, eps_B = 4/200, 1/eps_B = 50 with binomial error 50 sqrt(0.98 / 4)."""
    signal = 0.905 + 0.01 * np.arange(10)
    background = np.r_[np.full(4, 0.999), np.full(196, 0.1)]
    scores = np.r_[signal, background]
    is_signal = np.r_[np.ones(10, bool), np.zeros(200, bool)]
    rec = sj.rejection(scores, is_signal, 0.5)
    assert rec["resolved"] and rec["n_background"] == 200
    assert abs(rec["n_background_passing"] - 4) < 1e-12
    assert abs(rec["value"] - 50.0) < 1e-12
    assert abs(rec["uncertainty"] - 50.0 * math.sqrt(0.98 / 4)) < 1e-12
    assert rec["lower_bound"] is None
    assert rec["value"] == sj.background_rejection(scores, is_signal, 0.5)
    assert sj.format_rejection(rec) == "50 ± 25"
    # no background jet passes: the bound "> N_B", no inf or NaN anywhere
    none = sj.rejection(np.r_[signal, np.full(200, 0.1)], is_signal, 0.5)
    assert not none["resolved"] and none["value"] is None and none["uncertainty"] is None
    assert none["lower_bound"] == 200.0 and none["n_background_passing"] == 0.0
    assert sj.format_rejection(none) == "> 200"
    json.dumps([rec, none], allow_nan=False)
    # less than one background jet (interpolated along a tie) is below the resolution too
    half = sj.rejection(np.r_[signal, signal[5], np.full(199, 0.1)], is_signal, 0.45)
    assert 0 < half["n_background_passing"] < 1 and not half["resolved"]
    # exactly one: resolved, with an uncertainty as large as the value (saturated)
    one = sj.rejection(np.r_[signal, 0.999, np.full(199, 0.1)], is_signal, 0.5)
    assert one["resolved"] and abs(one["value"] - 200) < 1e-9
    assert abs(one["uncertainty"] - 200 * math.sqrt(1 - 1 / 200)) < 1e-9


def test_summary_counts_jets_with_units_rotations_and_resolved_rejection(jets):
    """What a person reads counts jets (24), not the engine's blocks (2 samples)."""
    from symplug.cli import summary_table
    from symplug.plugins import report_sections

    result = sj.diagnose(sj.load_tagger("mass"), jets, group="SO2", degree=2, progress=False,
                         check_convergence=False)
    s = result["summary"]
    assert result["n_samples"] == 2  # the engine's samples: blocks of 16 jets
    assert (result["n_items"], result["item_name"]) == (24, "jets")  # what the text counts
    header = summary_table(result).splitlines()[0]
    assert header.endswith("(5 elements), 24 jets (2 engine samples)"), header
    assert (s["n_jets"], s["n_signal"], s["n_background"]) == (24, 12, 12)
    assert s["rotations"] == "SO(2) about the beam: 5 equispaced angles (degree 2)"
    assert result["outputs"]["score"]["units"] == "probability"
    for wp in ("0.3", "0.5"):
        rec = s["background_rejection"][wp]
        assert rec["n_background"] == 12
        assert (rec["value"] is None) == (not rec["resolved"]) == (rec["lower_bound"] == 12.0)
    json.dumps(result, allow_nan=False)  # a number plus a flag or bound: strict JSON
    text = "\n".join(sec.markdown for sec in report_sections(result))
    titles = [sec.title for sec in report_sections(result)]
    assert "24 jets (12 signal, 12 background)" in text and "score: probability" in text
    assert titles == ["Jet tagging under SO(2) about the beam: 5 equispaced angles (degree 2)"]
    assert "1/eps_B at eps_S = 0.3: " in text and "inf" not in text
    axis = sj.diagnose(sj.load_tagger("pz2"), jets, group="O2", degree=1, frame="jet",
                       progress=False, check_convergence=False)
    assert axis["outputs"]["score"]["units"] == "GeV^2"
    assert axis["summary"]["rotations"] == ("O(2) about each jet's axis: 3 equispaced angles "
                                            "and their 3 mirror images (degree 1)")


def test_core_text_counts_jets_in_partitions_and_skipped_blocks(jets):
    """24 jets in blocks of 16: n_items is 24 whichever the partitions (counted where the
    blocks are evaluated); a skipped block is counted in jets too."""
    import dataclasses

    from symplug.cli import summary_table
    from symplug.report import diagnosis_sections
    from symplug_jets.domain import blocks, jets_domain

    tagger, options = sj.load_tagger("mass"), dict(group="SO2", degree=1, progress=False,
                                                   check_convergence=False)
    data = blocks(jets)
    assert [b["p4"].shape[0] for b in data] == [16, 8]
    whole = symplug.diagnose(tagger, data, jets_domain(), **options)
    parts = symplug.diagnose(tagger, symplug.Partitions([data[:1], data[1:]]), jets_domain(),
                             **options)
    assert whole["n_items"] == parts["n_items"] == 24 and parts["n_samples"] == 2
    assert summary_table(parts).splitlines()[0].endswith(", 24 jets (2 engine samples)")

    def refuse_short(block):
        if block["p4"].shape[0] < 16:
            raise symplug.SymplugError("short block")

    domain = dataclasses.replace(jets_domain(), check=refuse_short)
    skipped = symplug.diagnose(tagger, symplug.Partitions([data[:1], data[1:]]), domain,
                               skip_failures=True, **options)
    assert (skipped["n_samples"], skipped["n_items"]) == (1, 16)
    assert skipped["skipped"] == [{"index": 1, "reason": "SymplugError: short block",
                                   "n_items": 8}]
    text = summary_table(skipped)
    assert "16 jets (1 engine sample)\n" in text
    assert "skipped 1 failed sample (8 jets): #1: SymplugError: short block" in text
    report = "\n".join(s.markdown for s in diagnosis_sections("tagger", skipped))
    assert "16 jets (1 engine sample)." in report
    assert "Left out (listed in the JSON under `skipped`): 1 failed sample (8 jets)." in report


def test_rejection_bound_in_the_summary_when_no_background_passes():
    from symplug_jets.domain import performance

    score = np.r_[np.linspace(0.6, 0.9, 8), np.linspace(0.1, 0.4, 30)]
    is_signal = np.r_[np.ones(8, bool), np.zeros(30, bool)]
    part = {"score": score, "is_signal": is_signal, "skipped": [],
            "rotations": "SO(2) about the beam: 5 equispaced angles (degree 2)"}
    out = performance([part], None)
    assert out["auc"] == 1.0 and out["n_background"] == 30
    for wp in ("0.3", "0.5"):
        assert out["background_rejection"][wp]["lower_bound"] == 30.0
        assert out["background_rejection"][wp]["value"] is None
    json.dumps(out, allow_nan=False)


def test_partitions_of_one_file_spread_over_the_workers(jets_file):
    """Without --partition-size, one small ROOT file is still split (the progress bar of
    `--workers 2` no longer sits at 0/1): what the CLI asks the plugin for."""
    import dask
    from symplug.plugins import load_partitions
    from symplug_jets.domain import partition_step

    parts = load_partitions("jets", [str(jets_file)], None)
    assert len(parts) >= 2
    computed = dask.compute(*parts, scheduler="sync")
    assert sum(b["p4"].shape[0] for part in computed for b in part) == 24
    assert len(load_partitions("jets", [str(jets_file)], 100)) == 1  # --partition-size wins
    assert partition_step(120, workers=2) == 16  # 120 jets, 2 workers: 8 partitions
    assert partition_step(100_000, workers=4) == 6256  # ceil(100000 / 16) in whole blocks
    assert partition_step(10 ** 9, workers=2) == 100_000  # at most 100 000 entries
    assert partition_step(10, workers=8) == 16 and partition_step(999, size=7) == 7


def test_demo_keeps_its_cost_with_the_convergence_check():
    """Grid + check at the demo's SO(3) degree cost about the old degree-4 grid alone."""
    from symplug.quadrature import quadrature
    from symplug_jets.demo import FULL

    so3 = quadrature("SO3", FULL["degree"])
    assert so3.size == 182 and 2 * so3.size <= 1.1 * quadrature("SO3", 4).size


def test_flip_rate_uses_the_frame(jets):
    """pz2 keeps its class under rotations about the beam, not about the jet axes."""
    beam = sj.diagnose(sj.load_tagger("pz2"), jets, group="SO2", degree=2, progress=False,
                       check_convergence=False)
    axis = sj.diagnose(sj.load_tagger("pz2"), jets, group="SO2", degree=2, frame="jet",
                       progress=False, check_convergence=False)
    assert beam["summary"]["flip_rate"] == 0.0 and axis["summary"]["flip_rate"] > 0.01


def test_lie_derivatives_of_taggers(jets):
    """mass: zero along every generator and boost; pz2: zero about z, analytic elsewhere:
    d/dt sum pz^2 along L_x is -2 sum pz py, along a beam boost 2 sum pz E."""
    mass = sj.lie_derivatives(sj.load_tagger("mass"), jets)
    assert max(mass.values()) < 1e-8
    pz2 = sj.lie_derivatives(sj.load_tagger("pz2"), jets)
    p4 = np.where(jets.mask[..., None], jets.p4, 0.0)
    e, py, pz = p4[..., 0], p4[..., 2], p4[..., 3]
    rms = lambda x: float(np.sqrt(np.mean(x ** 2)))  # noqa: E731
    # L_x (y, z) = (-z, y): d pz/dt = py, d py/dt = -pz
    assert abs(pz2["Lx"] - rms(2 * (pz * py).sum(1))) < 1e-6 * pz2["Lx"]
    assert pz2["Lz"] < 1e-6
    assert abs(pz2["boost_beam"] - rms(2 * (pz * e).sum(1))) < 1e-6 * pz2["boost_beam"]


def test_top_tagging_hdf5_layout(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    cons, labels = make_jets(5)
    cons[2] = np.zeros((0, 4))
    n = 20
    data = {}
    for c, k in (("E", 0), ("PX", 1), ("PY", 2), ("PZ", 3)):
        for i in range(n):
            data[f"{c}_{i}"] = [jet[i, k] if i < len(jet) else 0.0 for jet in cons]
    data["is_signal_new"] = labels["label_Top"]
    pd.DataFrame(data).to_hdf(tmp_path / "top.h5", key="table", format="table")
    jets = sj.read_top_tagging_h5(tmp_path / "top.h5")
    assert len(jets) == 4 and jets.skipped == [(2, "no constituents")]
    assert jets.label_names == ["label_QCD", "label_Top"]
    from_root = sj.read_root(sj.write_root(tmp_path / "same.root", cons, labels), max_particles=n)
    assert np.allclose(jets.p4, from_root.p4) and np.array_equal(jets.mask, from_root.mask)
    pd.DataFrame({"E_0": [1.0]}).to_hdf(tmp_path / "bad.h5", key="table", format="table")
    with pytest.raises(symplug.SymplugError, match="no column 'PX_0'"):
        sj.read_top_tagging_h5(tmp_path / "bad.h5")


@pytest.mark.parametrize("frame", ["lab", "jet"])
def test_summary_from_the_orbit_pass_equals_a_second_pass(jets, frame):
    """The flip rate and score shifts read from the kept orbit values are the numbers a
    separate pass over the orbit gives (exactly: the same model calls, float64)."""
    from symplug_jets.domain import blocks, jets_domain

    tagger = sj.load_tagger("reference")
    result = sj.diagnose(tagger, jets, group="SO3", degree=2, frame=frame, progress=False,
                         check_convergence=False)
    grid = symplug.quadrature("SO3", 2)
    second = symplug.summarize(jets_domain(frame), blocks(jets), tagger, grid)
    first = result["summary"]
    assert first["flip_rate"] > 0.01
    assert abs(first["flip_rate"] - second["flip_rate"]) < 1e-15
    assert np.allclose(first["score_shift"]["weights"], second["score_shift"]["weights"],
                       rtol=0, atol=1e-15)
    assert first["roc"] == second["roc"] and first["auc"] == second["auc"]

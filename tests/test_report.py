"""The report: Markdown, self-contained HTML, JSON and TensorMaps, checked on exact
answers; the HTML rendered in headless Chromium with its figures showing."""

import base64
import importlib.util
import json
import os
import re

import metatensor
import numpy as np
import pytest
import torch

import symplug
from symplug.cli import main
from symplug.report import spectra_tensormap, write_report
from symplug.testing import rotate_points

from helpers import ROOT, CoordinateMLP

spec = importlib.util.spec_from_file_location("screenshot_report",
                                              ROOT / "scripts" / "screenshot_report.py")
screenshot_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screenshot_report)


@pytest.fixture(scope="module")
def diagnosis():
    """The linear layer h = W vec(g x) + b of an MLP on raw coordinates: its power
    is |W|_F^2 |x|^2 / 3 in (1,+1) and |b|^2 in (0,+1) (exact on the degree-2 grid)."""
    clouds = [torch.randn(4, 3, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    domain = symplug.Domain("points", rotate_points,
                            {"energy": symplug.Output("0e", "eV"),
                             "dipole": symplug.Output("1o", "e*A")})
    return clouds, symplug.diagnose(CoordinateMLP(points=4), clouds, domain, degree=2,
                                    layers=["embed", "act"], progress=False)


def test_tensormap_holds_the_exact_spectra(diagnosis):
    clouds, result = diagnosis
    model = CoordinateMLP(points=4)
    w = model.embed.weight.detach().reshape(-1, 4, 3)  # (hidden, point, xyz)
    bias2 = float((model.embed.bias.detach() ** 2).sum())
    tensormap = spectra_tensormap(result)
    names = result["tensormap_layers"]
    assert names == ["output:energy", "output:dipole", "embed", "act"]
    embed = names.index("embed")
    l1, l0 = tensormap.block(chi_lambda=1, chi_sigma=1), tensormap.block(chi_lambda=0, chi_sigma=1)
    total1 = 0.0
    for s, cloud in enumerate(clouds):
        row = l1.samples.position((s, embed))
        expected = float((torch.einsum("kpi,pj->kij", w, cloud) ** 2).sum()) / 3
        total1 += expected
        assert abs(l1.values[row, 1] - expected) < 1e-12 * expected  # power, property 1
        assert abs(l0.values[row, 1] - bias2) < 1e-12
        assert abs(l1.values[row, 0] - expected / (expected + bias2)) < 1e-12  # fraction
    aggregate = l1.samples.position((-1, embed))
    assert abs(l1.values[aggregate, 1] - total1) < 1e-12 * total1
    assert abs(l1.values[aggregate, 0] - result["layers"]["embed"]["spectrum"]["1,+1"]) < 1e-15
    # a linear layer has no power beyond l = 1 and none in sigma = -1
    rows = [l1.samples.position((s, embed)) for s in (-1, 0, 1, 2)]
    for key, block in tensormap.items():
        if int(key["chi_lambda"]) > 1 or int(key["chi_sigma"]) == -1:
            assert np.abs(block.values[rows]).max() < 1e-12


def test_report_files_and_embedded_figures(tmp_path, diagnosis):
    _, result = diagnosis
    paths = write_report({"points": result}, tmp_path, title="unit")
    assert json.loads(paths["points"].read_text())["outputs"]["dipole"]["rep"] == "1o"
    loaded = metatensor.load(str(paths["points_spectra"]))
    assert loaded.keys.names == ["chi_lambda", "chi_sigma"]
    md = paths["report.md"].read_text()
    a = result["outputs"]["dipole"]["equivariance_rmse"]
    assert f"| dipole | `1o` | e*A | {a:.3g} |" in md
    assert "![points_spectra.png](figures/points_spectra.png)" in md
    html = paths["report.html"].read_text()
    assert "figures/" not in html  # every figure is embedded
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "<table>" in html


def test_training_curves_and_unknown_kinds(tmp_path):
    track = {"kind": "track", "domain": "points", "group": "O3", "grid": {},
             "epochs": [{"epoch": e, "metrics": {"mae": 1.0 / e}, "loss": 1.0 / e,
                         "outputs": {"energy": {"equivariance_rmse": 10.0 ** -e, "units": "eV"}},
                         "layers": {"embed": {"invariant_fraction": 1 - 0.5 ** e,
                                              "spectrum": {"0,+1": 1 - 0.5 ** e}}}}
                        for e in (1, 2, 3)]}
    paths = write_report({"training": track}, tmp_path)
    assert (tmp_path / "figures" / "training_training.png").exists()
    assert "| energy | 0.001 | eV |" in paths["report.md"].read_text()
    with pytest.raises(symplug.SymplugError, match="no report section"):
        write_report({"odd": {"kind": "unknown"}}, tmp_path / "odd")
    with pytest.raises(symplug.SymplugError, match="file stem"):
        write_report({"a/b": track}, tmp_path)


def test_cli_diagnose_writes_the_report(tmp_path):
    pytest.importorskip("ase")
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.get_forces()
    write(tmp_path / "cu.extxyz", atoms)
    code = main(["diagnose", "atoms", "--model", "emt", "--data", str(tmp_path / "cu.extxyz"),
                 "--degree", "1", "--quiet", "--report", "--out", str(tmp_path / "rep")])
    assert code == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## atoms: symmetry diagnosis" in md and "## Per structure" in md
    assert (tmp_path / "rep" / "atoms_spectra.mts").exists()


def test_report_renders_with_figures_in_headless_chromium(tmp_path, diagnosis):
    """.ci/run installs Debian's chromium and sets SYMPLUG_REQUIRE_CHROMIUM=1."""
    if screenshot_report.chromium() is None:
        if os.environ.get("SYMPLUG_REQUIRE_CHROMIUM"):
            pytest.fail("SYMPLUG_REQUIRE_CHROMIUM is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, result = diagnosis
    paths = write_report({"points": result}, tmp_path)
    check = screenshot_report.check(paths["report.html"], tmp_path / "shot.png", height=2500)
    assert check["figures_shown"], check
    assert check["coloured_fraction"] > 0.01 and check["control_fraction"] < 0.001


def test_cli_compares_with_an_in_distribution_result(tmp_path, capsys):
    """--compare-to feeds the ood-growth rule: against itself nothing grows; against a
    reference whose force error is 8x smaller, forces grew 8x (an error finding)."""
    pytest.importorskip("ase")
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    write(tmp_path / "frames.extxyz", atoms)
    base = ["diagnose", "atoms", "--model", "pet-cu", "--degree", "1", "--quiet",
            "--no-convergence", "--outputs", "energy,forces", "--data",
            str(tmp_path / "frames.extxyz")]
    assert main([*base, "--json", str(tmp_path / "test.json")]) == 0
    test = json.loads((tmp_path / "test.json").read_text())
    assert main([*base, "--json", str(tmp_path / "same.json"),
                 "--compare-to", str(tmp_path / "test.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert not [f for f in same["findings"] if f["code"] == "ood-growth"]
    test["outputs"]["forces"]["equivariance_rmse"] /= 8
    (tmp_path / "smaller.json").write_text(json.dumps(test))
    assert main([*base, "--json", str(tmp_path / "md.json"),
                 "--compare-to", str(tmp_path / "smaller.json")]) == 0
    ood = [f for f in json.loads((tmp_path / "md.json").read_text())["findings"]
           if f["code"] == "ood-growth"]
    assert [(f["where"], f["severity"]) for f in ood] == [("outputs.forces", "warning")]
    assert "8.00x" in ood[0]["evidence"]
    assert main([*base, "--compare-to", str(tmp_path / "missing.json")]) == 2
    assert "not a readable result JSON" in capsys.readouterr().err


def test_atomic_writes_leave_the_usual_file_mode_and_no_temporary_files(tmp_path):
    from symplug.result import write_bytes, write_json

    mask = os.umask(0o022)
    try:
        path = write_json({"a": float("nan")}, tmp_path / "r.json")
        write_bytes(b"x", tmp_path / "b.bin")
    finally:
        os.umask(mask)
    assert json.loads(path.read_text()) == {"a": None}  # strict JSON
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "r.json"]


def _summary(markdown_text: str) -> str:
    """The text of the report's first section (from its heading to the next)."""
    first = markdown_text.index("\n## ")
    end = markdown_text.find("\n## ", first + 1)
    return markdown_text[first:end]


def test_summary_answers_first(tmp_path, diagnosis):
    """The first section is the summary: per output A with its units, A relative to the
    output's accuracy and a verdict; the grid and its convergence verdict; the top finding."""
    import copy

    from symplug.findings import convergence_verdict
    from symplug.report import VERDICT_RULE, VERDICTS, symmetry_verdict

    _, result = diagnosis
    labelled = copy.deepcopy(result)  # the energy with labels: A is 30% of its error
    a = labelled["outputs"]["energy"]["equivariance_rmse"]
    labelled["outputs"]["energy"]["bias_variance"] = {
        "equivariance_rmse": a, "symmetrized_rmse": a * (1 / 0.3 ** 2 - 1) ** 0.5,
        "symmetrized_mae": a, "random_orientation_rmse": a / 0.3, "symmetry_share": 0.09,
        "n_labelled": labelled["n_samples"]}
    paths = write_report({"points": result, "labelled": labelled}, tmp_path)
    md = paths["report.md"].read_text()
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings[0] == "Summary" and headings[1] == "points: symmetry diagnosis"
    summary = _summary(md)
    for name, r in (("points", result), ("labelled", labelled)):
        for out, o in r["outputs"].items():
            v = symmetry_verdict(o)
            assert v["verdict"] in VERDICTS
            assert any(f"| {out} | {o['equivariance_rmse']:.3g} {o['units']} |" in line
                       and f"| **{v['verdict']}** |" in line for line in summary.splitlines())
        assert f"- `{name}`: O3, finite grid of degree 2 (" in summary
        assert convergence_verdict(r) in summary  # the verdict line, with its relative change
        top = r["findings"][0]
        assert f"| {top['severity']} | `{name}` | `{top['code']}`" in summary
        assert top["evidence"] in summary
    assert "| not learned" not in summary  # verdicts are bold: "| **not learned** |"
    # the raw model is far from equivariant (A ~ |y|); the labelled energy is "partly"
    assert symmetry_verdict(result["outputs"]["energy"])["verdict"] == "not learned"
    assert "30% of E = " in summary and "| **partly** |" in summary
    assert VERDICT_RULE in summary  # the thresholds are stated once, in the report
    html = paths["report.html"].read_text()
    assert html.index('<h2 id="summary">Summary</h2>') < html.index("<h2", html.index(
        '<h2 id="summary">') + 1)
    assert re.search(r"<h2[^>]*>", html).group(0) == '<h2 id="summary">'
    assert '<strong class="verdict-not-learned">not learned</strong>' in html
    ids = set(re.findall(r'id="([^"]+)"', html))  # "Details below" links to each result
    assert {"points-symmetry-diagnosis", "labelled-symmetry-diagnosis"} <= set(
        re.findall(r'href="#([^"]+)"', html)) <= ids


def test_a_group_that_is_no_symmetry_of_the_data_is_a_probe(tmp_path, diagnosis):
    """SO3 is not a symmetry of jets (the beam axis breaks it): the summary says "probe",
    not "not learned"; about the beam (SO2) the usual verdict stands."""
    import copy

    from symplug.plugins import get_domain
    from symplug.report import is_data_symmetry, summary_section, symmetry_verdict

    assert not get_domain("jets").is_symmetry("SO3") and get_domain("jets").is_symmetry("O2")
    _, result = diagnosis
    rows = {}
    for group in ("SO3", "SO2"):
        jets = copy.deepcopy(result)
        jets["domain"], jets["group"] = "jets", group
        rows[group] = summary_section({"tagger": jets}, {}).markdown
        assert is_data_symmetry(jets) == (group == "SO2")
    assert "| **probe** |" in rows["SO3"] and "| **not learned** |" not in rows["SO3"]
    assert "| **probe** |" not in rows["SO2"] and "| **not learned** |" in rows["SO2"]
    assert symmetry_verdict(result["outputs"]["energy"], probe=True)["verdict"] == "probe"
    assert is_data_symmetry(result)  # an uninstalled domain ("points"): every group counts


def test_verdict_thresholds():
    from symplug.report import (LEARNED_VS_ERROR, LEARNED_VS_MAGNITUDE, NOT_LEARNED_VS_ERROR,
                                NOT_LEARNED_VS_MAGNITUDE, symmetry_verdict)

    def labelled(ratio):
        return {"equivariance_rmse": ratio, "relative_error": 0.5,
                "bias_variance": {"equivariance_rmse": ratio, "random_orientation_rmse": 1.0}}

    def unlabelled(ratio):
        return {"equivariance_rmse": 2 * ratio, "relative_error": ratio}

    for make, learned, not_learned in ((labelled, LEARNED_VS_ERROR, NOT_LEARNED_VS_ERROR),
                                       (unlabelled, LEARNED_VS_MAGNITUDE,
                                        NOT_LEARNED_VS_MAGNITUDE)):
        assert symmetry_verdict(make(0.99 * learned))["verdict"] == "learned"
        assert symmetry_verdict(make(learned))["verdict"] == "partly"
        assert symmetry_verdict(make(0.99 * not_learned))["verdict"] == "partly"
        assert symmetry_verdict(make(not_learned))["verdict"] == "not learned"
    assert symmetry_verdict(labelled(0.3))["basis"] == "error"
    v = symmetry_verdict(unlabelled(0.3))
    assert v["basis"] == "magnitude" and abs(v["reference"] - 2.0) < 1e-12  # |y| = A / rel
    exact = {"equivariance_rmse": 1e-16, "relative_error": 1e-15,
             "bias_variance": {"equivariance_rmse": 1e-16, "random_orientation_rmse": 0.1}}
    assert symmetry_verdict(exact)["verdict"] == "exact"
    assert symmetry_verdict({"equivariance_rmse": None, "relative_error": None})["verdict"] \
        == "unknown"


def test_no_figure_is_embedded_twice_and_heat_maps_fit(tmp_path, diagnosis):
    """Two results with the same spectra: the heat map is embedded once, the second
    section says so; every embedded image differs from the others. The heat map is no
    wider than the page (1400 px window), so its 10 pt labels are not scaled down."""
    import hashlib
    import io

    from PIL import Image

    _, result = diagnosis
    paths = write_report({"points": result, "again": result}, tmp_path)
    md = paths["report.md"].read_text()
    assert "(Same figure as `points_spectra.png` above.)" in md
    html = paths["report.html"].read_text()
    images = [base64.b64decode(i) for i in re.findall(r'src="data:image/png;base64,([^"]+)"',
                                                      html)]
    hashes = [hashlib.sha256(i).hexdigest() for i in images]
    assert len(images) == 2 and len(set(hashes)) == len(hashes)
    for data in images:
        width, height = Image.open(io.BytesIO(data)).size
        assert width <= 1200  # the page's column at 1400 px: shown at its own size
    assert len(re.findall(r"!\[[^]]+\]\(figures/", md)) == len(images)

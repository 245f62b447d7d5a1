"""``symplug demo --quick``: the README's main job, end to end on the shipped models."""

import json

import pytest

from symplug.cli import main

pytest.importorskip("ase")
pytest.importorskip("uproot")


@pytest.mark.slow
def test_quick_demo_writes_the_report(tmp_path, capsys):
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "symplug demo: " in printed and "report.html" in printed
    names = {p.stem for p in tmp_path.glob("*.json")}
    assert {"atoms", "atoms_md", "jets", "jets_lab_SO2", "jets_jet_SO2", "jets_lab_SO3"} <= names
    atoms = json.loads((tmp_path / "atoms.json").read_text())
    from symplug_atoms.demo import LAYERS

    assert atoms["model"] == "pet-ref" and list(atoms["layers"]) == LAYERS
    assert atoms["precision"] == {"dtype": "float32", "epsilon": 2.0 ** -23,
                                  "source": "parameters"}
    # the check: the same rule turned by a random rotation, one grid more
    assert atoms["convergence"]["method"] == "rotated"
    assert atoms["convergence"]["finer_size"] == atoms["grid"]["size"]
    assert isinstance(atoms["findings"], list)
    # the learned model breaks O(3) by a small, finite amount; EMT-level exactness is 1e-13
    assert 1e-4 < atoms["outputs"]["forces"]["relative_error"] < 1
    md = json.loads((tmp_path / "atoms_md.json").read_text())
    assert set(md["table"]) == {"raw", "symmetrized", "projected"}
    # the symmetrised model keeps the cluster's angular momentum closer to zero, the
    # projected one at round-off
    assert (md["table"]["symmetrized"]["angular_momentum_max"]
            < md["table"]["raw"]["angular_momentum_max"])
    assert md["table"]["projected"]["angular_momentum_max"] < 1e-10
    jets = json.loads((tmp_path / "jets.json").read_text())
    assert jets["model"] == "pointnet" and 0.9 < jets["auc"] <= 1.0
    lab = json.loads((tmp_path / "jets_lab_SO2.json").read_text())
    assert list(lab["layers"]) == ["phi", "pool"]
    assert (tmp_path / "jets" / "predictions.root").exists()
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8
    assert "MD stability" in html and "Jet tagging analysis" in html

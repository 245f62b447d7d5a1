"""The pluggy contract: a real third-party package installed with pip, broken
plugins isolated and named, autoload switch."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symplug
from symplug import plugins

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def planar_installed(tmp_path_factory):
    """The environment of a symplug whose installed plugins include examples/third_party_plugin:
    pip-installed into a temporary folder put on PYTHONPATH (the package and its entry
    point), so the user's environment is left as it was. A symplug-planar the user
    installed is used as it is."""
    import importlib.metadata
    import os

    env = dict(os.environ)
    try:
        importlib.metadata.distribution("symplug-planar")
        return env
    except importlib.metadata.PackageNotFoundError:
        pass
    target = tmp_path_factory.mktemp("planar-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    str(ROOT / "examples" / "third_party_plugin")], check=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH")) if p)
    return env


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([str(BIN / "symplug"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_third_party_plugin_through_the_cli(planar_installed, tmp_path):
    listed = run_cli("plugins", env=planar_installed)
    assert listed.returncode == 0 and "planar" in listed.stdout and "symplug-planar 0.1.0" in listed.stdout
    data = tmp_path / "clouds.npz"
    np.savez(data, points=np.random.default_rng(0).normal(size=(4, 5, 2)))
    out = tmp_path / "invariant.json"
    proc = run_cli("diagnose", "planar", "--model", "invariant", "--data", str(data), "--group",
                   "O2", "--degree", "4", "--json", str(out), "--quiet", env=planar_installed)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["domain"] == "planar" and result["group"] == "O2"
    assert result["grid"]["size"] == 18 and result["grid"]["exact_degree"] == 8
    energy, pol = result["outputs"]["energy"], result["outputs"]["polarization"]
    assert energy["equivariance_rmse"] < 1e-12 and abs(energy["spectrum"]["0,+1"] - 1) < 1e-12
    assert pol["equivariance_rmse"] < 1e-12 and abs(pol["spectrum"]["1,0"] - 1) < 1e-12
    assert result["findings"] == [] and "convergence" in result
    out = tmp_path / "mlp.json"
    proc = run_cli("diagnose", "planar", "--model", "mlp", "--data", str(data), "--group", "O2",
                   "--degree", "6", "--layers", "embed,hidden", "--json", str(out), "--quiet",
                   env=planar_installed)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["outputs"]["energy"]["equivariance_rmse"] > 1e-2
    # the first layer is linear in the coordinates: only the bias (m=0) and m=1 carry power
    spec = result["layers"]["embed"]["spectrum"]
    assert abs(spec["0,+1"] + spec["1,0"] - 1) < 1e-12 and spec["0,-1"] < 1e-12
    assert "embed" in proc.stdout and "convergence" in proc.stdout


def test_plugin_mistakes_are_one_line_errors(planar_installed, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, coords=np.zeros((2, 5, 2)))
    proc = run_cli("diagnose", "planar", "--model", "mlp", "--data", str(bad), env=planar_installed)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no field 'points'" in proc.stderr
    proc = run_cli("diagnose", "planar", "--model", "resnet", "--data", str(bad), env=planar_installed)
    assert proc.returncode == 2 and "unknown planar model 'resnet'" in proc.stderr
    proc = run_cli("diagnose", "atomz", "--model", "x", "--data", str(bad), env=planar_installed)
    assert proc.returncode == 2 and "unknown domain 'atomz'" in proc.stderr


def _fake_distribution(root: Path, name: str, entry: str, module: str | None = None,
                       source: str = "") -> None:
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[symplug]\n{entry}\n")
    if module:
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fresh_manager():
    plugins.get_plugin_manager.cache_clear()
    yield
    plugins.get_plugin_manager.cache_clear()


def test_broken_plugins_are_named_and_isolated(tmp_path, monkeypatch, fresh_manager):
    _fake_distribution(tmp_path, "broken-import", "broken = symplug_missing_module_xyz")
    _fake_distribution(tmp_path, "bad-contract", "badhook = bad_contract_mod", "bad_contract_mod", """
        from symplug import hookimpl
        @hookimpl
        def symplug_not_a_hook():
            return 1
    """)
    _fake_distribution(tmp_path, "bad-domain", "baddomain = bad_domain_mod", "bad_domain_mod", """
        from symplug import hookimpl, Domain, Output
        @hookimpl
        def symplug_domains():
            return [Domain(name="oops", act=None, outputs={"e": Output("7q")})]
    """)
    _fake_distribution(tmp_path, "good-plugin", "good = good_mod", "good_mod", """
        from symplug import hookimpl, Domain, Output
        @hookimpl
        def symplug_domains():
            return [Domain(name="good", act=lambda x, g: x, outputs={"e": Output("0e", "eV")})]
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = plugins.domains()
    assert "good" in found and "oops" not in found
    errors = {info.name: info.error for info in plugins.plugin_errors()}
    assert "failed to import symplug_missing_module_xyz" in errors["broken"]
    assert "breaks the contract" in errors["badhook"] and "symplug_not_a_hook" in errors["badhook"]
    assert "act is not callable" in errors["baddomain"] and "'7q'" in errors["baddomain"]
    with pytest.raises(symplug.SymplugError, match="failed plugins: .*broken"):
        plugins.get_domain("missing")


def test_autoload_can_be_disabled(tmp_path, monkeypatch, fresh_manager):
    _fake_distribution(tmp_path, "good-plugin", "good = good_mod2", "good_mod2", """
        from symplug import hookimpl, Domain, Output
        @hookimpl
        def symplug_domains():
            return [Domain(name="good2", act=lambda x, g: x, outputs={"e": Output("0e")})]
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    assert "good2" not in plugins.domains()
    import good_mod2

    assert plugins.get_plugin_manager().register_checked(good_mod2, "by-hand")
    assert "good2" in plugins.domains()


def test_hookspecs_are_documented_and_keyword_only():
    pm = plugins.get_plugin_manager()
    names = [n for n in dir(pm.hook) if n.startswith("symplug_")]
    assert set(names) == {"symplug_domains", "symplug_cli", "symplug_report_sections",
                          "symplug_demo"}
    from symplug import hookspecs

    for name in names:
        assert "Example::" in getattr(hookspecs, name).__doc__

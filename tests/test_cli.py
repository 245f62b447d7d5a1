"""The command line: version, quadrature, one-line errors with exit code 2."""

import json

import pytest

import symplug
from symplug.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"symplug {symplug.__version__}"


def test_quadrature(capsys):
    assert main(["quadrature", "--group", "O3", "--degree", "8"]) == 0
    out = capsys.readouterr().out
    assert "3740 elements" in out and "band <= 8" in out and "Lebedev order 17" in out
    assert main(["quadrature", "--group", "SO2", "--degree", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["size"] == 7 and record["exact_degree"] == 6


@pytest.mark.parametrize("argv,message", [
    (["quadrature", "--group", "U1"], "unknown group 'U1'"),
    (["quadrature", "--degree", "99"], "no Lebedev rule"),
    (["diagnose", "nodomain", "--model", "m", "--data", "d"], "unknown domain 'nodomain'"),
])
def test_user_mistakes(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_plugins_lists_json(capsys):
    assert main(["plugins", "--json"]) == 0
    assert "plugins" in json.loads(capsys.readouterr().out)

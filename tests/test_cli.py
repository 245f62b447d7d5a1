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


def _commands(parser, prefix=()):
    """Every (sub)command path of the parser, recursively."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["plugins"], ["md", "--help"],
                                  ["diagnose", "--help"]])
def test_start_up_imports_no_heavy_module(argv):
    """--version, --help and plugins list the domains from their records without importing
    torch, ase, uproot or e3nn (the records name their functions lazily), so that they
    start in a fraction of a second."""
    import subprocess
    import sys

    code = ("import sys\nfrom symplug.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'ase', 'uproot', 'e3nn', 'awkward') "
            "if m in sys.modules))" % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]", out


def test_every_subcommand_has_help(capsys):
    from symplug.cli import build_parser

    commands = list(_commands(build_parser()))
    assert {("diagnose",), ("md",), ("demo",), ("jets", "generate")} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0, command
        assert capsys.readouterr().out.startswith("usage: symplug " + " ".join(command))


def test_demo_refuses_an_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--quick", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1


@pytest.mark.parametrize("module,argv", [
    ("symplug_jets.train_tagger", ["--out", "t.pt"]),
    ("symplug_jets.train_part", ["--out", "p.pt", "--work", "w"]),
])
def test_plugin_scripts_end_in_one_line_errors(tmp_path, module, argv):
    """The plugins' ``python -m`` training scripts end a bad input as the command line
    does: one line naming it, exit status 2, no traceback."""
    import subprocess
    import sys

    missing = tmp_path / "missing.root"
    out = subprocess.run([sys.executable, "-m", module, "--data", str(missing), *argv],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip() == f"{module}: error: {missing}: no such file"

"""Broken plugins: each is named and left out (``symplug plugins`` lists it as FAILED,
other commands warn in one line on stderr) and the others keep working; a plugin
failing in the computation asked for is a one-line error naming it.

A fake plugin is a package ``fakeplug`` and its ``fakeplug-0.1.dist-info`` (entry
point ``fake`` in the ``symplug`` group) written in the case's folder, which the child
process finds first on its ``PYTHONPATH``.
"""

from __future__ import annotations

import re
import textwrap
import types
from pathlib import Path

from . import ERROR, RESULT, Case

ENV = {"PYTHONPATH": "{tmp}/site:{PYTHONPATH}"}
HEADER = """\
import sys
import torch
from symplug import Domain, Output, hookimpl

def act(x, g):
    return x

def fake_domain(name="fake", **behaviour):
    return Domain(name=name, act=act, groups=("SO3",), outputs={"energy": Output("0e", "a.u.")},
                  **behaviour)
"""


def fake_plugin(code: str, argv: list[str], value: str = "fakeplug"):
    """argv maker: writes the plugin (``code`` after :data:`HEADER`, unless it starts
    with ``#raw``) under ``{tmp}/site`` and returns ``argv``."""
    def make(tmp: Path) -> list[str]:
        site = tmp / "site"
        (site / "fakeplug").mkdir(parents=True, exist_ok=True)
        body = code[4:] if code.startswith("#raw") else HEADER + textwrap.dedent(code)
        (site / "fakeplug" / "__init__.py").write_text(body)
        info = site / "fakeplug-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[symplug]\nfake = {value}\n")
        (tmp / "data.txt").write_text("1 2 3\n")
        return argv
    return make


def listed(pattern: str):
    """Check of ``symplug plugins``: fake FAILED matching ``pattern``, the built-ins fine."""
    def check(_tmp: Path, out: str) -> None:
        line = next((l for l in out.splitlines() if l.startswith("fake ")), "")
        assert "FAILED" in line and re.search(pattern, line), out
        assert re.search(r"^atoms .*domains: atoms$", out, re.M), out
        assert re.search(r"^jets .*domains: jets, jets_axis$", out, re.M), out
    return check


def warned(pattern: str, stdout: str = r"integrates band"):
    """Check of another command: it ran, and one warning line names the plugin."""
    def check(_tmp: Path, both: str) -> None:
        lines = [l for l in both.splitlines() if l.startswith("symplug: warning: plugin 'fake'")]
        assert len(lines) == 1 and re.search(pattern, lines[0]), both
        assert re.search(stdout, both), both
    return check


def plugin_case(name: str, code: str, argv: list[str], expect: str, match: str = "",
                check=None, value: str = "fakeplug") -> Case:
    return Case(f"plugins/{name}", "plugins", expect, match, argv=fake_plugin(code, argv, value),
                check=check, subprocess=True, env=ENV, stderr=check is not None
                and argv[0] != "plugins", timeout=60)


PLUGINS, QUAD = ["plugins"], ["quadrature", "--degree", "1"]
DIAGNOSE_FAKE = ["diagnose", "fake", "--model", "m", "--data", "data.txt", "--quiet"]

SUBPROCESS_CASES = [
    plugin_case("import-error", "import no_such_dependency_xyz\n", PLUGINS, RESULT,
                check=listed(r"failed to import fakeplug: ModuleNotFoundError")),
    plugin_case("import-syntax-error", "#rawdef broken(:\n", PLUGINS, RESULT,
                check=listed(r"SyntaxError")),
    plugin_case("import-sys-exit", "sys.exit(3)\n", PLUGINS, RESULT,
                check=listed(r"called sys\.exit\(3\)")),
    plugin_case("import-sys-exit-warns-other-commands", "sys.exit('no licence')\n", QUAD, RESULT,
                check=warned(r"sys\.exit\('no licence'\)")),
    plugin_case("import-base-exception", "class Boom(BaseException):\n    pass\nraise Boom('x')\n",
                PLUGINS, RESULT, check=listed(r"Boom: x")),
    plugin_case("entry-point-missing-attribute", "x = 1\n", PLUGINS, RESULT,
                check=listed(r"AttributeError"), value="fakeplug:no_such_object"),
    plugin_case("unknown-hook", "@hookimpl\ndef symplug_frobnicate():\n    return 1\n", PLUGINS,
                RESULT, check=listed(r"breaks the contract: .*symplug_frobnicate")),
    plugin_case("hook-with-unknown-argument",
                "@hookimpl\ndef symplug_domains(colour):\n    return []\n", QUAD, RESULT,
                check=warned(r"breaks the contract.*colour")),
    plugin_case("domains-hook-raises",
                "@hookimpl\ndef symplug_domains():\n    raise RuntimeError('no GPU found')\n",
                PLUGINS, RESULT, check=listed(r"symplug_domains: RuntimeError: no GPU found")),
    plugin_case("domains-hook-sys-exit",
                "@hookimpl\ndef symplug_domains():\n    sys.exit(1)\n",
                PLUGINS, RESULT, check=listed(r"symplug_domains: called sys\.exit\(1\)")),
    plugin_case("domains-hook-wrong-type",
                "@hookimpl\ndef symplug_domains():\n    return ['fake']\n",
                PLUGINS, RESULT, check=listed(r"returned str from symplug_domains, not Domain")),
    plugin_case("domains-hook-invalid-record",
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain('not valid')]\n",
                PLUGINS, RESULT, check=listed(r"not an identifier")),
    plugin_case("duplicate-domain-name",
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain('atoms')]\n",
                PLUGINS, RESULT, check=listed(r"domain 'atoms', already declared by 'atoms'")),
    plugin_case("unknown-domain-names-failed-plugin",
                "@hookimpl\ndef symplug_domains():\n    raise ValueError('bad config')\n",
                DIAGNOSE_FAKE, ERROR, r"unknown domain 'fake'.*failed plugins: fake: "
                r"symplug_domains: ValueError: bad config"),
    plugin_case("cli-hook-raises",
                "@hookimpl\ndef symplug_cli(subparsers):\n    raise KeyError('cfg')\n", QUAD,
                RESULT, check=warned(r"symplug_cli: KeyError: 'cfg'")),
    plugin_case("cli-hook-sys-exit",
                "@hookimpl\ndef symplug_cli(subparsers):\n    sys.exit(0)\n", QUAD,
                RESULT, check=warned(r"symplug_cli: called sys\.exit\(0\)")),
    plugin_case("cli-duplicate-command",
                "@hookimpl\ndef symplug_cli(subparsers):\n"
                "    subparsers.add_parser('diagnose').set_defaults(func=lambda a: 0)\n",
                PLUGINS, RESULT, check=listed(r"adds command 'diagnose', which already exists")),
    plugin_case("cli-duplicate-command-keeps-builtin",
                "@hookimpl\ndef symplug_cli(subparsers):\n"
                "    subparsers.add_parser('diagnose').set_defaults(func=lambda a: 0)\n",
                ["diagnose", "nodomain", "--model", "m", "--data", "d"], ERROR,
                r"unknown domain 'nodomain'"),
    plugin_case("cli-half-added-command-left-out",
                "@hookimpl\ndef symplug_cli(subparsers):\n"
                "    subparsers.add_parser('fakecmd').set_defaults(func=lambda a: 0)\n"
                "    raise RuntimeError('half way')\n",
                ["fakecmd"], ERROR, r"invalid choice: 'fakecmd'"),
    plugin_case("load-model-raises",
                "def load(spec, trusted):\n    raise RuntimeError('CUDA out of memory')\n"
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain(load_model=load)]\n",
                DIAGNOSE_FAKE, ERROR, r"plugin 'fake' failed in load_model of domain 'fake': "
                r"RuntimeError: CUDA out of memory"),
    plugin_case("load-model-sys-exit",
                "def load(spec, trusted):\n    sys.exit(4)\n"
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain(load_model=load)]\n",
                DIAGNOSE_FAKE, ERROR, r"plugin 'fake' failed in load_model of domain 'fake': "
                r"called sys\.exit\(4\)"),
    plugin_case("domain-without-loader",
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain()]\n",
                DIAGNOSE_FAKE, ERROR, r"domain 'fake' \(plugin 'fake'\) offers no load_model"),
    plugin_case("load-model-wrong-type",
                "@hookimpl\ndef symplug_domains():\n"
                "    return [fake_domain(load_model=lambda spec, trusted: 'a model')]\n",
                DIAGNOSE_FAKE, ERROR, r"plugin 'fake' returned str, not a callable model, from "
                r"load_model of domain 'fake'"),
    plugin_case("load-data-wrong-type",
                "@hookimpl\ndef symplug_domains():\n"
                "    return [fake_domain(load_model=lambda spec, trusted: (lambda batch: batch),\n"
                "                        load_data=lambda path: 42)]\n",
                DIAGNOSE_FAKE, ERROR, r"plugin 'fake' returned int, not a list of samples"),
    plugin_case("loader-not-callable",
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain(load_data='x.npz')]\n",
                PLUGINS, RESULT, check=listed(r"load_data is not callable")),
    plugin_case("old-hook-is-told-what-replaces-it",
                "@hookimpl\ndef symplug_domains():\n    return [fake_domain()]\n"
                "@hookimpl\ndef symplug_load_model(domain, spec):\n    return None\n",
                PLUGINS, RESULT, check=listed(r"implements symplug_load_model, a hook of symplug "
                                              r"0\.1 .*pass load_model=\(spec, trusted\)")),
    plugin_case("old-augment-hook-is-told-what-replaces-it",
                "@hookimpl\ndef symplug_augment_batch(domain, batch, matrices):\n    return None\n",
                QUAD, RESULT, check=warned(r"implements symplug_augment_batch.*TrainingTask "
                                           r"act=\(batch, matrices\)")),
]


# in-process: a fake plugin object registered by hand, unregistered afterwards
def _with_fake(hook_code: str, run):
    from symplug import plugins

    module = types.ModuleType("fake_inprocess")
    exec(HEADER + textwrap.dedent(hook_code), module.__dict__)
    pm = plugins.get_plugin_manager()
    pm.register_checked(module, "fake_inprocess")
    try:
        return run(plugins), pm.infos.get("fake_inprocess")
    finally:
        if pm.get_plugin("fake_inprocess") is not None:
            pm.unregister(name="fake_inprocess")
        pm.infos.pop("fake_inprocess", None)
        pm.warned.discard("fake_inprocess")


def _sections(hook_code: str):
    return lambda tmp: _with_fake(hook_code, lambda p: p.report_sections(
        {"domain": "atoms", "kind": "diagnosis"}))


def _domain_sections(code: str):
    """A fake domain whose own report sections are ``code`` (a function ``sections``)."""
    return lambda tmp: _with_fake(
        code + "@hookimpl\ndef symplug_domains():\n"
        "    return [fake_domain('fakesections', report_sections=sections)]\n",
        lambda p: p.report_sections({"domain": "fakesections", "kind": "diagnosis"}))


def _left_out(pattern: str):
    def check(_tmp: Path, value) -> None:
        sections, info = value
        assert isinstance(sections, list), sections
        assert info is not None and info.error and re.search(pattern, info.error), info
    return check


def _interrupt(tmp: Path):
    try:
        _with_fake("@hookimpl\ndef symplug_report_sections(result):\n"
                   "    raise KeyboardInterrupt\n",
                   lambda p: p.report_sections({"domain": "atoms"}))
    except KeyboardInterrupt:
        return "interrupted"
    return "swallowed"


def _interrupted(_tmp: Path, value) -> None:
    assert value == "interrupted", value


IN_PROCESS_CASES = [
    Case("plugins/report-sections-hook-raises", "plugins", RESULT,
         call=_sections("@hookimpl\ndef symplug_report_sections(result):\n"
                        "    raise ZeroDivisionError('no samples')\n"),
         check=_left_out(r"failed in symplug_report_sections: ZeroDivisionError")),
    Case("plugins/report-sections-wrong-type", "plugins", RESULT,
         call=_sections("@hookimpl\ndef symplug_report_sections(result):\n"
                        "    return {'title': 'x'}\n"),
         check=_left_out(r"returned dict, not a list of ReportSection")),
    Case("plugins/report-sections-wrong-items", "plugins", RESULT,
         call=_sections("@hookimpl\ndef symplug_report_sections(result):\n"
                        "    return ['## my section']\n"),
         check=_left_out(r"returned str, not ReportSection")),
    Case("plugins/domain-report-sections-raise", "plugins", RESULT,
         call=_domain_sections("def sections(result):\n    raise KeyError('summary')\n"),
         check=_left_out(r"report_sections of domain 'fakesections' failed: KeyError")),
    Case("plugins/domain-report-sections-wrong-type", "plugins", RESULT,
         call=_domain_sections("def sections(result):\n    return '## text'\n"),
         check=_left_out(r"report_sections of domain 'fakesections' returned str, not a list")),
    Case("plugins/keyboard-interrupt-still-interrupts", "plugins", RESULT, call=_interrupt,
         check=_interrupted),
]

CASES = SUBPROCESS_CASES + IN_PROCESS_CASES

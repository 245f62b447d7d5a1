"""The bad-input suite: one table of hostile inputs and faults, each with its expected outcome.

A :class:`Case` runs the command line in this process (``argv``, made in a fresh
folder) or a Python call (``call``), or, with ``subprocess=True``, ``python -m symplug``
in a child process (for faults that end a process: ``sys.exit`` in a plugin, crashes).
The outcome must be one of:

* ``ERROR``: exit code 2 (a :class:`~symplug.errors.SymplugError` for a Python call),
  the message one line matching ``match`` and naming the problem, no traceback;
* ``SKIP``: exit code 0, the sample flagged and counted: the result JSON (``argv``
  writes it to ``{tmp}/result.json``) lists a skipped sample whose reason matches
  ``match``;
* ``RESULT``: exit code 0 and ``check(tmp, stdout)`` holds (a stated result: e.g. a
  number stated as undefined, a warning on stdout, a smaller chunk).

Every case has a time limit (``timeout`` s): a hang fails the case. The tables live in
``cases_*.py`` modules beside this one; :func:`all_cases` collects them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

ERROR, SKIP, RESULT = "error", "skip", "result"
CATEGORIES = ("atoms-data", "jets-data", "models", "options", "finetune", "md", "plugins",
              "paths", "grids", "numbers", "memory")

Argv = Sequence[str] | Callable[[Path], Sequence[str]]


@dataclass(frozen=True)
class Case:
    """One bad input or fault and what symplug must do with it.

    ``argv``: the command line after ``symplug`` (``{tmp}`` is replaced by the case's
    folder), or a function making the case's files in that folder and returning it.
    ``call``: instead, a Python function of the folder. ``check(tmp, stdout)`` asserts a
    ``RESULT`` (with ``stderr=True`` it gets stdout and then stderr, for warnings).
    ``env``: extra environment for ``subprocess`` cases; in its values ``{tmp}`` is the
    case's folder and ``{PYTHONPATH}`` this process's ``PYTHONPATH`` (e.g. a fake
    plugin's folder put before it).
    """

    id: str
    category: str
    expect: str
    match: str = ""
    argv: Argv | None = None
    call: Callable[[Path], Any] | None = None
    check: Callable[[Path, str], None] | None = None
    subprocess: bool = False
    env: dict[str, str] | None = None
    timeout: float = 120.0
    stderr: bool = False


class Hang(Exception):
    """A case ran past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    def _alarm(_signum, _frame):
        raise Hang(f"no outcome within {seconds:.0f} s")
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _argv(case: Case, tmp: Path) -> list[str]:
    argv = case.argv(tmp) if callable(case.argv) else case.argv
    return [str(a).replace("{tmp}", str(tmp)) for a in argv]


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    from symplug.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _run_subprocess(argv: list[str], env: dict[str, str] | None, timeout: float,
                    cwd: Path) -> tuple[int, str, str]:
    here = os.environ.get("PYTHONPATH", "")
    extra = {k: v.replace("{tmp}", str(cwd)).replace("{PYTHONPATH}", here)
             for k, v in (env or {}).items()}
    full = {**os.environ, **extra}
    try:
        done = subprocess.run([sys.executable, "-m", "symplug", *argv], capture_output=True,
                              text=True, env=full, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise Hang(f"no outcome within {timeout:.0f} s") from exc
    return done.returncode, done.stdout, done.stderr


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert lines, f"no error line on stderr:\n{err[-2000:]}"
    return lines[-1]


def run_case(case: Case, tmp: Path) -> None:
    """Run ``case`` in the folder ``tmp`` and assert its expected outcome."""
    from symplug.errors import SymplugError

    assert case.category in CATEGORIES, case.category
    assert case.expect in (ERROR, SKIP, RESULT), case.expect
    if case.call is not None:
        with _time_limit(case.timeout):
            if case.expect == ERROR:
                try:
                    case.call(tmp)
                except SymplugError as exc:
                    message = str(exc)
                else:
                    raise AssertionError(f"{case.id}: no error raised")
                assert "\n" not in message, f"{case.id}: error of several lines: {message!r}"
                assert re.search(case.match, message), f"{case.id}: {message!r} !~ {case.match!r}"
                return
            value = case.call(tmp)
        assert case.check is not None, f"{case.id}: a RESULT call needs a check"
        case.check(tmp, value)
        return
    argv = _argv(case, tmp)
    if case.subprocess:
        code, out, err = _run_subprocess(argv, case.env, case.timeout, tmp)
    else:
        with _time_limit(case.timeout):
            code, out, err = _run_cli(argv)
    assert "Traceback" not in err and "Traceback" not in out, \
        f"{case.id}: traceback\n{err[-3000:]}"
    if case.expect == ERROR:
        assert code == 2, f"{case.id}: exit {code}, expected 2\nstdout: {out[-1500:]}\n" \
                          f"stderr: {err[-1500:]}"
        line = _error_line(err)
        assert re.search(case.match, line), f"{case.id}: {line!r} !~ {case.match!r}"
        return
    assert code == 0, f"{case.id}: exit {code}\nstderr: {err[-2000:]}"
    if case.expect == SKIP:
        result = json.loads((tmp / "result.json").read_text())
        reasons = [s["reason"] for s in result.get("skipped") or []]
        assert any(re.search(case.match, r) for r in reasons), \
            f"{case.id}: no skipped sample matching {case.match!r}: {reasons}"
    if case.check is not None:
        case.check(tmp, out + err if case.stderr else out)
    else:
        assert case.expect == SKIP, f"{case.id}: a RESULT case needs a check"


def all_cases() -> list[Case]:
    """Every case of every ``cases_*`` module in this package, ids unique."""
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("cases_"):
            cases += importlib.import_module(f"{__name__}.{info.name}").CASES
    ids = [c.id for c in cases]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicated, f"duplicate case ids: {duplicated}"
    return cases

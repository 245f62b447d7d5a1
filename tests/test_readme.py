"""The README runs: every ```bash and ```python block of README.md, in document order,
on the small data the README itself uses, so that no example can drift from the code.

How blocks run
--------------
* All blocks share one working directory (``tmp_path``) laid out like the repository
  root, where the README tells users to run: ``plugins``, ``scripts``, ``docs`` and
  ``benchmarks`` are symbolic links into the checkout (read-only use), ``examples`` is a
  copy (``pip install examples/third_party_plugin`` builds in its tree). Nothing is
  written into the repository (``PYTHONDONTWRITEBYTECODE=1`` for every block).
* ``.venv`` there is an overlay of the interpreter running the tests: a venv without
  packages of its own whose ``site-packages`` adds this environment's (``.pth``), with
  this environment's console scripts (``symplug``, ``pip``, ``torchrun``, ...) re-pointed
  at its ``python``. ``.venv/bin/...`` therefore runs the code under test, and what a
  block installs (the third-party plugin) lands in the overlay, never in the shared
  environment.
* Shell blocks (``bash``, ``sh``, ``console``) run as scripts through ``bash -e -o pipefail``.
* Python blocks run through ``.venv/bin/python``, each in a fresh interpreter, except
  that a block marked ``continue`` runs in the same interpreter and namespace as the
  Python block right before it (no shell block in between; the README's prose says
  "continuing the example above"). Tracebacks name README.md and its line numbers.
* A block preceded (as the last non-blank line before its fence) by an HTML comment
  ``<!-- readme-test: DIRECTIVE -->`` is treated specially:

  - ``skip: REASON``: not run (e.g. it installs the environment); the test prints the
    skipped blocks with their reasons, and fails if the reason is empty;
  - ``file: NAME``: not run but written to ``NAME`` in the working directory (the README
    says to save it there; a later block uses it);
  - ``continue``: see above.

  Any other directive fails the test. Fences with another or no language (the result
  format's schema) are text and not run.
* Each block must exit with status 0 within :data:`BLOCK_TIMEOUT`. A block may be
  followed by ``<!-- readme-test: expect: TEXT -->``: TEXT must then appear in its
  standard output. A failure names the block's line in README.md, its text and the tail
  of its output (shell blocks run with ``-x``: the last ``+`` line of stderr is the
  command that failed); ``SYMPLUG_README_LOG=DIR`` keeps every block's output in DIR.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL = ("bash", "sh", "shell", "console")
PYTHON = ("python", "py")
LINKED = ("plugins", "scripts", "docs", "benchmarks")  # read by README commands
COPIED = ("examples",)  # written into by a README command (pip's in-tree build)
BLOCK_TIMEOUT = 300  # seconds for one block
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<directive>[a-z]+)\s*(?::\s*(?P<arg>.*?))?\s*-->$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
TAIL = 3000  # characters of output shown on failure


@dataclass
class Block:
    line: int  # 1-based line of the block's first code line in README.md
    lang: str
    text: str
    directive: str | None = None
    arg: str | None = None
    expect: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.lang in SHELL:
            return "shell"
        if self.lang in PYTHON:
            return "python"
        return "text"

    def describe(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def parse(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text with their ``readme-test`` markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            marker = MARKER.match(lines[i].strip())
            if marker and marker["directive"] == "expect":
                if not blocks:
                    raise AssertionError(f"README.md:{i + 1}: 'expect' marker before any block")
                blocks[-1].expect.append(marker["arg"] or "")
            i += 1
            continue
        fence, start = match["fence"], i
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md:{start + 1}: unclosed code fence")
        block = Block(start + 2, match["lang"].lower(), "\n".join(lines[start + 1:i]) + "\n")
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.match(lines[before].strip()) if before >= 0 else None
        if marker and marker["directive"] != "expect":
            block.directive, block.arg = marker["directive"], marker["arg"]
        blocks.append(block)
        i += 1
    return blocks


def test_parser_reads_markers():
    blocks = parse(textwrap.dedent("""\
        text
        <!-- readme-test: skip: installs things -->
        ```bash
        pip install x
        ```
        <!-- readme-test: expect: ok -->

        ```python
        a = 1
        ```
        <!-- readme-test: continue -->
        ```python
        print(a)
        ```
        ```
        { "schema" }
        ```
        """))
    assert [(b.line, b.kind, b.directive, b.arg) for b in blocks] == [
        (4, "shell", "skip", "installs things"), (9, "python", None, None),
        (13, "python", "continue", None), (16, "text", None, None)]
    assert blocks[0].expect == ["ok"] and blocks[1].text == "a = 1\n"


# ---------------------------------------------------------------------------- running

DRIVER = """\
import sys, traceback
readme, status = sys.argv[1], sys.argv[2]
namespace = {"__name__": "__main__"}
for spec in sys.argv[3:]:
    line, path = spec.split(":", 1)
    source = open(path).read()
    print(f"=== README.md:{line}", flush=True)
    print(f"=== README.md:{line}", file=sys.stderr, flush=True)
    try:
        exec(compile("\\n" * (int(line) - 1) + source, readme, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    with open(status, "a") as f:
        f.write(line + "\\n")
"""


def overlay_venv(path: Path) -> Path:
    """A venv at ``path`` that sees this interpreter's packages and console scripts."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_symplug_readme_parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")
    # console scripts of this environment, re-pointed at the overlay's python
    here = Path(sys.executable).parent
    for script in sorted(here.iterdir()):
        target = path / "bin" / script.name
        if target.exists() or script.is_dir() or script.name.startswith(("python", "activate")):
            continue
        try:
            first, rest = script.read_text().split("\n", 1)
        except (UnicodeDecodeError, ValueError):
            continue
        if first.startswith("#!") and "python" in first:
            target.write_text(f"#!{python}\n{rest}")
            target.chmod(0o755)
    return python


def workdir(tmp_path: Path) -> tuple[Path, dict]:
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    python = overlay_venv(work / ".venv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHONHOME", "COV_"))}
    # offline pip: no index, build with this environment's setuptools (pip reads
    # PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation)
    env.update(PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
               VIRTUAL_ENV=str(python.parent.parent),
               PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}")
    return work, env


def failure(block: Block, why: str, stdout: str = "", stderr: str = "") -> str:
    return (f"{block.describe()} {why}\n--- block ---\n{block.text}"
            f"--- stdout (tail) ---\n{stdout[-TAIL:]}\n--- stderr (tail) ---\n{stderr[-TAIL:]}")


def run(argv: list[str], cwd: Path, env: dict) -> tuple[int | None, str, str]:
    """Exit status (None after :data:`BLOCK_TIMEOUT`), stdout and stderr of ``argv``; on
    timeout its whole process group (a block's commands and their workers) is killed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def groups(blocks: list[Block]) -> list[list[Block]]:
    """Runnable units in document order: a shell block, or a Python block with the
    Python blocks marked ``continue`` right after it."""
    units: list[list[Block]] = []
    for block in blocks:
        if block.kind == "text" or block.directive in ("skip", "file"):
            units.append([block])
        elif block.directive == "continue":
            previous = units[-1][-1] if units else None
            assert previous is not None and previous.kind == "python" and block.kind == "python" \
                and previous.directive not in ("skip", "file"), \
                f"{block.describe()}: 'continue' must follow a Python block that runs"
            units[-1].append(block)
        elif block.directive is None:
            units.append([block])
        else:
            raise AssertionError(f"{block.describe()}: unknown readme-test directive "
                                 f"{block.directive!r} (skip, file, continue, expect)")
    return units


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path):
    blocks = parse(README.read_text())
    assert sum(b.kind != "text" for b in blocks) >= 10, "README.md lost its examples?"
    work, env = workdir(tmp_path)
    scratch = tmp_path / "blocks"
    scratch.mkdir()
    (scratch / "driver.py").write_text(DRIVER)
    python = str(work / ".venv" / "bin" / "python")
    statuses, start, wall_start = [], time.perf_counter(), time.time()
    for unit in groups(blocks):
        first = unit[0]
        if first.kind == "text":
            statuses.append((first, "text, not run"))
            continue
        if first.directive == "skip":
            assert first.arg, f"{first.describe()}: a skipped block needs a reason"
            statuses.append((first, f"skipped: {first.arg}"))
            continue
        if first.directive == "file":
            assert first.arg and "/" not in first.arg, f"{first.describe()}: file: NAME"
            (work / first.arg).write_text(first.text)
            statuses.append((first, f"written to {first.arg}"))
            continue
        t0 = time.perf_counter()
        if first.kind == "shell":
            script = scratch / f"block_{first.line}.sh"
            script.write_text(first.text)
            # -x: the last "+" line of stderr is the command that failed
            code, out, err = run(["bash", "-e", "-o", "pipefail", "-x", str(script)], work, env)
        else:
            status = scratch / f"status_{first.line}"
            specs = []
            for block in unit:
                path = scratch / f"block_{block.line}.py"
                path.write_text(block.text)
                specs.append(f"{block.line}:{path}")
            code, out, err = run([python, str(scratch / "driver.py"), str(README), str(status),
                                  *specs], work, env)
            done = set(status.read_text().split()) if status.exists() else set()
            failed = [b for b in unit if str(b.line) not in done]
            first = failed[0] if failed and code != 0 else unit[-1]
        seconds = time.perf_counter() - t0
        if os.environ.get("SYMPLUG_README_LOG"):  # a folder for each block's output
            log = Path(os.environ["SYMPLUG_README_LOG"])
            log.mkdir(parents=True, exist_ok=True)
            (log / f"block_{first.line}.out").write_text(f"{out}\n--- stderr ---\n{err}")
        if code is None:
            pytest.fail(failure(first, f"ran past {BLOCK_TIMEOUT} s", out, err), pytrace=False)
        if code != 0:
            pytest.fail(failure(first, f"exited with status {code}", out, err), pytrace=False)
        for block in unit:
            for text in block.expect:
                assert text in out, failure(block, f"printed no {text!r}", out, err)
            statuses.append((block, f"ran ({seconds:.0f} s)" if block is unit[-1] else "ran"))
    total = time.perf_counter() - start
    print(f"\nREADME.md blocks ({total:.0f} s):")
    for block, status in statuses:
        print(f"  {block.describe():<28} {status}")
    skipped = [b for b, s in statuses if s.startswith("skipped")]
    assert len(skipped) <= 3, f"{len(skipped)} README blocks skipped; keep the tour runnable"
    # what the blocks wrote stayed in the working directory
    made = {p.name for p in work.iterdir()} - set(LINKED) - set(COPIED) - {".venv"}
    leaked = sorted(name for name in made if (ROOT / name).exists()
                    and (ROOT / name).lstat().st_mtime >= wall_start)
    assert not leaked, f"README blocks wrote into the repository: {leaked}"

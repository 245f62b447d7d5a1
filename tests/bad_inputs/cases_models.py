"""Model specs: missing, broken, of the other domain, and hostile. A file that would run
code when loaded (a pickle payload) is refused unless the user trusts it
(``--trust-model``, ``trusted=True``); ``.pt`` files are always read with
``torch.load(weights_only=True)``, trusted or not. The payloads here write a marker file,
which must never appear."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

from . import ERROR, Case

ROOT = Path(__file__).resolve().parents[2]
CU = str(ROOT / "plugins" / "symplug_atoms" / "data" / "pet_cu_test.extxyz")
TAGGER = ROOT / "plugins" / "symplug_jets" / "data" / "tagger.pt"
JETS = str(ROOT / "plugins" / "symplug_jets" / "data" / "tagger_test.root")
PET_CU = next((ROOT / "plugins" / "symplug_atoms" / "data").glob("*.pt"))


class Payload:
    """Unpickling this runs ``os.system("touch MARKER")`` in the case's folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil(name: str, zipped: bool = False):
    """argv maker's helper: a pickle with a payload at ``{tmp}/name``."""
    def make(tmp: Path) -> Path:
        path = tmp / name
        if zipped:
            import torch

            torch.save({"state_dict": Payload(tmp / "MARKER")}, path)
        else:
            path.write_bytes(pickle.dumps({"state_dict": Payload(tmp / "MARKER")}, protocol=2))
        return path
    return make


def cli_error(tmp: Path, argv: list[str]) -> None:
    """Run the CLI in-process; raise its one-line error as a SymplugError, and fail if a
    payload ran."""
    import contextlib
    import io

    from symplug.cli import main
    from symplug.errors import SymplugError

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    assert not (tmp / "MARKER").exists(), "the payload ran"
    lines = [line for line in err.getvalue().splitlines() if "error:" in line]
    if code == 2 and lines:
        raise SymplugError(lines[-1].split("error: ", 1)[1])
    raise AssertionError(f"exit {code}: {err.getvalue()[-1000:]}")


def refused(name: str, command: list[str], zipped: bool = False, match: str = r"refused",
            trust: bool = False, file: str = "evil.ckpt") -> Case:
    """A payload ``file`` given as the model of ``command`` (``{model}``): refused, the
    payload never run."""
    def call(tmp: Path):
        path = evil(file, zipped)(tmp)
        argv = [a.replace("{model}", str(path)) for a in command]
        return cli_error(tmp, argv + (["--trust-model"] if trust else []))
    return Case(f"models/{name}", "models", ERROR, match, call=call)


def python_refused(tmp: Path):
    import symplug_atoms

    path = evil("evil.ckpt")(tmp)
    try:
        symplug_atoms.load_model(str(path))
    finally:
        assert not (tmp / "MARKER").exists(), "the payload ran"
    raise AssertionError("loaded")  # pragma: no cover


def files(**made):
    """argv maker: write ``made`` (name: bytes, or a callable of the folder) then return argv."""
    def outer(argv):
        def make(tmp: Path):
            for name, content in made.items():
                name = name.replace("__", ".")
                if callable(content):
                    content(tmp / name)
                elif content is None:
                    (tmp / name).mkdir()
                else:
                    (tmp / name).write_bytes(content)
            return argv
        return make
    return outer


def _torch_save(value):
    def save(path: Path) -> None:
        import torch

        torch.save(value() if callable(value) else value, path)
    return save


def _truncated(source: Path, fraction: float = 0.5):
    return lambda path: path.write_bytes(source.read_bytes()[: int(source.stat().st_size * fraction)])


def _copy(source: Path):
    return lambda path: shutil.copy(source, path)


def _tensor():
    import torch

    return torch.zeros(3)


def _no_config():
    import torch

    return {"weights": torch.zeros(2)}


def _sys_exit_module(path: Path) -> None:
    path.write_text("import sys\nsys.exit(5)\n")


DIAG_ATOMS = ["diagnose", "atoms", "--data", CU, "--degree", "1", "--quiet", "--model"]
DIAG_JETS = ["diagnose", "jets", "--data", JETS, "--degree", "1", "--quiet", "--model"]
TRUST = "--trust-model"


def atoms(name, match, model, made=None, trust=False, jets=False, subprocess=False):
    """A bad ``--model`` of ``symplug diagnose atoms`` (``jets``: of jets), files ``made``
    first; ``subprocess``: in a child process started in the case's folder (importable)."""
    argv = (DIAG_JETS if jets else DIAG_ATOMS) + [model] + ([TRUST] if trust else [])
    if made:
        argv = files(**made)(argv)
    return Case(f"models/{name}", "models", ERROR, match, argv=argv, subprocess=subprocess)


CASES = [
    # hostile files: refused, the payload never runs
    refused("ckpt-payload-untrusted", command=DIAG_ATOMS + ["{model}"], match=r"evil\.ckpt': refused, a "
            r"metatrain checkpoint is unpickled .*--trust-model"),
    Case("models/ckpt-payload-python-untrusted", "models", ERROR,
         r"refused.*trusted=True in Python", call=python_refused),
    refused("pt-payload-plain-pickle", file="evil.pt", command=DIAG_ATOMS + ["{model}"],
            match=r"refused, it holds a pickled Python object"),
    refused("pt-payload-torch-save", file="evil.pt", command=DIAG_ATOMS + ["{model}"], zipped=True,
            match=r"refused.*posix\.system|refused.*GLOBAL"),
    refused("pt-payload-trusted-still-weights-only", file="evil.pt", command=DIAG_ATOMS + ["{model}"], zipped=True,
            trust=True, match=r"weights_only=True"),
    refused("pth-payload-not-a-model-spec", file="evil.pth", command=DIAG_ATOMS + ["{model}"],
            match=r"unknown atoms model '.*evil\.pth'"),
    refused("jets-pt-payload", file="evil.pt", command=DIAG_JETS + ["{model}"], zipped=True,
            match=r"refused, it holds a pickled Python object"),
    refused("track-checkpoint-payload", file="evil.pt", command=["track", "atoms", "--data", CU, "--out", "{model}.out",
                                         "--checkpoints", "{model}"], zipped=True,
            match=r"refused, it holds a pickled Python object"),
    refused("md-ckpt-payload", command=["md", "atoms", "--structure", "ico13", "--steps", "2",
                                "--quiet", "--out", "{model}.md", "--model", "{model}"],
            match=r"evil\.ckpt': refused"),
    refused("finetune-ckpt-payload", command=["finetune", "atoms", "--data", CU, "--epochs", "1",
                                      "--out", "{model}.ft", "--quiet", "--model", "{model}"],
            match=r"evil\.ckpt': refused"),
    # missing and broken files
    atoms("pt-missing", r"missing\.pt: no such", "missing.pt"),
    atoms("ckpt-missing-trusted", r"missing\.ckpt: no such metatrain checkpoint", "missing.ckpt",
          trust=True),
    atoms("pt-is-a-folder", r"model\.pt: a folder, not a file", "model.pt",
          made={"model__pt": None}),
    atoms("ckpt-is-a-folder-trusted", r"model\.ckpt: metatrain cannot load it", "model.ckpt",
          made={"model__ckpt": None}, trust=True),
    atoms("pt-empty", r"empty\.pt: not a readable atoms model checkpoint", "empty.pt",
          made={"empty__pt": b""}),
    atoms("pt-truncated", r"half\.pt: not a readable atoms model checkpoint", "half.pt",
          made={"half__pt": _truncated(PET_CU)}),
    atoms("pt-garbage", r"noise\.pt: (not a readable|refused)", "noise.pt",
          made={"noise__pt": bytes(range(256)) * 8}),
    atoms("ckpt-garbage-trusted", r"noise\.ckpt: metatrain cannot load it", "noise.ckpt",
          made={"noise__ckpt": b"\x89HDF\r\n garbage" * 50}, trust=True),
    atoms("ckpt-empty-trusted", r"empty\.ckpt: metatrain cannot load it", "empty.ckpt",
          made={"empty__ckpt": b""}, trust=True),
    atoms("yaml-options-as-model", r"unknown atoms model 'options\.yaml'", "options.yaml",
          made={"options__yaml": b"architecture: {name: pet}\n"}),
    atoms("pt-weights-without-config", r"not a symplug atoms model checkpoint \(KeyError: 'config'\)",
          "w.pt", made={"w__pt": _torch_save(_no_config)}),
    atoms("pt-bare-tensor", r"not a symplug atoms model checkpoint", "t.pt",
          made={"t__pt": _torch_save(_tensor)}),
    # the other domain's models
    atoms("tagger-checkpoint-as-atoms-model", r"tagger\.pt: not a symplug atoms model checkpoint",
          "tagger.pt", made={"tagger__pt": _copy(TAGGER)}),
    atoms("atoms-model-as-tagger", r"unknown tagger 'pet-cu'", "pet-cu", jets=True),
    atoms("atoms-checkpoint-as-tagger", r"cu\.pt: not a symplug tagger checkpoint", "cu.pt",
          made={"cu__pt": _copy(PET_CU)}, jets=True),
    # module:attribute specs: an import runs code, so only when trusted
    atoms("module-attr-untrusted", r"refused, it imports Python module 'ase\.calculators\.emt'",
          "ase.calculators.emt:EMT"),
    atoms("jets-module-function-untrusted", r"refused, it imports Python module 'math'",
          "math:sqrt", jets=True),
    atoms("module-missing-trusted", r"cannot load atoms model 'no_such_mod_q:X': "
          r"ModuleNotFoundError", "no_such_mod_q:X", trust=True),
    atoms("attribute-missing-trusted", r"cannot load atoms model 'ase:NoSuchCalc': AttributeError",
          "ase:NoSuchCalc", trust=True),
    atoms("attribute-not-a-model-trusted", r"expected an ASE calculator, got float", "math:pi",
          trust=True),
    atoms("torch-module-without-cutoff-trusted", r"without a numeric 'cutoff'",
          "torch.nn:Identity", trust=True),
    atoms("module-sys-exit-on-import-trusted",
          r"cannot load atoms model .exits_on_import:model.: called sys\.exit\(5\)",
          "exits_on_import:model", made={"exits_on_import__py": _sys_exit_module}, trust=True,
          subprocess=True),
    atoms("module-attr-empty-parts-trusted", r"expected module:attribute", ":EMT", trust=True),
    atoms("jets-function-not-callable-trusted", r"tagger 'math:pi' is not callable", "math:pi",
          jets=True, trust=True),
    Case("models/md-reference-module-untrusted", "models", ERROR,
         r"refused, it imports Python module 'ase\.calculators\.lj'",
         argv=["md", "atoms", "--model", "emt", "--structure", "ico13", "--steps", "2", "--quiet",
               "--out", "{tmp}/md", "--reference", "ase.calculators.lj:LennardJones"]),
]

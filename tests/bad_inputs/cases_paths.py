"""Output and input paths checked *before* the computation: ``--json``, ``--out``,
``--report``, ``--compare-to``. The data given is missing, so an error about the path
proves the path was checked first (no computation is lost)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import ERROR, Case

ROOT = Path(__file__).resolve().parents[2]
CU = str(ROOT / "plugins" / "symplug_atoms" / "data" / "pet_cu_test.extxyz")
DIAG = ["diagnose", "atoms", "--model", "emt", "--data", "missing.xyz", "--quiet"]


def read_only(tmp: Path) -> str:
    """A folder no file can be made in: a 0555 folder, or /proc for root (who ignores modes)."""
    if os.geteuid() == 0:
        return "/proc"
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


def with_files(argv, **made):
    """argv maker: write ``made`` (name with ``__`` for ``.``: text, or None for a folder)."""
    def make(tmp: Path):
        for name, text in made.items():
            path = tmp / name.replace("__", ".")
            if text is None:
                path.mkdir()
            elif isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(text)
        return [a.replace("{ro}", read_only(tmp)) if "{ro}" in a else a for a in argv]
    return make


def case(name: str, match: str, argv, **made) -> Case:
    return Case(f"paths/{name}", "paths", ERROR, match,
                argv=with_files(argv, **made) if (made or any("{ro}" in a for a in argv)) else argv)


JETS_RESULT = json.dumps({"domain": "jets", "outputs": {}})

CASES = [
    case("json-into-missing-folder", r"--json '.*nowhere/r\.json': folder .* does not exist",
         DIAG + ["--json", "nowhere/r.json"]),
    case("json-is-a-folder", r"--json 'out': is a folder, not a file", DIAG + ["--json", "out"],
         out=None),
    case("json-into-read-only-folder", r"--json '.*r\.json': cannot write in",
         DIAG + ["--json", "{ro}/r.json"]),
    case("json-under-a-file", r"--json 'notes\.txt/r\.json': folder 'notes\.txt' is not a folder",
         DIAG + ["--json", "notes.txt/r.json"], notes__txt="x"),
    case("report-out-is-a-file", r"--out 'report\.html': is a file, not a folder",
         DIAG + ["--report", "--out", "report.html"], report__html="<html>"),
    case("report-out-in-read-only-folder", r"--out '.*rep': cannot (make the folder|write)",
         DIAG + ["--report", "--out", "{ro}/rep"]),
    case("report-out-under-a-file", r"--out 'f\.txt/rep': cannot write there, cannot make the folder",
         DIAG + ["--report", "--out", "f.txt/rep"], f__txt="x"),
    case("compare-to-missing", r"--compare-to 'old\.json': not a readable result JSON",
         DIAG + ["--compare-to", "old.json"]),
    case("compare-to-a-list", r"--compare-to 'list\.json': not a symplug result \(a JSON list\)",
         DIAG + ["--compare-to", "list.json"], list__json="[1, 2]"),
    case("compare-to-binary-garbage", r"--compare-to 'g\.json': not a readable result JSON",
         DIAG + ["--compare-to", "g.json"], g__json=b"\xff\xfe\x00garbage"),
    case("compare-to-other-domain", r"a result of domain 'jets', not 'atoms'",
         DIAG + ["--compare-to", "jets.json"], jets__json=JETS_RESULT),
    case("compare-to-dict-not-a-result", r"not a symplug result \(a JSON dictionary without 'domain'\)",
         DIAG + ["--compare-to", "cfg.json"], cfg__json='{"degree": 4}'),
    case("compare-to-a-folder", r"--compare-to 'res': not a readable result JSON",
         DIAG + ["--compare-to", "res"], res=None),
    case("compare-to-empty-file", r"--compare-to 'e\.json': not a readable result JSON",
         DIAG + ["--compare-to", "e.json"], e__json=""),
    case("md-out-is-a-file", r"--out 'md\.txt': is a file, not a folder",
         ["md", "atoms", "--model", "emt", "--structure", "ico13", "--out", "md.txt"], md__txt="x"),
    case("md-json-is-a-folder", r"--json 'res': is a folder, not a file",
         ["md", "atoms", "--model", "emt", "--structure", "ico13", "--out", "md", "--json", "res"],
         res=None),
    case("md-out-read-only", r"--out '.*md': cannot (make the folder|write)",
         ["md", "atoms", "--model", "emt", "--structure", "ico13", "--out", "{ro}/md"]),
    case("demo-out-is-a-file", r"--out 'demo\.zip': is a file, not a folder",
         ["demo", "--quick", "--out", "demo.zip"], demo__zip=b"PK"),
    case("demo-out-read-only", r"--out '.*demo': cannot (make the folder|write)",
         ["demo", "--quick", "--out", "{ro}/demo"]),
    case("finetune-out-is-a-file", r"--out 'run\.log': is a file, not a folder",
         ["finetune", "atoms", "--model", "pet-cu", "--data", "missing.xyz", "--out", "run.log"],
         run__log="x"),
    case("track-out-is-a-file", r"--out 'track\.json': is a file, not a folder",
         ["track", "atoms", "--checkpoints", "missing.pt", "--data", "missing.xyz",
          "--out", "track.json"], track__json="{}"),
    case("track-out-read-only", r"--out '.*tr': cannot (make the folder|write)",
         ["track", "atoms", "--checkpoints", "missing.pt", "--data", CU, "--out", "{ro}/tr"]),
    case("jets-generate-out-is-a-folder", r"--out 'jets': is a folder, not a file",
         ["jets", "generate", "--out", "jets", "--n", "2"], jets=None),
    case("jets-generate-out-missing-folder", r"--out 'no/j\.root': folder 'no' does not exist",
         ["jets", "generate", "--out", "no/j.root", "--n", "2"]),
]

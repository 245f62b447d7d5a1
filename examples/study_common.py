"""What the two study scripts (study_atoms.py, study_jets.py) share: writing the result."""

from __future__ import annotations

from pathlib import Path

from symplug.result import write_bytes, write_json


def write_study(result: dict, table: str, out: Path) -> None:
    """``study.json`` (atomically) and ``study.md`` (the table) in ``out``; print the table."""
    write_json(result, out / "study.json")
    write_bytes(table.encode(), out / "study.md")
    print(table)
    print(f"total {result['seconds']:.0f} s")

"""What the study scripts share: writing the result, and a mean ± spread over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from symplug.result import write_bytes, write_json


def write_study(result: dict, table: str, out: Path) -> None:
    """``study.json`` (atomically) and ``study.md`` (the table) in ``out``; print the table."""
    write_json(result, out / "study.json")
    write_bytes(table.encode(), out / "study.md")
    print(table)
    print(f"total {result['seconds']:.0f} s")


def mean_std(values: Sequence[float]) -> list[float]:
    """[mean, standard deviation] of one quantity over seeds."""
    values = np.asarray(values, dtype=float)
    return [float(values.mean()), float(values.std())]


def pm(value: Sequence[float] | None, fmt: str = "{:.3g}") -> str:
    """``"mean ± std"`` of :func:`mean_std`'s pair; ``"-"`` where undefined (None)."""
    return "-" if value is None else f"{fmt.format(value[0])} ± {fmt.format(value[1])}"

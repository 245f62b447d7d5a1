"""Writing results: atomic JSON files with the stable DESIGN §3 keys."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import SymplugError


def _clean(value: Any) -> Any:
    """JSON-safe copy: tuples to lists, non-finite floats to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise SymplugError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    text = json.dumps(_clean(result), indent=2, sort_keys=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path

"""Writing results: atomic JSON files with the stable README "Result format" keys."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary path)`` next to ``path``, then rename it onto ``path``."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise SymplugError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # on disk before the rename, not just in the cache
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` atomically (temporary file, then rename)."""
    text = json.dumps(_clean(result), indent=2, sort_keys=False, allow_nan=False)

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write(text + "\n")

    return atomic_write(path, write)


def write_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (a killed run never leaves a
    truncated checkpoint). Keep it loadable with ``torch.load(weights_only=True)``:
    tensors, numbers, strings, lists, tuples and dicts only."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    return atomic_write(path, write)


def write_tensormap(tensormap, path: str | os.PathLike) -> Path:
    """``metatensor.save`` a TensorMap (metatensor-core or metatensor-torch) to ``path``
    (ending in ``.mts``) atomically."""
    def write(tmp: str) -> None:  # metatensor appends .mts to other names
        module = type(tensormap).__module__
        if module.startswith("metatensor.torch") or module.startswith("torch"):
            import metatensor.torch as mts
        else:
            import metatensor as mts
        try:
            mts.save(tmp + ".mts", tensormap)
            os.replace(tmp + ".mts", tmp)
        finally:
            if os.path.exists(tmp + ".mts"):
                os.unlink(tmp + ".mts")

    return atomic_write(path, write)

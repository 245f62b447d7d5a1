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


def _probe(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (tried, not guessed: root ignores
    permission bits, read-only file systems do not), else the reason."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".symplug-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Check, before a computation, that the file ``path`` can be written (its folder
    exists and takes files; ``path`` is not a folder). ``what`` names the option, e.g.
    ``"--json"``; a problem is a one-line :class:`SymplugError` naming it and the path."""
    path = Path(path)
    if path.is_dir():
        raise SymplugError(f"{what} {str(path)!r}: is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise SymplugError(f"{what} {str(path)!r}: folder {str(folder)!r} {state}")
    reason = _probe(folder)
    if reason:
        raise SymplugError(f"{what} {str(path)!r}: cannot write in {str(folder)!r} ({reason})")
    return path


def check_folder(path: str | os.PathLike, what: str) -> Path:
    """Check, before a computation, that the output folder ``path`` exists and takes
    files, or can be made (then it is made). ``what`` names the option, e.g. ``"--out"``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SymplugError(f"{what} {str(path)!r}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SymplugError(f"{what} {str(path)!r}: cannot write there, cannot make the "
                           f"folder ({exc.strerror or type(exc).__name__})") from exc
    reason = _probe(path)
    if reason:
        raise SymplugError(f"{what} {str(path)!r}: cannot write in it ({reason})")
    return path


def read_result(path: str | os.PathLike, what: str) -> dict:
    """A result JSON written by symplug (a dictionary with ``domain``), read before a
    computation that needs it; anything else is a one-line error naming ``what``."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SymplugError(f"{what} {str(path)!r}: not a readable result JSON ({reason})") from exc
    if not isinstance(value, dict) or "domain" not in value:
        kind = type(value).__name__ if not isinstance(value, dict) else "dictionary without 'domain'"
        raise SymplugError(f"{what} {str(path)!r}: not a symplug result (a JSON {kind})")
    return value


def load_weights(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, numbers, strings and
    containers only, so a file cannot run code (a pickled Python object is refused).
    Any failure is a one-line :class:`SymplugError` naming ``path`` and ``what`` it
    should be; the unpickler's warnings about protocols are silenced."""
    import pickle
    import re
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise SymplugError(f"{path}: no such {what}" if not path.exists()
                           else f"{path}: a folder, not a file ({what} expected)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only=True met a Python object
        found = re.search(r"(?:Unsupported|unsupported) (?:global|GLOBAL)[^\n]*?(?=\.?\s*$|\n)",
                          str(exc), re.MULTILINE)
        if found is None:  # not a pickle at all (text, a torn file): unreadable, not unsafe
            raise SymplugError(f"{path}: not a readable {what} (not a torch file: "
                               f"{' '.join(str(exc).split())[:120]})") from exc
        detail = found.group(0)
        raise SymplugError(f"{path}: refused, it holds a pickled Python object that a safe "
                           f"load (torch.load weights_only=True) does not run ({detail})") from exc
    except Exception as exc:
        raise SymplugError(f"{path}: not a readable {what} ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]})") from exc

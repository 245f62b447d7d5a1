"""Resident memory of one call in a benchmark's worker process (Linux with glibc), so that
every benchmark measures a call alike: :func:`start_call` trims the heap (glibc
``malloc_trim(0)``), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) and
returns the RSS before the call; ``status("VmHWM") - rest`` after it is the call's peak."""

import ctypes

_LIBC = ctypes.CDLL("libc.so.6")


def status(field: str) -> float:
    """A /proc/self/status memory field (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def start_call() -> float:
    """Trim the heap, reset the peak-RSS counter to the current RSS and return it (MiB)."""
    _LIBC.malloc_trim(0)
    rest = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return rest


def worker_env() -> dict:
    """The environment of a worker process, with this folder on PYTHONPATH (for ``_rss``)."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p)}

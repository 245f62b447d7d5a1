"""The memory budget: how much a run may hold, and work split to stay under it.

A budget is the peak resident memory (RSS, bytes) the process may reach. The default
is :data:`DEFAULT_FRACTION` of the machine's memory (the cgroup limit where one is
set), or less on a busy machine: what the process holds plus :data:`AVAILABLE_FRACTION`
of the memory available when the run starts.

Work that scales with a batch (copies of a sample per model call, jets per scoring
call) is cut by :func:`chunks`: the first call takes a small batch, its measured peak
gives the cost per unit, and later calls take as many units as fit in
:data:`HEADROOM` of the budget left, growing at most :data:`GROWTH` x per call (a cost
that grows faster than the batch is seen before it matters) and never above the
caller's cap. A smallest batch over the budget is refused with the measured figure;
requests whose size is known up front are checked by :func:`require`.

The peak is read from the kernel (``VmHWM``, reset per call through
``/proc/self/clear_refs``). glibc serves even large requests from free heap before it
maps new memory, so a call that reuses freed heap does not raise the RSS, and a trial so
measured would promise room that a larger call does not find. Before a measured trial
the C heap's free pages therefore go back to the kernel (glibc's ``malloc_trim``), and
before a chunk below the caller's cap when the free heap, times the growth of the next
chunk, could exceed the chunks' headroom (``1 - HEADROOM`` of the budget left);
otherwise they stay, since returning them costs page faults. Where the
kernel gives no peak (not Linux) the chunks are the caller's cap and only
:func:`require` applies.

The mathematics and design: docs/design.md, section 2.4.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import SymplugError

DEFAULT_FRACTION = 0.6  # of the machine's (or cgroup's) memory
AVAILABLE_FRACTION = 0.8  # of the memory available when the run starts (a busy machine)
GROWTH = 4  # a chunk grows at most this many times per call
HEADROOM = 0.85  # chunks aim at this share of the budget left (costs may grow with the batch)
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}

_active: contextvars.ContextVar[int | None] = contextvars.ContextVar("symplug_budget",
                                                                     default=None)


class MemoryBudgetError(SymplugError):
    """A request, or one unit of work, that does not fit in the memory budget."""


def gib(nbytes: float) -> str:
    """``nbytes`` in words: ``"3.2 GiB"``, ``"512 MiB"``."""
    return f"{nbytes / 2 ** 30:.3g} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.3g} MiB"


def parse_size(text: str | int | float) -> int:
    """Bytes from ``"8G"``, ``"8GiB"``, ``"512M"``, ``"1.5g"`` or a number of bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*",
                             str(text).lower())
        if not match:
            raise SymplugError(f"memory size {text!r}: expected e.g. 8G, 512M or bytes")
        value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < 2 ** 26:
        raise SymplugError(f"memory size {text!r}: must be at least 64 MiB")
    return int(value)


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a smaller cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return int(total)


def _proc_kb(path: str, field: str) -> int | None:
    """Bytes of the ``field:  N kB`` line of a /proc file, or None where there is none."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def available_memory() -> int | None:
    """Bytes the kernel could give now without swapping (``MemAvailable``), or None."""
    return _proc_kb("/proc/meminfo", "MemAvailable")


def default_budget() -> int:
    """:data:`DEFAULT_FRACTION` of :func:`machine_memory`, or less when other processes
    hold memory: what this process holds plus :data:`AVAILABLE_FRACTION` of what is
    available now."""
    budget = int(DEFAULT_FRACTION * machine_memory())
    available = available_memory()
    if available is not None:
        budget = min(budget, (rss() or 0) + int(AVAILABLE_FRACTION * available))
    return budget


def budget() -> int:
    """The budget in force: the innermost :func:`limit`, else :func:`default_budget`."""
    active = _active.get()
    return default_budget() if active is None else active


@contextlib.contextmanager
def limit(nbytes: int | str | None) -> Iterator[int]:
    """Run the block under a budget of ``nbytes`` (a size string, or None: the one in force)."""
    value = budget() if nbytes is None else parse_size(nbytes)
    token = _active.set(value)
    try:
        yield value
    finally:
        _active.reset(token)


def _status(field: str) -> int | None:
    """A memory field of this process (``VmRSS``, ``VmHWM``), bytes."""
    return _proc_kb("/proc/self/status", field)


def rss() -> int | None:
    """Resident memory of this process now, bytes (None where the kernel does not say)."""
    return _status("VmRSS")


_peak_seen = 0  # the largest kernel peak read before a reset (resets also clear ru_maxrss)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (it has ``malloc_trim``); else None. Its
    ``mallinfo2`` (glibc 2.33 and later) is declared to return :class:`_MallInfo2`."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def _free_heap(libc: ctypes.CDLL) -> int | None:
    """Bytes of free heap glibc may hand out again without raising the RSS, or None
    (glibc before 2.33)."""
    return int(libc.mallinfo2().fordblks) if hasattr(libc, "mallinfo2") else None


def _release_free_heap(room: float) -> None:
    """Give the C heap's free pages back to the kernel when a measurement that missed
    them could overfill ``room`` (bytes) by more than the chunks' headroom: glibc serves
    even large requests from free heap before it maps new memory, so a call that reuses
    F bytes of it reads F too low, and the next call, up to ``GROWTH`` x larger, may then
    need up to ``GROWTH`` F more than estimated. Below that, returning the pages would
    only cost page faults."""
    libc = _libc()
    if libc is None:
        return
    free = _free_heap(libc)
    if free is None or GROWTH * free > (1 - HEADROOM) * room:
        libc.malloc_trim(0)


def _reset_peak(room: float = 0.0) -> int | None:
    """Reset the kernel's peak to the current RSS, first returning free heap that could
    make a measurement overfill ``room`` bytes (:func:`_release_free_heap`; 0: any free
    heap); the new peak, or None if not possible."""
    global _peak_seen
    _peak_seen = max(_peak_seen, _status("VmHWM") or 0)
    _release_free_heap(room)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status("VmHWM")


def peak() -> int | None:
    """The peak RSS of this process so far, bytes. Use this, not ``ru_maxrss``: the
    resets of :func:`chunks` clear the kernel's own maximum."""
    now = _status("VmHWM")
    return None if now is None else max(now, _peak_seen)


def require(nbytes: float, what: str, hint: str = "") -> None:
    """Refuse up front a request of ``nbytes`` more than the budget leaves free."""
    if nbytes <= 0:
        return
    free = budget() - (rss() or 0)
    if nbytes > free:
        raise MemoryBudgetError(
            f"{what} would need about {gib(nbytes)}, but only {gib(max(free, 0))} of the "
            f"memory budget ({gib(budget())}; --max-memory) is left"
            f"{'; ' + hint if hint else ''}")


def measure(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """``fn()`` and the growth of the peak RSS it caused, bytes (None where the kernel
    does not say): the measured trial behind a request's estimate."""
    base = _reset_peak()
    value = fn()
    peak = _status("VmHWM")
    return value, None if base is None or peak is None else max(peak - base, 0)


def chunks(total: int, cap: int, what: str = "copies", first: int = 1) -> Iterator[slice]:
    """Consecutive slices of ``range(total)`` sized to keep the peak RSS under the budget.

    The work for each slice must be done before the next is drawn (the peak is read
    then). The first slice has ``first`` units (e.g. a batch size the model is known to
    take); each later one as many as the measured cost
    per unit leaves room for, at most ``GROWTH`` x the last and at most ``cap``.
    ``what`` names the units in the error when a single one does not fit.
    """
    cap = int(cap)
    if cap < 1:
        raise SymplugError(f"chunk size must be >= 1, got {cap}")
    limit_bytes = budget()
    base = _reset_peak(room=limit_bytes - (rss() or 0))
    if base is None:  # no peak from the kernel: the caller's cap
        for start in range(0, total, cap):
            yield slice(start, min(start + cap, total))
        return
    if base > limit_bytes:
        raise MemoryBudgetError(f"the process already holds {gib(base)}, more than the memory "
                                f"budget {gib(limit_bytes)} (--max-memory)")
    start, size = 0, max(1, min(int(first), cap))
    while start < total:
        size = min(size, total - start)
        # a call at the cap cannot let the next one grow: its freed heap may stay
        _reset_peak(room=limit_bytes - base if size < cap else math.inf)
        yield slice(start, start + size)
        peak = _status("VmHWM") or base
        per_unit = max(peak - base, 1) / size  # includes fixed costs: errs on the safe side
        if peak > limit_bytes and size <= max(1, int(first)):
            raise MemoryBudgetError(
                f"the smallest call ({size} of the {what} of this sample) took "
                f"{gib(peak - base)} (measured; the process peaked at {gib(peak)}), more than "
                f"the memory budget {gib(limit_bytes)} allows; raise --max-memory or use a "
                "smaller input")
        start += size
        fit = int(HEADROOM * (limit_bytes - base) / per_unit)
        size = max(1, min(cap, fit, size * GROWTH))

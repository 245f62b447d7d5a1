"""Data-parallel execution: partitions of a data set mapped here or on a dask cluster.

A data set is a list of samples, or :class:`Partitions`: a list whose items are each
a list of samples or a ``dask.delayed`` object that produces one (e.g. a partition of
``uproot.dask`` read on the worker that evaluates it). Work on a partition runs where
its samples are and leaves them there; only what a task returns on purpose (metric
records, summary parts) travels to the client. Without a client everything runs in
this process, partition after partition, through the same functions.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from .errors import SymplugError


NO_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class Partitions(list):
    """A data set in partitions: each item a list of samples or a dask Delayed
    producing one. Sample indices count through the partitions in order."""


def partition(samples: Sequence[Any], parts: int | None = None, *,
              size: int | None = None) -> Partitions:
    """``samples`` in contiguous partitions: ``parts`` of (nearly) equal size, or of
    ``size`` samples each (the last one shorter)."""
    samples = list(samples)
    if (parts is None) == (size is None):
        raise SymplugError("give either a number of partitions or a partition size")
    if size is None:
        size = max(1, math.ceil(len(samples) / max(1, min(int(parts), len(samples)))))
    return Partitions(samples[i:i + int(size)] for i in range(0, len(samples), int(size)))


def _is_dask(obj: Any) -> bool:
    return hasattr(obj, "__dask_graph__")


def _threads() -> None:
    """On a dask worker, torch uses the worker's threads (not every core of the node)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    import torch

    torch.set_num_threads(max(1, int(worker.state.nthreads)))


def _on_worker(fn: Callable, *args: Any) -> Any:
    _threads()
    return fn(*args)


class LocalExecutor:
    """Runs every task at once in this process; handles are the values themselves."""

    workers = 1

    def worker_budget(self, budget: int | None) -> int | None:
        """``budget`` as it is: this process is the only worker."""
        return budget

    def load(self, part: Any) -> Any:
        return part.compute(scheduler="sync") if _is_dask(part) else list(part)

    def share(self, obj: Any) -> Any:
        return obj

    def submit(self, fn: Callable, *args: Any) -> Any:
        return fn(*args)

    def gather(self, handles: list, desc: str = "", progress: bool = False) -> list:
        return list(handles)


class DaskExecutor:
    """Tasks on a ``dask.distributed`` cluster: handles are futures, kept on the
    workers until gathered; shared objects (model, domain) are sent once to each."""

    def __init__(self, client: Any):
        self.client = client
        self.workers = max(1, len(client.scheduler_info().get("workers", {})))

    def worker_budget(self, budget: int | None) -> int | None:
        """Bytes each worker may use: ``budget`` split evenly, or, with None, the
        default fraction of the smallest worker's memory limit (its own default
        where the cluster sets none)."""
        if budget is not None:
            return max(1, int(budget) // self.workers)
        from .memory import DEFAULT_FRACTION

        limits = [w.get("memory_limit") for w in
                  self.client.scheduler_info().get("workers", {}).values()]
        limits = [int(x) for x in limits if x]
        return int(DEFAULT_FRACTION * min(limits)) if limits else None

    def load(self, part: Any) -> Any:
        if _is_dask(part):
            return self.client.compute(part)
        return self.client.scatter(list(part))

    def share(self, obj: Any) -> Any:
        return self.client.scatter(obj, broadcast=True, hash=False)

    def submit(self, fn: Callable, *args: Any) -> Any:
        return self.client.submit(_on_worker, fn, *args, pure=False)

    def gather(self, handles: list, desc: str = "", progress: bool = False) -> list:
        from distributed import as_completed

        with tqdm(total=len(handles), desc=desc, unit="partition", disable=not progress,
                  file=sys.stderr, leave=False) as bar:
            for _ in as_completed(handles):
                bar.update(1)
        try:
            return self.client.gather(handles)
        except SymplugError:
            raise
        except Exception as exc:  # e.g. a worker reading a torn file: one line, no traceback
            raise SymplugError(f"a task on the dask cluster failed ({desc or 'tasks'}): "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc


def executor(client: Any = None) -> LocalExecutor | DaskExecutor:
    """The executor of ``client`` (a ``distributed.Client``), or the local one."""
    if client is None:
        return LocalExecutor()
    if not hasattr(client, "submit") or not hasattr(client, "scheduler_info"):
        raise SymplugError(f"client must be a dask.distributed Client, got {type(client).__name__}")
    return DaskExecutor(client)


@contextlib.contextmanager
def closing_quietly(client: Any) -> Iterator[Any]:
    """Close ``client`` (a ``distributed.Client``, or None) at the end of the block; a
    cluster that is slow to shut down (a busy machine) costs a warning line, never the
    result computed in the block."""
    try:
        yield client
    finally:
        if client is not None:
            try:
                client.close(timeout=60)
            except Exception as exc:  # the workers are gone with this process anyway
                print(f"symplug: warning: the dask cluster did not close cleanly "
                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                      file=sys.stderr)


def connect(scheduler: str | None = None, workers: int | None = None,
            threads_per_worker: int = 1) -> Any:
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (e.g.
    ``tcp://10.0.0.5:8786``), or to a new local cluster of ``workers`` processes."""
    if (scheduler is None) == (workers is None):
        raise SymplugError("give either a scheduler address or a number of workers")
    try:
        from distributed import Client
    except ImportError as exc:
        raise SymplugError("data-parallel runs need dask.distributed: "
                           "pip install 'symplug[distributed]'") from exc
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="30s")
        except OSError as exc:
            raise SymplugError(f"cannot reach the dask scheduler at {scheduler!r}: {exc}") from exc
    if int(workers) < 1:
        raise SymplugError(f"--workers must be >= 1, got {workers}")
    import dask

    # The nanny's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc return memory after
    # every small free: torch models with many small tensors then run 2x slower
    # (docs/distributed.md). A client that starts its own cluster closes it when it closes.
    with dask.config.set({NO_TRIM: None}):
        return Client(n_workers=int(workers), threads_per_worker=threads_per_worker,
                      processes=True, dashboard_address=":0")  # any free port

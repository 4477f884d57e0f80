"""Where a sweep's runs execute: serially, on local worker processes, on a Dask cluster or on
any ``concurrent.futures``-style executor.

Local worker processes never outlive the sweep that started them: each exits as soon as its
parent process is gone, whether the parent returned, raised, or was killed (``kill -9``
included), through the kernel's parent-death signal on Linux and a watchdog thread elsewhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "ExecutorError",
    "SerialExecutor",
    "close_executor",
    "default_start_method",
    "exit_with_parent",
    "make_executor",
    "pool_is_broken",
]

#: Seconds between a worker's checks that its parent is alive.
PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


class ExecutorError(ValueError):
    """The `executor` argument (e.g. a ``--scheduler`` address) names no executor this module knows."""


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when the process `parent_pid` that started it is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="g2gsim-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


class SerialExecutor(cf.Executor):
    """Runs each task at submit time in this process (same code path as the pools).

    An exception is delivered through the future; KeyboardInterrupt and SystemExit propagate
    at once (Ctrl-C stops the sweep in the run it interrupts).
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _is_dask_client(executor: Any) -> bool:
    return type(executor).__module__.startswith("distributed") and hasattr(executor, "get_executor")


def default_start_method() -> str:
    """How local worker processes start: ``G2GSIM_START_METHOD`` if set, else "fork" on Linux.

    Forked workers inherit this process's imports and loaded data (a fresh interpreter
    spends about 2 s importing and 0.4 s on its first run's data), which matters for short
    runs; set ``G2GSIM_START_METHOD=spawn`` (or ``forkserver``) if the calling program holds
    threads or locks that must not be forked.
    """
    import multiprocessing
    import sys

    chosen = os.environ.get("G2GSIM_START_METHOD")
    if chosen:
        return chosen
    return "fork" if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def make_executor(executor: Any = None, workers: int | None = None) -> tuple[cf.Executor, bool, int]:
    """(executor, owned, parallelism) for run_sweep's `executor` argument.

    None: serial when `workers` is None or 1, else local processes; ``"processes"``: a process
    pool of `workers` (default: CPU count); ``"serial"``; a ``dask.distributed.Client`` (its
    concurrent.futures view); a scheduler address string ``"tcp://host:port"``; or any object
    with ``submit`` returning concurrent futures (e.g. Ray's or loky's executors). Another
    string raises :class:`ExecutorError`; an unreachable scheduler, OSError.
    """
    if executor is None:
        executor = "serial" if workers in (None, 1) else "processes"
    if isinstance(executor, str):
        if executor == "serial":
            return SerialExecutor(), True, 1
        if executor == "processes":
            import multiprocessing

            n = workers or os.cpu_count() or 1
            context = multiprocessing.get_context(default_start_method())
            pool = cf.ProcessPoolExecutor(
                max_workers=n, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
            )
            return pool, True, n
        if "://" in executor or ":" in executor:
            from distributed import Client

            client = Client(executor)
            view = client.get_executor(pure=False)
            view._g2gsim_client = client
            return view, True, max(1, sum(client.nthreads().values()))
        raise ExecutorError(
            f"unknown executor {executor!r}: use 'serial', 'processes', a scheduler address (tcp://host:port), "
            "a Client or an Executor"
        )
    if _is_dask_client(executor):
        return executor.get_executor(pure=False), False, max(1, sum(executor.nthreads().values()))
    if not hasattr(executor, "submit"):
        raise TypeError(f"executor {executor!r} has no submit(); pass a concurrent.futures.Executor or a dask Client")
    n = workers or getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    return executor, False, int(n)


def close_executor(executor: cf.Executor) -> None:
    """Shut an executor down (queued tasks cancelled), and its Dask client if g2gsim opened one."""
    client = getattr(executor, "_g2gsim_client", None)
    try:
        executor.shutdown(wait=True, cancel_futures=True)  # an interrupted sweep drops queued runs
    except TypeError:  # executors without cancel_futures (dask's)
        executor.shutdown(wait=True)
    if client is not None:
        client.close()


def pool_is_broken(pool: Any) -> bool:
    """Whether a process pool lost a worker (it accepts no more tasks)."""
    return bool(getattr(pool, "_broken", False))

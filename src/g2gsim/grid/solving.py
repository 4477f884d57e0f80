"""How an OpenDSS grid solves: when a step may keep the last voltages, solver settings, retries.

- :class:`SolveGate` decides, with ``[grid] solve = { on_change_kw = ... }``, whether a grid
  step needs a power flow: only when some attached load's per-phase kW moved by more than
  the set amount since the last solve, or a command is pending. Otherwise the step keeps
  the loads OpenDSS last solved and the voltages it gave.
- :func:`solver_settings` sets the power-flow tolerance and iteration limit for a block of
  solves and puts the run's back afterwards (the sensitivity estimate solves tighter).
- :class:`PowerFlows` runs, times and counts a grid's power flows; one that does not
  converge (e.g. right after a tap change at a tight tolerance) runs once more from where it
  stopped with up to :data:`RETRY_MAX_ITERATIONS` iterations (:func:`retry_not_converged`);
  only a solve that still fails is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError
from g2gsim.grid.loads import LoadBatch

__all__ = [
    "RETRY_MAX_ITERATIONS",
    "PowerFlows",
    "SolveGate",
    "retry_not_converged",
    "solver_settings",
]

#: Iteration limit of the one retry of a power flow that did not converge.
RETRY_MAX_ITERATIONS = 500


class SolveGate:
    """Solve-on-change: whether a grid step needs a power flow (see the module text)."""

    __slots__ = ("_kvar", "_kw", "skipped", "threshold_kw")

    def __init__(self, threshold_kw: float) -> None:
        self.threshold_kw = float(threshold_kw)
        self._kw: np.ndarray | None = None  # the loads of the last solve, per phase
        self._kvar: np.ndarray | None = None
        #: Grid steps that kept the last voltages instead of solving.
        self.skipped = 0

    def must_solve(self, loads: LoadBatch, *, pending: bool) -> bool:
        """True when the loads now in `loads` moved past the threshold, or something is pending."""
        if pending or self._kw is None:
            return True
        return bool(self._moved(loads.kw))

    def _moved(self, kw: np.ndarray) -> Any:
        """Whether loads `kw` (one kW per load, or one row per step) moved past the threshold
        from the last solve's: the largest change of any load, per row."""
        return np.max(np.abs(kw - self._kw), axis=-1, initial=0.0) > self.threshold_kw

    def solved(self, loads: LoadBatch) -> None:
        """Remember the loads of the solve just made."""
        self._kw = loads.kw.copy()
        self._kvar = loads.kvar.copy()

    def steps_held(self, kw: np.ndarray) -> int:
        """How many steps, from the first, would keep the last solve with these loads (one row
        of every load's kW per step; no command pending): as :meth:`must_solve` step by step."""
        if self._kw is None:
            return 0
        moved = self._moved(kw)
        return int(np.argmax(moved)) if moved.any() else len(kw)

    def hold_stretch(self, loads: LoadBatch, count: int) -> None:
        """:meth:`hold` for `count` steps at once."""
        self.hold(loads)
        self.skipped += count - 1

    def hold(self, loads: LoadBatch) -> None:
        """Put the loads of the last solve back (in place: OpenDSS reads these buffers)."""
        assert self._kw is not None and self._kvar is not None
        loads.kw[:] = self._kw
        loads.kvar[:] = self._kvar
        self.skipped += 1


@contextmanager
def solver_settings(engine: DSSEngine, tolerance: float, max_iterations: int) -> Iterator[None]:
    """Solve at `tolerance` and `max_iterations` inside the block; the previous settings after."""
    saved = engine.solver_settings()
    engine.set_solver_settings(tolerance, max_iterations)
    try:
        yield
    finally:
        engine.set_solver_settings(*saved)


def retry_not_converged(
    engine: DSSEngine, solve: Callable[[], None], on_retry: Callable[[dict[str, Any]], None]
) -> None:
    """After a first `solve` that did not converge: report (`on_retry` receives the iterations
    used and the limits), then solve once more with more iterations; a second failure raises."""
    tolerance, max_iterations = engine.solver_settings()
    retry = max(RETRY_MAX_ITERATIONS, max_iterations)
    on_retry(
        {
            "iterations": engine.iterations(),
            "max_iterations": max_iterations,
            "retry_max_iterations": retry,
            "tolerance": tolerance,
        }
    )
    with solver_settings(engine, tolerance, retry):
        solve()


class PowerFlows:
    """A grid's power flows of one run: each timed and counted; one that does not converge is
    retried once with more iterations (`on_retry(time_s, facts)` first) before it raises.

    :meth:`run` runs at every grid step, so its usual path (SolveNoControl, converged) makes
    no closures; a failure that is not a non-convergence raises at once."""

    __slots__ = ("_on_retry", "retries", "seconds", "solves")

    def __init__(self, on_retry: Callable[[float, dict[str, Any]], None]) -> None:
        self._on_retry = on_retry
        self.solves = 0
        self.retries = 0
        self.seconds = 0.0

    def run(self, engine: DSSEngine, time_s: float, solve: Callable[[], None] | None = None) -> None:
        """One power flow at `time_s`: `solve`, or None for ``engine.solve(time_s)`` (SolveNoControl)."""
        start = time.perf_counter()
        try:
            if solve is None:
                engine.solve(time_s)
            else:
                solve()
        except GridError:
            if engine.converged():
                raise
            retry_not_converged(engine, solve or (lambda: engine.solve(time_s)), partial(self._retrying, time_s))
        self.seconds += time.perf_counter() - start
        self.solves += 1

    def _retrying(self, time_s: float, facts: dict[str, Any]) -> None:
        self.retries += 1
        self._on_retry(time_s, facts)

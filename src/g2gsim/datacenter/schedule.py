"""Scheduled changes of a trace-driven site, as kernel events at their exact steps.

Nothing here holds a row per step of the horizon. A replica schedule is the list of steps
where its rounded count changes (:meth:`ReplicaSchedule.changes`); a training window is two
edges; a batch ramp-up is the steps where its batch moves. The site runs one kernel process
per schedule (:func:`follow`) that waits for each change in the DELIVER phase of that step's
tick, before the site's own step, and changes the site's state then. The same change steps
bound the site's blocks of precomputed steps.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from g2gsim.datacenter.config import DatacenterConfig, TrainingSchedule
from g2gsim.kernel.phases import Phase
from g2gsim.kernel.time import StepClock

if TYPE_CHECKING:
    from simpy.events import Event

    from g2gsim.kernel.context import RunContext

__all__ = ["BatchRamp", "ReplicaTimeline", "StepClock", "TrainingWindows", "follow"]

T = TypeVar("T")


def follow(
    ctx: RunContext, period_ticks: int, changes: Iterable[tuple[int, T]], apply: Callable[[T], bool]
) -> Generator[Event, Any, None]:
    """A kernel process: apply(value) at each (step, value), in the DELIVER phase of its tick.

    Stops when the changes run out or `apply` returns False (the schedule was replaced).
    """
    for step, value in changes:
        yield ctx.at_tick(step * period_ticks, Phase.DELIVER)
        if not apply(value):
            return


# -- replicas --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ReplicaTimeline:
    """The scheduled replicas of a site as change events (one column per model, sorted labels).

    Row i of `replicas` holds from step `steps[i]` until the next row; row 0 starts at step 0.
    `changes[m]` lists model m's own (first step, count) changes.
    """

    steps: np.ndarray
    replicas: np.ndarray
    changes: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def build(cls, config: DatacenterConfig, period: Fraction, n_steps: int) -> ReplicaTimeline:
        """The timeline of every deployment's schedule at steps k * period, k < n_steps."""
        changes = tuple(d.replicas.changes(period, n_steps) for d in config.deployments)
        steps = np.array(sorted({step for model in changes for step, _ in model}), dtype=np.int64)
        replicas = np.empty((steps.size, len(changes)), dtype=np.int64)
        for m, model in enumerate(changes):
            own = np.array([step for step, _ in model], dtype=np.int64)
            values = np.array([value for _, value in model], dtype=np.int64)
            replicas[:, m] = values[np.searchsorted(own, steps, side="right") - 1]
        steps.setflags(write=False)
        replicas.setflags(write=False)
        return cls(steps, replicas, changes)

    def at(self, step: int) -> np.ndarray:
        """Scheduled replicas per model at a step (read-only)."""
        return self.replicas[int(np.searchsorted(self.steps, step, side="right")) - 1]

    def next_change(self, step: int) -> int | None:
        """The first step after `step` where a scheduled count changes (None: no more)."""
        i = int(np.searchsorted(self.steps, step, side="right"))
        return int(self.steps[i]) if i < self.steps.size else None

    def from_step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(first step, replicas) of the row in force at `step` (starting there) and every later row."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        steps = self.steps[i:].copy()
        steps[0] = step
        return steps, self.replicas[i:]


# -- training --------------------------------------------------------------------------------------
class TrainingWindows:
    """A site's training runs, switched on and off at their first and last steps.

    A run is active at the steps whose time lies in [t_start_s, t_end_s] (the same float
    comparisons as :meth:`TrainingSchedule.power`). Between edges the total power is the
    closed form of the active runs, evaluated for the steps of a block.
    """

    def __init__(self, schedule: TrainingSchedule, clock: StepClock, n_steps: int) -> None:
        self.entries = schedule.entries
        self.active = [False] * len(self.entries)
        self._power = [(entry.t_start_s, entry.run.power_function()) for entry in self.entries]
        edges: list[tuple[int, int, bool]] = []
        for i, entry in enumerate(self.entries):
            on = clock.first_step(entry.t_start_s)
            off = clock.first_step(entry.t_end_s, after=True)
            if on >= min(off, n_steps):
                continue
            if on == 0:
                self.active[i] = True
            else:
                edges.append((on, i, True))
            if off < n_steps:
                edges.append((off, i, False))
        self.edges = sorted(edges)
        self._edge_steps = [step for step, _, _ in self.edges]

    def switch(self, edge: tuple[int, bool]) -> bool:
        """Turn one run on or off: (entry index, on). Always keeps following."""
        index, on = edge
        self.active[index] = on
        return True

    def changes(self) -> Iterator[tuple[int, tuple[int, bool]]]:
        """(step, (entry index, on)) of every edge, in order (what :func:`follow` applies)."""
        return ((step, (index, on)) for step, index, on in self.edges)

    def next_edge(self, step: int) -> int | None:
        """The first edge step after `step` (None: no more)."""
        i = bisect.bisect_right(self._edge_steps, step)
        return self._edge_steps[i] if i < len(self._edge_steps) else None

    def power(self, times: np.ndarray) -> np.ndarray:
        """Total power of the active runs at `times`, W (zero when none is active)."""
        total = np.zeros(times.shape)
        for (start, power), on in zip(self._power, self.active):
            if on:
                total += power(times - start)
        return total


# -- batch ramp-ups --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchRamp:
    """A batch rising from `start` at t0 toward `target` at `rate` requests/s (exact times)."""

    start: int
    target: int
    rate: Fraction
    t0: Fraction

    def batch_at(self, t: Fraction) -> int:
        """Effective batch at time t >= t0."""
        return min(self.target, self.start + math.floor(self.rate * (t - self.t0)))

    def changes(self, first_step: int, period: Fraction) -> Iterator[tuple[int, int]]:
        """(step, batch) at every step after `first_step` (the step at t0) where the batch moves."""
        per_step = self.rate * period
        batch = self.start
        while batch < self.target:
            j = math.ceil((batch + 1 - self.start) / per_step)
            batch = min(self.target, self.start + math.floor(per_step * j))
            yield first_step + j, batch

"""Assemble components into a run, run it on a fresh SimPy environment, collect the results."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import simpy

from g2gsim.kernel.component import Component
from g2gsim.kernel.context import RunContext, RunShared
from g2gsim.kernel.phases import Phase, priority
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.streaming import ChunkWriter
from g2gsim.kernel.time import Clock, TimeLike, as_period, as_seconds

ProgressCallback = Callable[[float], None]


class AssemblyError(ValueError):
    """The components cannot run together (duplicate names, missing or incompatible peers)."""


class ComponentError(RuntimeError):
    """A component failed during a run; names the component, the simulated time and the cause."""

    def __init__(self, component: Component, time_s: float, cause: BaseException) -> None:
        self.component = component.name
        self.time_s = time_s
        self.cause = cause
        self.message = (
            f"{type(component).__name__} {component.name!r} failed at t = {time_s:g} s: "
            f"{type(cause).__name__}: {cause}"
        )
        # SimPy re-raises a failed process as ``type(exc)(*exc.args)``: keep the constructor's
        # arguments in `args` so that copy is a faithful ComponentError.
        super().__init__(component, time_s, cause)

    def __str__(self) -> str:
        return self.message


def _guarded(component: Component):
    """Run a component's process, turning any failure into a ComponentError."""
    try:
        yield from component.run()
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(component, component.ctx.now_s, exc) from exc


class Simulation:
    """A set of components, a horizon and a seed; :meth:`run` can be called many times.

    Declared order matters only within a phase: datacenters step before the grid, the grid
    before controllers, whatever the list order; two controllers due at one tick run in the
    order they were declared.
    """

    def __init__(
        self,
        components: Sequence[Component],
        horizon_s: TimeLike,
        *,
        seed: int = 0,
        extra_times: Iterable[TimeLike] = (),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.components = list(components)
        self.horizon = as_period(horizon_s, name="horizon_s")
        self.seed = int(seed)
        self.extra_times = [as_seconds(t, name="extra time") for t in extra_times]
        self.metadata = dict(metadata or {})
        self._check_assembly()
        self.clock = Clock.for_times(self._all_times())

    def _all_times(self) -> list[Fraction]:
        times = [t for c in self.components for t in c.times()] + self.extra_times
        positive = [t for t in times if t > 0]
        return positive or [self.horizon]

    def _check_assembly(self) -> None:
        if not self.components:
            raise AssemblyError("a simulation needs at least one component")
        by_name: dict[str, Component] = {}
        for component in self.components:
            if component.name in by_name:
                raise AssemblyError(
                    f"two components are named {component.name!r} "
                    f"({type(by_name[component.name]).__name__} and {type(component).__name__})"
                )
            by_name[component.name] = component
        for component in self.components:
            for name, required in component.dependencies().items():
                peer = by_name.get(name)
                if peer is None:
                    raise AssemblyError(
                        f"{type(component).__name__} {component.name!r} needs component {name!r} "
                        f"({required.__name__}), which is not in the run; components: {sorted(by_name)}"
                    )
                if not isinstance(peer, required):
                    raise AssemblyError(
                        f"{type(component).__name__} {component.name!r} is not compatible with "
                        f"{type(peer).__name__} {name!r}: it needs a {required.__name__}"
                    )

    def component(self, name: str) -> Component:
        """A component by name."""
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(f"no component {name!r}; components: {[c.name for c in self.components]}")

    def run(
        self,
        *,
        progress: ProgressCallback | None = None,
        stream_to: str | Path | None = None,
        chunk_s: TimeLike = 300,
    ) -> RunResult:
        """Run from a fresh environment and freshly reset components; return the results.

        With `stream_to`, tables are also appended to Parquet chunks in that folder every
        `chunk_s` simulated seconds; if a component fails, what was recorded up to the failure
        is flushed before the :class:`ComponentError` propagates.
        """
        wall_start = time.perf_counter()
        env = simpy.Environment()
        shared = RunShared(
            env, self.clock, self.horizon, self.seed, {c.name: c for c in self.components}
        )
        orders: dict[Phase, int] = {}
        contexts = []
        for component in self.components:
            order = orders.get(component.role, 0)
            orders[component.role] = order + 1
            context = RunContext(shared, component, order)
            contexts.append(context)
            component.reset(context)
        for component in self.components:
            component.start()
        for component in self.components:
            env.process(_guarded(component))
        if progress is not None:
            env.process(_progress_process(env, shared, progress))
        writer = None
        if stream_to is not None:
            writer = ChunkWriter(Path(stream_to), self.components)
            chunk_ticks = max(1, math.ceil(as_period(chunk_s, name="chunk_s") / self.clock.tick))
            env.process(_chunk_process(env, shared, writer, chunk_ticks))
        try:
            env.run(until=shared.horizon_ticks)
        except ComponentError:
            if writer is not None:
                writer.flush()
            raise
        for component in self.components:
            component.stop()
        if writer is not None:
            writer.flush()
        return self._collect(shared, time.perf_counter() - wall_start)

    def _collect(self, shared: RunShared, wall_s: float) -> RunResult:
        tables = {}
        summary: dict[str, Any] = {}
        for component in self.components:
            for table, frame in component.tables().items():
                tables[f"{component.name}/{table}"] = frame
            facts = component.summary()
            if facts:
                summary[component.name] = facts
        meta = {
            **self.metadata,
            "seed": self.seed,
            "horizon_s": float(self.horizon),
            "tick_s": str(self.clock.tick),
            "wall_s": wall_s,
            "components": {c.name: type(c).__name__ for c in self.components},
            "summary": summary,
        }
        return RunResult(
            tables=tables,
            events=shared.events.to_frame(),
            commands=shared.commands.to_frame(),
            meta=meta,
        )


def _chunk_process(env: simpy.Environment, shared: RunShared, writer: ChunkWriter, every: int):
    """Flush new rows to Parquet chunks every `every` ticks, in the record phase."""
    record_priority = priority(Phase.RECORD)
    for tick in range(every, shared.horizon_ticks, every):
        event = simpy.Event(env)
        event._ok = True
        event._value = None
        env.schedule(event, record_priority, tick - env.now)
        yield event
        writer.flush()


def _progress_process(env: simpy.Environment, shared: RunShared, report: ProgressCallback):
    """Report the simulated fraction done at most 200 times per run, in the record phase."""
    total = shared.horizon_ticks
    stride = max(1, total // 200)
    record_priority = priority(Phase.RECORD)
    for tick in range(0, total, stride):
        event = simpy.Event(env)
        event._ok = True
        event._value = None
        env.schedule(event, record_priority, tick - env.now)
        yield event
        report(tick / total)
    report(1.0)

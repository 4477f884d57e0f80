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
from g2gsim.kernel.events import PhasedTimeout
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
            f"{type(component).__name__} {component.name!r} failed at t = {time_s:g} s: {type(cause).__name__}: {cause}"
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
        realtime_factor: float | None = None,
    ) -> None:
        self.components = list(components)
        if realtime_factor is not None and not (math.isfinite(realtime_factor) and realtime_factor > 0):
            raise ValueError(
                f"realtime_factor must be a positive number of wall seconds per simulated second, got {realtime_factor!r}"
            )
        #: None: run as fast as possible (the default); f > 0: on SimPy's real-time kernel, one
        #: simulated second taking f wall-clock seconds (1.0 for hardware in the loop).
        self.realtime_factor = None if realtime_factor is None else float(realtime_factor)
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
        timing: bool = False,
        realtime: float | None = None,
    ) -> RunResult:
        """Run from a fresh environment and freshly reset components; return the results.

        With `stream_to`, tables are also appended to Parquet chunks in that folder every
        `chunk_s` simulated seconds; if a component fails, what was recorded up to the failure
        is flushed before the :class:`ComponentError` propagates.

        With `timing` (for benchmarks; off by default and then free), each component's
        :meth:`~Component.step` and :meth:`~Component.deliver` are timed with
        ``time.perf_counter``: ``result.meta["timing_s"]`` holds each component's own time in
        seconds by name (exclusive: a command delivered to the grid inside a controller's step
        counts for the grid, not the controller), and ``result.meta["timing_phases_s"]`` the
        time spent setting up (reset, start), simulating and collecting the tables.

        With `realtime` (a factor, wall seconds per simulated second; default: the
        simulation's `realtime_factor`), the run uses ``simpy.rt.RealtimeEnvironment``
        (non-strict) instead: see :meth:`_run_realtime`.
        """
        factor = self.realtime_factor if realtime is None else realtime
        if factor is not None:
            return self._run_realtime(float(factor), progress, stream_to, chunk_s)
        if not timing:
            return self._run(progress, stream_to, chunk_s, None)
        timer = _StepTimer(self.components)
        try:
            return self._run(progress, stream_to, chunk_s, timer)
        finally:
            timer.restore()

    def _run_realtime(
        self,
        factor: float,
        progress: ProgressCallback | None,
        stream_to: str | Path | None,
        chunk_s: TimeLike,
    ) -> RunResult:
        """A run on the wall clock (hardware in the loop).

        The environment is a non-strict ``simpy.rt.RealtimeEnvironment`` whose time unit is one
        tick (``factor`` x tick seconds of wall time). It is re-synchronised with the wall clock
        after every component has started (start-up of live components may take seconds). A
        monitor at every tick measures how far the kernel is behind the wall clock: whenever it
        falls more than one tick behind, a ``realtime_lag`` event is recorded (once per episode,
        with ``realtime_caught_up`` when it recovers), and ``result.meta["realtime"]`` counts
        episodes, late ticks and the largest lag. Whatever happens (error, Ctrl-C), every
        component's :meth:`~Component.stop` is called so live components release threads and
        connections.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"realtime factor must be positive, got {factor!r}")
        tick_s = float(self.clock.tick)
        lag = _LagMonitor(tick_s * factor)

        def make_env() -> simpy.Environment:
            from simpy.rt import RealtimeEnvironment

            return RealtimeEnvironment(initial_time=0, factor=tick_s * factor, strict=False)

        result = self._run(progress, stream_to, chunk_s, None, make_env=make_env, lag=lag)
        result.meta["realtime"] = lag.summary(factor)
        return result

    def _run(
        self,
        progress: ProgressCallback | None,
        stream_to: str | Path | None,
        chunk_s: TimeLike,
        timer: _StepTimer | None,
        *,
        make_env: Callable[[], simpy.Environment] | None = None,
        lag: _LagMonitor | None = None,
    ) -> RunResult:
        """One run. Whatever ends it (an error, Ctrl-C), streamed chunks are flushed to disk and
        every component's stop() is called, so live components release threads and sockets."""
        wall_start = time.perf_counter()
        env = simpy.Environment() if make_env is None else make_env()
        shared = RunShared(env, self.clock, self.horizon, self.seed, {c.name: c for c in self.components})
        stopped = False
        try:
            setup_end, writer = self._start(env, shared, progress, stream_to, chunk_s, lag)
            try:
                env.run(until=shared.horizon_ticks)
            except BaseException:  # an error, or Ctrl-C: keep what was computed on disk
                if writer is not None:
                    writer.flush()
                raise
            for component in self.components:
                component.stop()
            stopped = True
        finally:
            if not stopped:  # release threads and connections of live components whatever happened
                _stop_quietly(self.components)
        if writer is not None:
            writer.flush()
        if timer is None:
            return self._collect(shared, time.perf_counter() - wall_start)
        simulate_end = time.perf_counter()
        result = self._collect(shared, simulate_end - wall_start)
        collect_end = time.perf_counter()
        result.meta["timing_s"] = dict(timer.totals)
        result.meta["timing_phases_s"] = {
            "setup": setup_end - wall_start,
            "simulate": simulate_end - setup_end,
            "collect": collect_end - simulate_end,
        }
        return result

    def _start(
        self,
        env: simpy.Environment,
        shared: RunShared,
        progress: ProgressCallback | None,
        stream_to: str | Path | None,
        chunk_s: TimeLike,
        lag: _LagMonitor | None,
    ) -> tuple[float, ChunkWriter | None]:
        """Reset and start every component, create the processes; (set-up end time, writer)."""
        orders: dict[Phase, int] = {}
        for component in self.components:
            order = orders.get(component.role, 0)
            orders[component.role] = order + 1
            component.reset(RunContext(shared, component, order))
        for component in self.components:
            component.start()
        for component in self.components:
            env.process(_guarded(component))
        if lag is not None:
            env.sync()  # type: ignore[attr-defined]  # start-up time is not lag
            env.process(lag.process(env, shared))
        setup_end = time.perf_counter()
        if progress is not None:
            env.process(_progress_process(env, shared, progress))
        writer = None
        if stream_to is not None:
            writer = ChunkWriter(Path(stream_to), self.components)
            chunk_ticks = max(1, math.ceil(as_period(chunk_s, name="chunk_s") / self.clock.tick))
            env.process(_chunk_process(env, shared, writer, chunk_ticks))
        return setup_end, writer

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


_MISSING = object()


def _stop_quietly(components: Sequence[Component]) -> None:
    """Call every component's stop() while a run is already failing (their errors would
    hide the original one)."""
    for component in components:
        try:
            component.stop()
        except Exception:
            pass


class _LagMonitor:
    """Measures, at every tick of a real-time run, how far the kernel is behind the wall clock."""

    def __init__(self, tick_wall_s: float) -> None:
        self.tick_wall_s = tick_wall_s
        self.episodes = 0
        self.late_ticks = 0
        self.max_lag_s = 0.0
        self.ticks = 0

    def process(self, env: Any, shared: RunShared):
        deliver = priority(Phase.DELIVER)
        lagging = False
        for tick in range(shared.horizon_ticks):
            yield PhasedTimeout(env, tick - env.now, deliver)
            self.ticks += 1
            behind = time.monotonic() - (env.real_start + tick * self.tick_wall_s)
            self.max_lag_s = max(self.max_lag_s, behind)
            if behind > self.tick_wall_s:
                self.late_ticks += 1
                if not lagging:
                    lagging = True
                    self.episodes += 1
                    shared.events.record(
                        tick * float(shared.clock.tick), "kernel", "realtime_lag", {"lag_s": round(behind, 6)}
                    )
            elif lagging:
                lagging = False
                shared.events.record(tick * float(shared.clock.tick), "kernel", "realtime_caught_up", {})

    def summary(self, factor: float) -> dict[str, Any]:
        return {
            "factor": factor,
            "ticks": self.ticks,
            "lag_events": self.episodes,
            "late_ticks": self.late_ticks,
            "max_lag_s": max(self.max_lag_s, 0.0),
        }


class _StepTimer:
    """Opt-in per-component timing: wraps `step` and `deliver` on the instances for one run.

    Time is exclusive: when one timed call runs inside another (a controller's command
    delivered at once to the grid, which re-solves), the inner call's time counts for its own
    component and is taken off the outer one. :meth:`restore` removes the wrappers.
    """

    _METHODS = ("step", "deliver")

    def __init__(self, components: Sequence[Component]) -> None:
        self.totals: dict[str, float] = {c.name: 0.0 for c in components}
        self._stack: list[list[float]] = []  # [start, time of nested timed calls]
        self._saved: list[tuple[Component, str, Any]] = []
        for component in components:
            for method in self._METHODS:
                self._saved.append((component, method, component.__dict__.get(method, _MISSING)))
                setattr(component, method, self._timed(component.name, getattr(component, method)))

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter
        stack = self._stack
        totals = self.totals

        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [clock(), 0.0]
            stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                stack.pop()
                elapsed = clock() - frame[0]
                totals[name] += elapsed - frame[1]
                if stack:
                    stack[-1][1] += elapsed

        return timed

    def restore(self) -> None:
        """Put back each component's own methods."""
        for component, method, saved in reversed(self._saved):
            if saved is _MISSING:
                component.__dict__.pop(method, None)
            else:
                setattr(component, method, saved)
        self._saved = []


def _chunk_process(env: simpy.Environment, shared: RunShared, writer: ChunkWriter, every: int):
    """Flush new rows to Parquet chunks every `every` ticks, in the record phase."""
    record_priority = priority(Phase.RECORD)
    for tick in range(every, shared.horizon_ticks, every):
        yield PhasedTimeout(env, tick - env.now, record_priority)
        writer.flush()


def _progress_process(env: simpy.Environment, shared: RunShared, report: ProgressCallback):
    """Report the simulated fraction done at most 200 times per run, in the record phase."""
    total = shared.horizon_ticks
    stride = max(1, total // 200)
    record_priority = priority(Phase.RECORD)
    for tick in range(0, total, stride):
        yield PhasedTimeout(env, tick - env.now, record_priority)
        report(tick / total)
    report(1.0)

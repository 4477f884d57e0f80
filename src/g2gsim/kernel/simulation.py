"""Assemble components into a run, run it (at once or step by step from outside) on a fresh SimPy
environment, collect the results."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import simpy

from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Component, Controller
from g2gsim.kernel.context import RunContext, RunShared
from g2gsim.kernel.events import PhasedTimeout
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.lockstep import lockstep_groups, lockstep_process
from g2gsim.kernel.log import LoggedCommand
from g2gsim.kernel.mailbox import Mailbox
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


def _raise_component_error(component: Component, exc: Exception) -> NoReturn:
    """End the run for a failure inside `component`: as a ComponentError naming it and the
    simulated time (a ComponentError from a nested component passes unchanged)."""
    if isinstance(exc, ComponentError):
        raise exc
    raise ComponentError(component, component.ctx.now_s, exc) from exc


def _guarded(component: Component):
    """Run a component's process, turning any failure into a ComponentError."""
    try:
        yield from component.run()
    except Exception as exc:
        _raise_component_error(component, exc)


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

    def prepare(self) -> None:
        """Have every component load what runs of this horizon share (:meth:`Component.prepare`,
        e.g. a site's power templates): the data of a first run then loads here instead of
        inside it. Optional: a run loads whatever is missing; repeated calls cost nothing.
        Scenario runs do not call it before their memory check (a horizon too long for memory
        is refused before anything is allocated)."""
        for component in self.components:
            component.prepare(self.horizon)

    def component(self, name: str) -> Component:
        """A component by name."""
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(f"no component {name!r}; components: {[c.name for c in self.components]}")

    def start(
        self,
        *,
        progress: ProgressCallback | None = None,
        stream_to: str | Path | None = None,
        chunk_s: TimeLike = 300,
        timing: bool = False,
        realtime: float | None = None,
        links: Mapping[str, LinkSpec] | None = None,
    ) -> RunHandle:
        """Reset and start every component on a fresh environment; return the run, not yet stepped.

        The handle steps the run (:meth:`RunHandle.step_until`, :meth:`RunHandle.step`), shows
        the newest value of every mailbox (:meth:`RunHandle.observe`), sends commands from
        outside (:meth:`RunHandle.send`) and returns the results once the horizon is reached
        (:meth:`RunHandle.result`). `links` names the external links commands can be sent
        through (default: one instant link named ``"external"``); their delays must be whole
        ticks of this simulation. The other arguments are those of :meth:`run`.
        """
        factor = self.realtime_factor if realtime is None else realtime
        timer = _StepTimer(self.components) if timing and factor is None else None
        try:
            return RunHandle(
                self, progress, stream_to, chunk_s, timer, None if factor is None else float(factor), links
            )
        except BaseException:
            if timer is not None:
                timer.restore()
            raise

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

        The same as ``start(...)``, stepping to the horizon, then ``result()``.

        With `stream_to`, tables are also appended to Parquet chunks in that folder every
        `chunk_s` simulated seconds; if a component fails, what was recorded up to the failure
        is flushed before the :class:`ComponentError` propagates.

        With `timing` (for benchmarks; off by default and then free), each component's
        :meth:`~Component.step`, its stretches (:meth:`~Component.stretch_steps`,
        :meth:`~Component.step_stretch`) and :meth:`~Component.deliver` are timed with
        ``time.perf_counter``: ``result.meta["timing_s"]`` holds each component's own time in
        seconds by name (exclusive: a command delivered to the grid inside a controller's step
        counts for the grid, not the controller), and ``result.meta["timing_phases_s"]`` the
        time spent setting up (reset, start), simulating and collecting the tables.

        With `realtime` (a factor, wall seconds per simulated second; default: the
        simulation's `realtime_factor`), the run uses ``simpy.rt.RealtimeEnvironment``
        (non-strict) instead: see :class:`RunHandle`.
        """
        handle = self.start(progress=progress, stream_to=stream_to, chunk_s=chunk_s, timing=timing, realtime=realtime)
        handle.step_until(self.horizon)
        return handle.result()


class _ExternalSender(Controller):
    """The sending end of an external link: a stand-in the kernel treats like a controller that
    only has a command link (it is never stepped)."""

    def __init__(self, name: str, link: LinkSpec) -> None:
        super().__init__(name, None, command_link=link)

    def control(self, tick: int) -> Iterable[Command]:
        return ()


#: The external link used when :meth:`RunHandle.send` names none.
DEFAULT_LINK = "external"


class RunHandle:
    """One run driven from outside: step it, read its mailboxes, send it commands, collect it.

    Made by :meth:`Simulation.start`. Stepping processes every event before a time, so after
    ``step_until(t)`` the mailboxes hold what was published before t, and a command sent then
    through an instant link takes effect at its target's first step at or after t. Stepping
    to the horizon in any number of pieces gives the results of one :meth:`Simulation.run`.

    A failure inside a step flushes the streamed chunks, stops every component and propagates
    as the :class:`ComponentError` it is; the handle is then closed. :meth:`close` ends a run
    early (components stopped, chunks flushed); the handle is also a context manager that
    closes it.

    On the real-time kernel (a live site, or ``realtime=``) the environment is a non-strict
    ``simpy.rt.RealtimeEnvironment`` whose time unit is one tick (factor x tick seconds of
    wall time), re-synchronised with the wall clock once every component has started. A
    monitor at every tick measures how far the kernel is behind the wall clock: whenever it
    falls more than one tick behind, a ``realtime_lag`` event is recorded (once per episode,
    with ``realtime_caught_up`` when it recovers), and ``result.meta["realtime"]`` counts
    episodes, late ticks and the largest lag. The wall clock keeps running between steps, so
    time the caller spends outside a step shows up as lag.
    """

    def __init__(
        self,
        simulation: Simulation,
        progress: ProgressCallback | None,
        stream_to: str | Path | None,
        chunk_s: TimeLike,
        timer: _StepTimer | None,
        factor: float | None,
        links: Mapping[str, LinkSpec] | None,
    ) -> None:
        self.simulation = simulation
        self._components = simulation.components
        self._timer = timer
        self._factor = factor
        self._lag: _LagMonitor | None = None
        self._result: RunResult | None = None
        self._state = "running"  # then "finished", "closed" or "failed"
        self._wall_start = time.perf_counter()
        self._simulate_end = 0.0
        self.env = self._environment(factor)
        self._shared = RunShared(
            self.env, simulation.clock, simulation.horizon, simulation.seed, {c.name: c for c in self._components}
        )
        self._horizon_ticks = self._shared.horizon_ticks
        self._links = self._checked_links(links)
        self._senders: dict[str, RunContext] = {}
        try:
            self._writer = self._start(progress, stream_to, chunk_s)
        except BaseException:  # release threads and connections of live components whatever happened
            _stop_quietly(self._components)
            raise
        self._setup_end = time.perf_counter()

    def _environment(self, factor: float | None) -> simpy.Environment:
        if factor is None:
            return simpy.Environment()
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"realtime factor must be positive, got {factor!r}")
        from simpy.rt import RealtimeEnvironment

        tick_s = float(self.simulation.clock.tick)
        self._lag = _LagMonitor(tick_s * factor)
        return RealtimeEnvironment(initial_time=0, factor=tick_s * factor, strict=False)

    def _checked_links(self, links: Mapping[str, LinkSpec] | None) -> dict[str, LinkSpec]:
        """The external links by name: whole ticks, and names no component uses."""
        checked = {DEFAULT_LINK: INSTANT} if links is None else dict(links)
        clock = self.simulation.clock
        for name, spec in checked.items():
            if name in self._shared.components:
                raise AssemblyError(f"external link {name!r} has the name of a component; name it differently")
            for what, seconds in (("delay_s", spec.delay_s), ("jitter_s", spec.jitter_s)):
                if (seconds / clock.tick).denominator != 1:
                    raise AssemblyError(
                        f"external link {name!r}: {what} = {seconds} s is not a whole number of ticks of "
                        f"{clock.tick} s; declare it in Simulation(extra_times=[...]) so the tick accounts for it"
                    )
        return checked

    def _start(
        self, progress: ProgressCallback | None, stream_to: str | Path | None, chunk_s: TimeLike
    ) -> ChunkWriter | None:
        """Reset and start every component, create the processes; the chunk writer, if any."""
        env, shared = self.env, self._shared
        orders: dict[Phase, int] = {}
        for component in self._components:
            order = orders.get(component.role, 0)
            orders[component.role] = order + 1
            component.reset(RunContext(shared, component, order))
        for component in self._components:
            component.start()
        for group in lockstep_groups(self._components):
            if len(group) == 1 and not group[0].steps_periodically:
                env.process(_guarded(group[0]))
            else:
                env.process(lockstep_process(group, _raise_component_error))
        if self._lag is not None:
            env.sync()  # type: ignore[attr-defined]  # start-up time is not lag
            env.process(self._lag.process(env, shared))
        if progress is not None:
            env.process(_progress_process(env, shared, progress))
        if stream_to is None:
            return None
        writer = ChunkWriter(Path(stream_to), self._components)
        chunk_ticks = max(1, math.ceil(as_period(chunk_s, name="chunk_s") / shared.clock.tick))
        env.process(_chunk_process(env, shared, writer, chunk_ticks))
        return writer

    # -- where the run is -------------------------------------------------------------------
    @property
    def now(self) -> int:
        """The tick reached: every event before it has been processed."""
        return int(self.env.now)

    @property
    def now_s(self) -> float:
        """The time reached, s."""
        return self._shared.clock.seconds_float(self.now)

    @property
    def done(self) -> bool:
        """Whether the run has reached its horizon."""
        return self.env.now >= self._horizon_ticks

    @property
    def closed(self) -> bool:
        """Whether the run is over: collected, closed early, or failed."""
        return self._state != "running"

    # -- stepping -----------------------------------------------------------------------------
    def step_until(self, t: TimeLike) -> None:
        """Process every event before time `t` (s; at most the horizon); nothing if already there."""
        ticks = math.ceil(as_seconds(t, name="t") / self._shared.clock.tick)
        self._advance(min(ticks, self._horizon_ticks))

    def step(self, n_ticks: int = 1) -> None:
        """Process the next `n_ticks` ticks (at most up to the horizon)."""
        if isinstance(n_ticks, bool) or not isinstance(n_ticks, int) or n_ticks < 0:
            raise ValueError(f"n_ticks must be a whole number >= 0, got {n_ticks!r}")
        self._advance(min(self.now + n_ticks, self._horizon_ticks))

    def _advance(self, until: int) -> None:
        self._check_running("step")
        if until <= self.env.now:
            return
        try:
            self.env.run(until=until)
        except BaseException:  # an error, or Ctrl-C: keep what was computed on disk
            self._fail()
            raise

    def _check_running(self, action: str) -> None:
        if self._state != "running":
            how = {"finished": "has finished", "closed": "was closed", "failed": "failed"}[self._state]
            raise RuntimeError(f"cannot {action}: the run {how} (at t = {self.now_s:g} s)")

    def _fail(self) -> None:
        self._state = "failed"
        try:
            if self._writer is not None:
                self._writer.flush()
        finally:
            _stop_quietly(self._components)
            self._restore_timer()

    # -- looking and acting -------------------------------------------------------------------
    def mailbox(self, component: str, topic: str = "state") -> Mailbox[Any]:
        """A published mailbox of the run (its newest value: ``.value``, ``.get()``, ``.tick``)."""
        try:
            return self._shared.mailboxes[(component, topic)]
        except KeyError:
            known = sorted(f"{c}.{t}" for c, t in self._shared.mailboxes)
            raise LookupError(f"no mailbox {component}.{topic}; published mailboxes: {known}") from None

    def observe(self) -> dict[str, dict[str, Any]]:
        """The newest value of every mailbox that has one, by component and topic."""
        seen: dict[str, dict[str, Any]] = {}
        for (component, topic), box in self._shared.mailboxes.items():
            if box.has_value:
                seen.setdefault(component, {})[topic] = box.value
        return seen

    def send(self, command: Command, *, via: str = DEFAULT_LINK) -> None:
        """Send a command now, through a named link: an external link of :meth:`Simulation.start`
        (delay, jitter and loss of its spec; logged with the link's name as source), or a
        component's own command link (logged as sent by that component)."""
        self._check_running("send")
        context = self._senders.get(via)
        if context is None:
            context = self._sender(via)
        context.send(command)

    def _sender(self, via: str) -> RunContext:
        spec = self._links.get(via)
        if spec is not None:
            context = RunContext(self._shared, _ExternalSender(via, spec), 0)
        elif via in self._shared.components:
            context = self._shared.components[via].ctx
        else:
            raise LookupError(
                f"no link {via!r}: name an external link ({sorted(self._links)}) or a component "
                f"({sorted(self._shared.components)})"
            )
        self._senders[via] = context
        return context

    def commands(self) -> list[LoggedCommand]:
        """Every command sent so far (by components and from outside), oldest first."""
        return self._shared.commands.records()

    # -- ending -------------------------------------------------------------------------------
    def result(self) -> RunResult:
        """The results once the horizon is reached (components stopped, last chunk flushed);
        after :meth:`close`, what was recorded until then."""
        if self._result is not None:
            return self._result
        if self._state == "failed":
            raise RuntimeError(f"the run failed at t = {self.now_s:g} s; it has no results")
        if self._state == "running":
            if not self.done:
                raise RuntimeError(
                    f"the run is at t = {self.now_s:g} s, before its horizon ({float(self.simulation.horizon):g} s): "
                    "step_until(...) the horizon first, or close() it for what was recorded so far"
                )
            self._end()
            self._state = "finished"
        self._result = self._collect()
        return self._result

    def close(self) -> None:
        """End the run now (components stopped, chunks flushed); nothing if it is already over."""
        if self._state != "running":
            return
        self._state = "closed"
        self._end()

    def _end(self) -> None:
        """Stop every component (the first error propagates once all were asked), flush chunks."""
        self._simulate_end = time.perf_counter()
        try:
            for component in self._components:
                component.stop()
        except BaseException:
            self._state = "failed"
            _stop_quietly(self._components)
            raise
        finally:
            self._restore_timer()
        if self._writer is not None:
            self._writer.flush()

    def _restore_timer(self) -> None:
        if self._timer is not None:
            self._timer.restore()

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._state == "running":
            self.close()

    def _collect(self) -> RunResult:
        simulation, shared = self.simulation, self._shared
        tables = {}
        summary: dict[str, Any] = {}
        for component in self._components:
            for table, frame in component.tables().items():
                tables[f"{component.name}/{table}"] = frame
            facts = component.summary()
            if facts:
                summary[component.name] = facts
        meta = {
            **simulation.metadata,
            "seed": simulation.seed,
            "horizon_s": float(simulation.horizon),
            "tick_s": str(shared.clock.tick),
            "wall_s": self._simulate_end - self._wall_start,
            "components": {c.name: type(c).__name__ for c in self._components},
            "summary": summary,
        }
        if self._state == "closed":
            meta["closed_at_s"] = self.now_s
        result = RunResult(
            tables=tables,
            events=shared.events.to_frame(),
            commands=shared.commands.to_frame(),
            meta=meta,
        )
        if self._timer is not None:
            result.meta["timing_s"] = dict(self._timer.totals)
            result.meta["timing_phases_s"] = {
                "setup": self._setup_end - self._wall_start,
                "simulate": self._simulate_end - self._setup_end,
                "collect": time.perf_counter() - self._simulate_end,
            }
        if self._lag is not None and self._factor is not None:
            result.meta["realtime"] = self._lag.summary(self._factor)
        return result


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
    """Opt-in per-component timing: wraps `step`, `stretch_steps`, `step_stretch` and `deliver`
    on the instances for one run.

    Time is exclusive: when one timed call runs inside another (a controller's command
    delivered at once to the grid, which re-solves), the inner call's time counts for its own
    component and is taken off the outer one. :meth:`restore` removes the wrappers.
    """

    _METHODS = ("step", "stretch_steps", "step_stretch", "deliver")

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
        yield PhasedTimeout(env, tick - int(env.now), record_priority)
        writer.flush()


def _progress_process(env: simpy.Environment, shared: RunShared, report: ProgressCallback):
    """Report the simulated fraction done at most 200 times per run, in the record phase."""
    total = shared.horizon_ticks
    stride = max(1, total // 200)
    record_priority = priority(Phase.RECORD)
    for tick in range(0, total, stride):
        yield PhasedTimeout(env, tick - int(env.now), record_priority)
        report(tick / total)
    report(1.0)

"""The component contract: what a datacenter, a grid and a controller promise the kernel.

A component has a name, an optional native period, a lifecycle (reset -> start -> steps ->
stop), mailboxes it publishes, mailboxes it reads, and the command types it accepts. The
kernel turns each component into one SimPy process; the default process steps at 0, dt,
2dt, ... strictly before the horizon, at the component's phase. Event-driven components
override :meth:`Component.run` and wait on mailboxes instead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from simpy.events import Event

from g2gsim.kernel.commands import Command
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.phases import Phase
from g2gsim.kernel.time import TimeLike, as_period
from g2gsim.kernel.triggers import PERIODIC, TriggerLike, as_trigger, triggered_steps

if TYPE_CHECKING:
    from g2gsim.kernel.context import RunContext


class Component(ABC):
    """Base of every simulated process. Subclasses set `role` and implement :meth:`step`."""

    role: ClassVar[Phase]
    #: Command types this component accepts through links.
    accepts: ClassVar[tuple[type[Command], ...]] = ()

    def __init__(self, name: str, period: TimeLike | None, *, seed: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a component needs a non-empty name, got {name!r}")
        self.name = name
        self.period: Fraction | None = None if period is None else as_period(period, name=f"{name}.period")
        self.seed = seed
        self._ctx: RunContext | None = None
        self._inbox: list[Command] = []

    # -- declarations -------------------------------------------------------------------
    def times(self) -> list[Fraction]:
        """Every period, latency and event time of this component (the base tick divides them)."""
        return [] if self.period is None else [self.period]

    def dependencies(self) -> Mapping[str, type]:
        """Other components this one reads or commands, by name, with the type each must be."""
        return {}

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def ctx(self) -> RunContext:
        """The current run's context (only valid between reset and the end of the run)."""
        if self._ctx is None:
            raise RuntimeError(f"component {self.name!r} is not part of a running simulation")
        return self._ctx

    def prepare(self, horizon: Fraction) -> None:
        """Load what every run of this horizon needs and no run changes (data tables, power
        templates), ahead of the first run, when :meth:`Simulation.prepare` is called (a
        benchmark, or a caller that runs many times, loads first and times runs alone). Must
        be idempotent; :meth:`reset` loads whatever is still missing. Default: nothing."""

    def reset(self, ctx: RunContext) -> None:
        """Forget all state of a previous run and bind to a new run; create published mailboxes."""
        self._ctx = ctx
        self._inbox = []

    def start(self) -> None:
        """Called once every component is reset: subscribe to other components' mailboxes."""

    @property
    def steps_periodically(self) -> bool:
        """Whether its process is exactly :meth:`step` at every multiple of its period (after
        starting its :meth:`helper_processes`): such components of one period may share one
        kernel process (:mod:`g2gsim.kernel.lockstep`). False for any subclass that overrides
        :meth:`run`."""
        return self.period is not None and type(self).run is Component.run

    def helper_processes(self) -> Iterable[Generator[Event, Any, None]]:
        """Extra SimPy processes started with this component's own (e.g. one per schedule
        that changes it at its own instants). Default: none."""
        return ()

    def run(self) -> Generator[Event, Any, None]:
        """The SimPy process: its helper processes, then :meth:`step` at every multiple of the
        period."""
        ctx = self.ctx
        for helper in self.helper_processes():
            ctx.env.process(helper)
        if self.period is None:
            return
        period = ctx.clock.ticks(self.period)
        for k in range(ctx.step_count(self.period)):
            yield ctx.at_tick(k * period)
            self.step(k * period)

    @abstractmethod
    def step(self, tick: int) -> None:
        """One native step at `tick` (seconds = ``self.ctx.seconds(tick)``)."""

    def stretch_steps(self, tick: int, limit: int) -> int:
        """How many of its next `limit` steps, from `tick`, it can take in one
        :meth:`step_stretch` (0 or 1: one by one). A lockstep group asks this in a quiet
        stretch, where no kernel event falls before the last of those steps
        (:mod:`g2gsim.kernel.lockstep`), right before its step of `tick` or the stretch: it may
        do here what that step would do first (apply its commands), whatever the answer.
        Default: 0."""
        return 0

    def step_stretch(self, tick: int, count: int) -> None:
        """Its `count` steps from `tick` at once, with the results of `count` calls of
        :meth:`step` (only after :meth:`stretch_steps` allowed them; nothing else runs in
        between). A failure at one of the steps raises
        :class:`~g2gsim.kernel.lockstep.StretchStepFailed` naming that step's tick."""
        raise NotImplementedError(f"{type(self).__name__} does not step stretches")

    def stop(self) -> None:
        """Called once after the horizon: finish buffers, release resources."""

    def tables(self) -> dict[str, pd.DataFrame]:
        """Recorded outputs of the finished run, by table name."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Scalar facts about the finished run (e.g. number of power-flow solves)."""
        return {}

    # -- commands -----------------------------------------------------------------------
    def deliver(self, command: Command) -> None:
        """A link hands over a command; it takes effect at this component's next step."""
        self._inbox.append(command)

    def take_commands(self) -> list[Command]:
        """Commands delivered since the last call, in arrival order; the command log marks
        them applied now (a component takes commands when it acts on them)."""
        if not self._inbox:
            return []
        inbox, self._inbox = self._inbox, []
        if self._ctx is not None:
            self._ctx.commands_applied(inbox)
        return inbox

    def reject(self, command: Command) -> TypeError:
        """The error for a command type this component does not accept."""
        accepted = ", ".join(c.__name__ for c in self.accepts) or "none"
        return TypeError(
            f"{type(self).__name__} {self.name!r} cannot handle {type(command).__name__} "
            f"({command!r}); it accepts: {accepted}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, period={self.period})"


class DatacenterComponent(Component, ABC):
    """Role base of datacenters: publishes its state in mailbox ``state`` at phase 1."""

    role = Phase.DATACENTER


class GridComponent(Component, ABC):
    """Role base of grids: publishes voltages in mailbox ``state`` at phase 2."""

    role = Phase.GRID


class Controller(Component, ABC):
    """Role base of controllers: plain Python that returns commands at phase 3.

    A controller observes other components through a measurement link and commands them
    through a command link; both default to instant. It never needs SimPy unless it wants to
    (an event-driven controller overrides :meth:`run`).

    Its `trigger` (:mod:`g2gsim.kernel.triggers`) says when it steps: at every period (the
    default), or when a mailbox it subscribed to with ``wake=True`` publishes
    (``"on_change"``), or when a value it watches leaves a band (``{threshold_pu = ...}``),
    at most once per minimum interval. Three hooks serve event triggers: :meth:`settled`
    (False keeps it stepping at its minimum interval), :meth:`watched_values` and
    :meth:`watched_band` (what a threshold trigger compares).
    """

    role = Phase.CONTROL

    def __init__(
        self,
        name: str,
        period: TimeLike | None,
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, period, seed=seed)
        self.command_link = command_link
        self.measurement_link = measurement_link
        self.trigger = as_trigger(trigger, owner=f"controller {name!r}")
        if not self.trigger.is_periodic:
            self._check_trigger()

    def _check_trigger(self) -> None:
        if self.min_interval is None:
            raise ValueError(
                f"controller {self.name!r}: an event trigger ({self.trigger.mode}) needs a period or "
                "trigger.min_interval_s (the least time between two steps)"
            )
        if self.trigger.mode == "threshold" and type(self).watched_values is Controller.watched_values:
            raise ValueError(
                f"controller {self.name!r}: {type(self).__name__} watches no voltages, so a threshold trigger "
                'cannot apply; use trigger = "on_change" or "periodic"'
            )

    @property
    def min_interval(self) -> Fraction | None:
        """Least time between two steps of an event-triggered controller (default: its period)."""
        interval = self.trigger.min_interval_s
        return self.period if interval is None else interval

    def times(self) -> list[Fraction]:
        own = super().times()
        interval = self.min_interval
        if not self.trigger.is_periodic and interval is not None:
            own = [*own, interval]
        return own + self.command_link.times() + self.measurement_link.times()

    @property
    def steps_periodically(self) -> bool:
        """A controller steps periodically with a periodic trigger and its class's own
        :meth:`run` left as it is (an event trigger wakes it on changes instead)."""
        return self.period is not None and self.trigger.is_periodic and type(self).run is Controller.run

    def run(self) -> Generator[Event, Any, None]:
        """At every period (periodic trigger), or woken by what it reads (event triggers)."""
        if self.trigger.is_periodic:
            yield from super().run()
            return
        interval = self.min_interval
        assert interval is not None
        yield from triggered_steps(self, interval)

    def max_steps(self) -> int:
        """Most steps this controller can take in the run (to size its records)."""
        interval = self.period if self.trigger.is_periodic else self.min_interval
        return 0 if interval is None else self.ctx.step_count(interval)

    # -- event-trigger hooks ----------------------------------------------------------------
    def settled(self) -> bool:
        """Whether it may sleep until the next change. An event-triggered controller that is
        still moving (e.g. OFO with active duals releasing a batch) returns False and is
        stepped again at its minimum interval. Default: always settled."""
        return True

    def watched_values(self) -> np.ndarray | None:
        """The values a threshold trigger watches (e.g. the observed voltages, pu), None
        before anything is observed. A controller that watches nothing keeps this default
        and cannot use a threshold trigger."""
        return None

    def watched_band(self) -> tuple[float, float]:
        """The band (low, high) the watched values should stay in; outside it a threshold
        trigger wakes the controller at every minimum interval."""
        return (-math.inf, math.inf)

    def step(self, tick: int) -> None:
        """Run one control step and send what it returns."""
        for command in self.control(tick):
            self.ctx.send(command)

    @abstractmethod
    def control(self, tick: int) -> Iterable[Command]:
        """Decide commands from the latest observations (read through mailboxes)."""

"""The per-component view of one run: clock, random streams, mailboxes, links and logs."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np
import simpy
from simpy.events import Event

from g2gsim.kernel.commands import Command
from g2gsim.kernel.events import PhasedTimeout
from g2gsim.kernel.links import INSTANT, Link, LinkSpec
from g2gsim.kernel.log import CommandLog, EventLog
from g2gsim.kernel.mailbox import Mailbox, QueueMailbox
from g2gsim.kernel.phases import Phase, priority
from g2gsim.kernel.rng import random_stream
from g2gsim.kernel.time import Clock, step_count

if TYPE_CHECKING:
    from g2gsim.kernel.component import Component


class RunShared:
    """State shared by all components of one run (one per :meth:`Simulation.run`)."""

    def __init__(
        self,
        env: simpy.Environment,
        clock: Clock,
        horizon: Fraction,
        seed: int,
        components: Mapping[str, Component],
    ) -> None:
        self.env = env
        self.clock = clock
        self.horizon = horizon
        self.horizon_ticks = clock.ticks_before(horizon)
        self.seed = seed
        self.components = components
        self.mailboxes: dict[tuple[str, str], Mailbox[Any]] = {}
        self.events = EventLog()
        self.commands = CommandLog()


class RunContext:
    """What one component may use of the running simulation."""

    def __init__(self, shared: RunShared, component: Component, order: int) -> None:
        self._shared = shared
        self.component = component
        self.env = shared.env
        self.clock = shared.clock
        # The tick as plain ints: Fraction's numerator/denominator are properties, and
        # seconds() runs several times per step.
        self._tick_numerator = shared.clock.tick.numerator
        self._tick_denominator = shared.clock.tick.denominator
        self.horizon = shared.horizon
        #: Ticks strictly before the horizon (nothing at or after it is processed).
        self.horizon_ticks = shared.horizon_ticks
        self.seed = shared.seed if component.seed is None else component.seed
        self.priority = priority(component.role, order)
        self._command_links: dict[str, Link] = {}
        #: The mailboxes (as this component reads them) whose publishes wake an event-triggered
        #: controller: every subscription made with ``wake=True``.
        self.wake_sources: list[Mailbox[Any] | QueueMailbox[Any]] = []

    # -- time ---------------------------------------------------------------------------
    @property
    def now(self) -> int:
        """Current tick."""
        return cast(int, self.env.now)  # the clock counts integer ticks

    def seconds(self, tick: int) -> float:
        """Seconds of a tick as a correctly rounded float (for numerics and records)."""
        return tick * self._tick_numerator / self._tick_denominator

    @property
    def now_s(self) -> float:
        """Current time in seconds (float, correctly rounded)."""
        return self.seconds(self.now)

    def step_count(self, period: Fraction) -> int:
        """Steps of a period strictly before the horizon."""
        return step_count(period, self.horizon)

    def at_tick(self, tick: int, phase: Phase | None = None) -> Event:
        """An event processed at `tick` in this component's phase slot (or another phase)."""
        event_priority = self.priority if phase is None else priority(phase)
        return PhasedTimeout(self.env, tick - self.now, event_priority)

    # -- randomness ---------------------------------------------------------------------
    def rng(self, purpose: str) -> np.random.Generator:
        """The component's own stream for one purpose (layout, noise, latency, jitter, ...)."""
        return random_stream(self.seed, self.component.name, purpose)

    # -- mailboxes ----------------------------------------------------------------------
    def mailbox(self, topic: str) -> Mailbox[Any]:
        """Create (once per run) a mailbox this component publishes on."""
        key = (self.component.name, topic)
        if key in self._shared.mailboxes:
            raise ValueError(f"component {self.component.name!r} already publishes {topic!r}")
        box: Mailbox[Any] = Mailbox(self.env, f"{self.component.name}.{topic}")
        self._shared.mailboxes[key] = box
        return box

    def _source_mailbox(self, source: str, topic: str) -> Mailbox[Any]:
        try:
            return self._shared.mailboxes[(source, topic)]
        except KeyError:
            known = sorted(f"{s}.{t}" for s, t in self._shared.mailboxes)
            raise LookupError(
                f"{self.component.name!r} subscribes to {source}.{topic}, which no component "
                f"publishes; published mailboxes: {known}"
            ) from None

    @overload
    def subscribe(
        self, source: str, topic: str = ..., *, queue: Literal[False] = ..., wake: bool = ...
    ) -> Mailbox[Any]: ...
    @overload
    def subscribe(
        self, source: str, topic: str = ..., *, queue: Literal[True], wake: bool = ...
    ) -> QueueMailbox[Any]: ...

    def subscribe(self, source: str, topic: str = "state", *, queue: bool = False, wake: bool = True):
        """Read another component's mailbox, through this component's measurement link if any.

        With `wake` (the default) its publishes, as they reach this component, wake it when
        it is event-triggered (:attr:`wake_sources`); a controller passes ``wake=False`` for
        what it reads but should not react to (e.g. a datacenter state published every step).
        """
        box = self._source_mailbox(source, topic)
        link_spec: LinkSpec = getattr(self.component, "measurement_link", INSTANT)
        if not link_spec.is_instant:
            box = self._delayed_mirror(box, link_spec, f"{source}.{topic}->{self.component.name}")
        read: Mailbox[Any] | QueueMailbox[Any] = box.subscribe_queue() if queue else box
        if wake:
            self.wake_sources.append(read)
        return read

    def _delayed_mirror(self, box: Mailbox[Any], spec: LinkSpec, name: str) -> Mailbox[Any]:
        """A local copy of `box` fed through a measurement link.

        The mirror's time is the arrival tick (when this component could know the value; the
        value keeps its own timestamp). With jitter a newer measurement can overtake an older
        one: the older one then arrives stale and is discarded (an event records it), so the
        mirror never goes back in time.
        """
        mirror: Mailbox[Any] = Mailbox(self.env, f"{box.name}@{self.component.name}")
        link = Link(self.env, self.clock, spec, self.rng(f"measurement:{box.name}"), self._drop, name)
        newest = [-1]  # source tick of the newest value delivered so far

        def deliver(sent_tick: int, value: Any) -> None:
            if sent_tick < newest[0]:
                self._shared.events.record(
                    self.now_s,
                    self.component.name,
                    "stale_measurement",
                    {"link": name, "sent_s": self.seconds(sent_tick)},
                )
                return
            newest[0] = sent_tick
            mirror.publish(self.now, value)

        def forward(tick: int, value: Any) -> None:
            link.send(value, lambda v: deliver(tick, v))

        box.add_listener(forward)
        return mirror

    # -- commands -----------------------------------------------------------------------
    def resolve_target(self, command: Command) -> Component:
        """The component a command is for (named, or the only one accepting its type)."""
        components = self._shared.components
        if command.target is not None:
            target = components.get(command.target)
            if target is None:
                raise LookupError(
                    f"{self.component.name!r} sent {type(command).__name__} to unknown component "
                    f"{command.target!r}; components: {sorted(components)}"
                )
            if not isinstance(command, target.accepts):
                raise target.reject(command)
            return target
        candidates = [c for c in components.values() if isinstance(command, c.accepts)]
        if len(candidates) != 1:
            names = sorted(c.name for c in candidates)
            raise LookupError(
                f"{self.component.name!r} sent {type(command).__name__} without a target and "
                f"{len(candidates)} components accept it ({names}); set `target`"
            )
        return candidates[0]

    def send(self, command: Command) -> None:
        """Send a command through this component's command link to its target."""
        target = self.resolve_target(command)
        link = self._command_links.get(target.name)
        if link is None:
            spec: LinkSpec = getattr(self.component, "command_link", INSTANT)
            link = Link(
                self.env,
                self.clock,
                spec,
                self.rng(f"command:{target.name}"),
                self._drop,
                f"{self.component.name}->{target.name}",
            )
            self._command_links[target.name] = link
        deliver_tick = link.send(command, target.deliver)
        self._shared.commands.record(
            self.now_s,
            None if deliver_tick is None else self.seconds(deliver_tick),
            self.component.name,
            target.name,
            command,
        )

    def commands_applied(self, commands: list[Command]) -> None:
        """Record in the command log that this component applies `commands` now."""
        self._shared.commands.applied(commands, self.now_s)

    def _drop(self, link_name: str, message: object) -> None:
        kind = type(message).__name__
        self.event("link_drop", {"link": link_name, "message": kind})

    # -- events -------------------------------------------------------------------------
    def event(
        self, topic: str, payload: dict[str, Any] | None = None, *, plain: bool = False, at_s: float | None = None
    ) -> None:
        """Record a discrete event from this component at the current time (or at `at_s`, for
        a step of a stretch stepped at once). The log keeps a plain copy of `payload`; with
        `plain` it keeps the dict itself, which the caller promises holds only plain Python
        (text keys, numbers, text, lists and dicts of them) and will not change (a payload
        built fresh for this event)."""
        time_s = self.now_s if at_s is None else at_s
        self._shared.events.record(time_s, self.component.name, topic, payload, plain=plain)

    def lookup(self, name: str) -> Component:
        """Another component of the run, by name (for services such as a grid's re-solve)."""
        try:
            return self._shared.components[name]
        except KeyError:
            raise LookupError(
                f"{self.component.name!r} needs component {name!r}; components: {sorted(self._shared.components)}"
            ) from None

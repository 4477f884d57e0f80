"""Mailboxes: latest value, queues, wake-ups and event-driven processes (SPEC 1.3)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from g2gsim.kernel import (
    Controller,
    DatacenterComponent,
    GridComponent,
    Mailbox,
    Phase,
    QueueMailbox,
    Simulation,
    priority,
    wait_until,
)


def _publisher(env: simpy.Environment, box: Mailbox, values: Iterable[tuple[int, object]]):
    """Publish each (tick, value) at its tick."""
    for tick, value in values:
        yield env.timeout(tick - env.now)
        box.publish(env.now, value)


# -- latest value ------------------------------------------------------------------------------
def test_latest_value_and_tick() -> None:
    env = simpy.Environment()
    box: Mailbox[float] = Mailbox(env, "site.state")
    assert not box.has_value
    assert box.tick == -1
    assert box.get() is None
    assert box.get(0.0) == 0.0
    box.publish(3, 1.5)
    box.publish(5, 2.5)
    assert box.has_value
    assert box.value == 2.5
    assert box.tick == 5
    assert box.get(0.0) == 2.5


def test_reading_before_the_first_publish_names_the_mailbox() -> None:
    box: Mailbox[float] = Mailbox(simpy.Environment(), "site.state")
    with pytest.raises(LookupError, match=r"'site\.state' has no value yet"):
        _ = box.value


def test_none_is_a_value_once_published() -> None:
    box: Mailbox[None] = Mailbox(simpy.Environment(), "x")
    box.publish(0, None)
    assert box.has_value
    assert box.value is None


# -- changed() ---------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 50), min_size=1, max_size=20, unique=True))
def test_changed_fires_once_per_publish_in_order(ticks: list[int]) -> None:
    ticks = sorted(ticks)
    env = simpy.Environment()
    box: Mailbox[int] = Mailbox(env, "grid.state")
    seen: list[tuple[int, int]] = []

    def waiter():
        while True:
            value = yield box.changed()
            seen.append((env.now, value))

    env.process(waiter())
    env.process(_publisher(env, box, [(t, 100 + t) for t in ticks]))
    env.run(until=100)
    assert seen == [(t, 100 + t) for t in ticks]


def test_changed_is_one_shared_event_armed_only_on_demand() -> None:
    env = simpy.Environment()
    box: Mailbox[int] = Mailbox(env, "grid.state")
    # Nobody waits: a publish schedules nothing at all.
    box.publish(0, 1)
    assert env.peek() == float("inf")
    # Every waiter at one priority shares one event until the next publish.
    first = box.changed()
    assert box.changed() is first
    other_phase = box.changed(priority(Phase.CONTROL))
    assert other_phase is not first
    box.publish(0, 2)
    assert first.triggered and first.value == 2
    assert other_phase.triggered and other_phase.value == 2
    # After the publish, a wait arms a fresh event.
    again = box.changed()
    assert again is not first and not again.triggered
    env.run()
    assert first.processed and not again.triggered


def test_wake_ups_run_at_the_requested_priority_within_the_tick() -> None:
    env = simpy.Environment()
    box: Mailbox[int] = Mailbox(env, "grid.state")
    order: list[str] = []

    def waiter(label: str, event_priority: int):
        yield box.changed(event_priority)
        order.append(label)

    env.process(waiter("control", priority(Phase.CONTROL, 1)))
    env.process(waiter("record", priority(Phase.RECORD)))
    env.process(waiter("control-first", priority(Phase.CONTROL, 0)))
    env.process(waiter("normal", simpy.events.NORMAL))
    env.process(_publisher(env, box, [(2, 7)]))
    env.run()
    assert order == ["normal", "control-first", "control", "record"]
    assert env.now == 2


# -- queue mailbox -----------------------------------------------------------------------------
def test_queue_drains_everything_since_the_last_read_in_order() -> None:
    env = simpy.Environment()
    box: Mailbox[str] = Mailbox(env, "site.state")
    box.publish(0, "before")  # published before subscribing: never queued
    queue = box.subscribe_queue()
    other = box.subscribe_queue()
    assert isinstance(queue, QueueMailbox)
    assert queue.name == "site.state[queue]"
    assert queue.drain() == []
    for tick, value in [(1, "a"), (2, "b"), (3, "c")]:
        box.publish(tick, value)
    assert len(queue) == 3
    assert queue.drain() == [(1, "a"), (2, "b"), (3, "c")]
    assert len(queue) == 0
    assert queue.drain() == []
    box.publish(4, "d")
    assert queue.drain() == [(4, "d")]
    # Each consumer has its own queue.
    assert other.drain() == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]


@given(st.lists(st.lists(st.integers(), max_size=5), max_size=8))
def test_queue_returns_each_value_exactly_once(batches: list[list[int]]) -> None:
    box: Mailbox[int] = Mailbox(simpy.Environment(), "x")
    queue = box.subscribe_queue()
    tick, drained, published = 0, [], []
    for batch in batches:
        for value in batch:
            box.publish(tick, value)
            published.append((tick, value))
            tick += 1
        drained.extend(queue.drain())
    assert drained == published


def test_queue_can_be_waited_on() -> None:
    env = simpy.Environment()
    box: Mailbox[int] = Mailbox(env, "x")
    queue = box.subscribe_queue()
    got: list[list[tuple[int, int]]] = []

    def consumer():
        for _ in range(2):
            yield queue.changed()
            got.append(queue.drain())

    env.process(consumer())
    env.process(_publisher(env, box, [(1, 10), (4, 40), (9, 90)]))
    env.run()
    assert got == [[(1, 10)], [(4, 40)]]
    assert queue.drain() == [(9, 90)]


def test_listeners_are_called_synchronously_at_every_publish() -> None:
    box: Mailbox[int] = Mailbox(simpy.Environment(), "x")
    calls: list[tuple[int, int]] = []
    box.add_listener(lambda tick, value: calls.append((tick, value)))
    box.publish(1, 5)
    box.publish(2, 6)
    assert calls == [(1, 5), (2, 6)]


# -- threshold-triggered processes ----------------------------------------------------------
def test_wait_until_wakes_at_the_first_value_past_a_threshold() -> None:
    env = simpy.Environment()
    box: Mailbox[float] = Mailbox(env, "grid.v_min")
    fired: list[tuple[int, float]] = []

    def guard():
        while True:
            value = yield from wait_until(box, lambda v: v < 0.95)
            fired.append((env.now, value))

    env.process(guard())
    samples = [(0, 1.0), (1, 0.97), (2, 0.94), (3, 0.96), (4, 0.93), (5, 0.92)]
    env.process(_publisher(env, box, samples))
    env.run()
    assert fired == [(2, 0.94), (4, 0.93), (5, 0.92)]


# -- event-driven components in a run -------------------------------------------------------
class _Site(DatacenterComponent):
    """Publishes a sawtooth load (its step number modulo 5) every period."""

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.count = 0

    def step(self, tick: int) -> None:
        self.box.publish(tick, self.count % 5)
        self.count += 1


class _Grid(GridComponent):
    """Publishes the site's load as its 'voltage' (1 - load / 100)."""

    def start(self) -> None:
        self.site = self.ctx.subscribe("site")

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")

    def step(self, tick: int) -> None:
        self.box.publish(tick, 1 - self.site.value / 100)


class _EventDriven(Controller):
    """No clock: wakes on every grid publish, in its own control slot; trips below 0.965 pu."""

    def __init__(self, name: str, trace: list) -> None:
        super().__init__(name, None)
        self.trace = trace

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.woken: list[tuple[int, float]] = []
        self.trips: list[int] = []

    def start(self) -> None:
        self.grid = self.ctx.subscribe("grid")

    def run(self):
        while True:
            voltage = yield self.grid.changed(self.ctx.priority)
            self.trace.append((self.ctx.now, Phase.CONTROL, self.name))
            self.woken.append((self.ctx.now, voltage))
            for command in self.control(self.ctx.now):
                self.ctx.send(command)

    def control(self, tick: int):
        if self.grid.value < 0.965:
            self.trips.append(tick)
        return ()


class _Clocked(Controller):
    def __init__(self, name: str, period: str, trace: list) -> None:
        super().__init__(name, period)
        self.trace = trace

    def control(self, tick: int):
        self.trace.append((tick, Phase.CONTROL, self.name))
        return ()


def test_an_event_driven_controller_wakes_on_every_grid_publish_in_its_phase() -> None:
    trace: list = []
    reactive = _EventDriven("reactive", trace)
    clocked = _Clocked("clocked", "0.5", trace)
    sim = Simulation([reactive, _Site("site", "0.1"), clocked, _Grid("grid", "0.2")], horizon_s=2)
    sim.run()
    grid_ticks = list(range(0, 20, 2))
    assert [t for t, _ in reactive.woken] == grid_ticks
    expected_load = [t % 5 for t in grid_ticks]  # the tick is the site's 0.1 s period
    assert [v for _, v in reactive.woken] == [1 - load / 100 for load in expected_load]
    assert reactive.trips == [t for t, load in zip(grid_ticks, expected_load) if load == 4]
    # In the control phase, in declared order: the event-driven one first, as declared.
    at_10 = [name for tick, _, name in trace if tick == 10]
    assert at_10 == ["reactive", "clocked"]


def test_an_event_driven_controller_can_wait_for_a_threshold_in_a_run() -> None:
    class Alarm(Controller):
        def reset(self, ctx) -> None:
            super().reset(ctx)
            self.alarms: list[tuple[int, float]] = []

        def start(self) -> None:
            self.grid = self.ctx.subscribe("grid")

        def run(self):
            while True:
                v = yield from wait_until(self.grid, lambda v: v <= 0.96, self.ctx.priority)
                self.alarms.append((self.ctx.now, v))

        def control(self, tick: int):
            return ()

    alarm = Alarm("alarm", None)
    sim = Simulation([alarm, _Grid("grid", "0.1"), _Site("site", "0.1")], horizon_s="1.5")
    sim.run()
    assert alarm.alarms == [(4, 0.96), (9, 0.96), (14, 0.96)]
    # A second run re-arms everything from scratch.
    sim.run()
    assert alarm.alarms == [(4, 0.96), (9, 0.96), (14, 0.96)]


# -- stretches published at once -----------------------------------------------------------------
@given(values=st.lists(st.floats(allow_nan=False), min_size=1, max_size=12), start=st.integers(0, 50))
def test_a_stretch_is_what_its_publishes_one_by_one_leave(values, start) -> None:
    """Publishing a stretch at once leaves the newest value and tick, and every queue's items,
    as publishing each value in turn; its rows are readable for exactly its ticks."""
    ticks = range(start, start + 2 * len(values), 2)
    env = simpy.Environment()
    one, at_once = Mailbox(env, "one"), Mailbox(env, "at_once")
    queue_one, queue_at_once = one.subscribe_queue(), at_once.subscribe_queue()
    for tick, value in zip(ticks, values, strict=True):
        one.publish(tick, value)
    at_once.publish_stretch(ticks, values[-1], rows=list(values), values=lambda: values)
    assert (at_once.value, at_once.tick) == (one.value, one.tick)
    assert queue_at_once.drain() == queue_one.drain()
    assert at_once.stretch_rows(ticks) == list(values)
    assert at_once.stretch_rows(range(start, start + 2 * len(values) + 2, 2)) is None
    at_once.publish(ticks[-1] + 2, 0.0)  # a later single publish: no stretch rows any more
    assert at_once.stretch_rows(ticks) is None


def test_a_stretch_needs_a_mailbox_nobody_waits_on() -> None:
    """Somebody waiting on each value (directly, on a queue, or a link's listener) rules out a
    stretch; a queue that nobody waits on needs the stretch's values."""
    env = simpy.Environment()
    box: Mailbox[float] = Mailbox(env, "site.state")
    assert box.stretchable
    box.changed()
    assert not box.stretchable
    with pytest.raises(RuntimeError, match="'site.state' cannot publish a stretch"):
        box.publish_stretch(range(0, 2), 1.0)
    box.publish(0, 1.0)  # fires and forgets the waiter
    assert box.stretchable
    queue = box.subscribe_queue()
    assert box.stretchable and box.has_queues
    with pytest.raises(ValueError, match="needs its values"):
        box.publish_stretch(range(1, 3), 2.0)
    queue.changed()
    assert not box.stretchable
    other: Mailbox[float] = Mailbox(env, "other")
    other.add_listener(lambda tick, value: None)
    assert not other.stretchable


def test_rows_offered_for_a_stretch_until_the_next_publish() -> None:
    """An offer answers for the ticks it covers from its start (a shorter stretch gets the first
    rows), for nothing else, and is withdrawn by the next publish of either kind."""
    env = simpy.Environment()
    box: Mailbox[float] = Mailbox(env, "site.state")
    assert box.offered_rows(range(0, 4, 2)) is None
    rows = [10.0, 11.0, 12.0, 13.0]
    box.offer_stretch(range(0, 8, 2), rows)
    assert box.offered_rows(range(0, 8, 2)) == rows
    assert box.offered_rows(range(0, 4, 2)) == [10.0, 11.0]
    assert box.offered_rows(range(2, 8, 2)) is None  # not from the offer's start
    assert box.offered_rows(range(0, 10, 2)) is None  # beyond it
    assert box.offered_rows(range(0, 4, 1)) is None  # another step
    box.publish(0, 10.0)
    assert box.offered_rows(range(0, 4, 2)) is None
    box.offer_stretch(range(2, 6, 2), rows[1:3])
    box.publish_stretch(range(2, 6, 2), 12.0, rows=rows[1:3])
    assert box.offered_rows(range(2, 6, 2)) is None and box.stretch_rows(range(2, 6, 2)) == rows[1:3]

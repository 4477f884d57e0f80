"""Lockstep groups: components of one period share a process without changing a tick's order."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.events import Event

import g2gsim.kernel.lockstep as lockstep_module
import g2gsim.kernel.simulation as simulation_module
from g2gsim.kernel import Command, Component, ComponentError, Controller, DatacenterComponent, GridComponent, Simulation
from g2gsim.kernel.lockstep import lockstep_groups

ROLES = {"datacenter": DatacenterComponent, "grid": GridComponent}


def _stepper(role: str):
    base = ROLES[role]

    class Stepper(base):  # type: ignore[valid-type, misc]
        """Steps at its period (the default process), logs and publishes."""

        def __init__(self, name: str, period: Fraction, log: list) -> None:
            super().__init__(name, period)
            self.log = log

        def reset(self, ctx: Any) -> None:
            super().reset(ctx)
            self.box = ctx.mailbox("state")

        def step(self, tick: int) -> None:
            assert self.ctx.now == tick  # a fused tick moves the kernel's clock too
            self.log.append((self.ctx.now, self.name))
            self.box.publish(tick, tick)

    return Stepper


def _own_loop(role: str):
    stepper = _stepper(role)

    class OwnLoop(stepper):  # type: ignore[valid-type, misc]
        """The same steps from its own process (overrides run, so it is never grouped)."""

        def run(self) -> Generator[Event, Any, None]:
            ctx = self.ctx
            period = ctx.clock.ticks(self.period)
            for k in range(ctx.step_count(self.period)):
                yield ctx.at_tick(k * period)
                self.step(k * period)

    return OwnLoop


class Waker(Controller):
    """Woken in its own slot by every publish of a source (an event between group members)."""

    def __init__(self, name: str, source: str, log: list) -> None:
        super().__init__(name, None)
        self.source = source
        self.log = log

    def run(self) -> Generator[Event, Any, None]:
        box = self.ctx.subscribe(self.source)
        while True:
            yield box.changed(self.ctx.priority)
            self.log.append((self.ctx.now, self.name))

    def control(self, tick: int) -> Iterable[Command]:
        return ()


def _logs(specs: list[tuple[str, str, str]], wakers: list[int], grouped: bool) -> list:
    log: list = []
    components: list[Component] = []
    for i, (kind, role, period) in enumerate(specs):
        factory = _stepper if kind == "default" else _own_loop
        components.append(factory(role)(f"c{i}", Fraction(period), log))
    for j, source in enumerate(wakers):
        components.append(Waker(f"w{j}", f"c{source % len(specs)}", log))
    original = simulation_module.lockstep_groups
    if not grouped:
        simulation_module.lockstep_groups = lambda cs: [[c] for c in cs]  # type: ignore[assignment]
    try:
        Simulation(components, horizon_s=2, seed=0).run()
    finally:
        simulation_module.lockstep_groups = original
    return log


specs_strategy = st.lists(
    st.tuples(
        st.sampled_from(["default", "own"]),
        st.sampled_from(["datacenter", "grid"]),
        st.sampled_from(["1/10", "1/5", "1/2"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(specs=specs_strategy, wakers=st.lists(st.integers(0, 5), max_size=3))
def test_lockstep_keeps_the_order_of_every_tick(specs, wakers):
    """Any mix of grouped and own-process components, with processes woken between them:
    the sequence of (tick, component) steps is the one of one process per component."""
    assert _logs(specs, wakers, grouped=True) == _logs(specs, wakers, grouped=False)


def test_event_between_members_runs_between_them():
    """A site with its own process in a slot between two grouped members steps between them."""
    specs = [("default", "datacenter", "1/10"), ("own", "datacenter", "1/10"), ("default", "grid", "1/10")]
    log = _logs(specs, [], grouped=True)
    assert log[:3] == [(0, "c0"), (0, "c1"), (0, "c2")]


def test_groups_share_a_period_and_keep_phase_order():
    log: list = []
    grid = _stepper("grid")("g", Fraction(1, 10), log)
    site = _stepper("datacenter")("s", Fraction(1, 10), log)
    slow = _stepper("datacenter")("slow", Fraction(1), log)
    own = _own_loop("datacenter")("own", Fraction(1, 10), log)
    simulation = Simulation([grid, site, slow, own], horizon_s=1, seed=0)
    handle = simulation.start()
    groups = [[c.name for c in group] for group in lockstep_groups(simulation.components)]
    handle.close()
    assert groups == [["s", "g"], ["slow"], ["own"]]


def test_a_failing_member_is_named():
    log: list = []

    class Failing(_stepper("grid")):  # type: ignore[misc]
        def step(self, tick: int) -> None:
            if tick > 3:
                raise ValueError("boom")
            super().step(tick)

    site = _stepper("datacenter")("site", Fraction(1, 10), log)
    with pytest.raises(ComponentError, match="'grid' failed at t = 0.4 s: ValueError: boom"):
        Simulation([site, Failing("grid", Fraction(1, 10), log)], horizon_s=1, seed=0).run()


def _timeouts_of_a_quiet_group(monkeypatch: pytest.MonkeyPatch, realtime: float | None) -> tuple[int, list]:
    """Kernel timeouts a site + grid group creates over 1 s at 0.1 s with nothing else queued."""
    made: list[int] = []
    original = lockstep_module.PhasedTimeout

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lockstep_module, "PhasedTimeout", counted)
    log: list = []
    site = _stepper("datacenter")("s", Fraction(1, 10), log)
    grid = _stepper("grid")("g", Fraction(1, 10), log)
    Simulation([site, grid], horizon_s=1, seed=0).run(realtime=realtime)
    return len(made), log


def test_quiet_ticks_need_no_kernel_event(monkeypatch):
    """With nothing else queued the group advances the clock itself after its first tick; on the
    real-time kernel every tick is still a timeout (it paces ticks against the wall clock)."""
    made, log = _timeouts_of_a_quiet_group(monkeypatch, None)
    assert made == 1
    assert log == [(k, name) for k in range(10) for name in ("s", "g")]
    made, log_rt = _timeouts_of_a_quiet_group(monkeypatch, 0.001)
    assert made == 10
    assert log_rt == log


@settings(max_examples=25, deadline=None)
@given(pieces=st.lists(st.integers(1, 7), min_size=1, max_size=8))
def test_stepping_in_pieces_stops_fused_ticks_at_each_boundary(pieces):
    """``step(n)`` ends at its boundary (the ``until`` event stops the fusing): the clock is
    there after each piece, and the steps taken are the ticks before it."""
    log: list = []
    site = _stepper("datacenter")("s", Fraction(1, 10), log)
    grid = _stepper("grid")("g", Fraction(1, 10), log)
    handle = Simulation([site, grid], horizon_s=3, seed=0).start()
    now = 0
    for n in pieces:
        handle.step(n)
        now = min(now + n, handle._horizon_ticks)
        assert handle.now == now
        assert {tick for tick, _ in log} == set(range(now))
    handle.close()


# -- quiet stretches stepped at once --------------------------------------------------------


class StretchSource(DatacenterComponent):
    """Publishes f(tick) every step; in a quiet stretch, every step's value at once."""

    def __init__(self, name: str, period: Fraction, log: list) -> None:
        super().__init__(name, period)
        self.log = log
        self.stretches: list[tuple[int, int]] = []

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.stretches = []

    @staticmethod
    def value(tick: int) -> float:
        return tick * 0.5 + 1.0

    def step(self, tick: int) -> None:
        self.log.append((tick, self.name))
        self.box.publish(tick, self.value(tick))

    def stretch_steps(self, tick: int, limit: int) -> int:
        return limit if self.box.stretchable else 0

    def step_stretch(self, tick: int, count: int) -> None:
        period = self.ctx.clock.ticks(self.period)
        ticks = range(tick, tick + count * period, period)
        self.log.extend((t, self.name) for t in ticks)
        self.stretches.append((tick, count))
        values = [self.value(t) for t in ticks]
        self.box.publish_stretch(ticks, values[-1], values, lambda: values)


class StretchSink(GridComponent):
    """Reads its source at every step (the source's stretch rows in a stretch); fails at `fail_at`."""

    def __init__(self, name: str, period: Fraction, source: str, fail_at: int | None = None) -> None:
        super().__init__(name, period)
        self.source = source
        self.fail_at = fail_at
        self.seen: dict[int, float] = {}

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.seen = {}

    def start(self) -> None:
        self.inbox = self.ctx.subscribe(self.source)

    def step(self, tick: int) -> None:
        if tick == self.fail_at:
            raise ValueError("boom")
        self.seen[tick] = self.inbox.value

    def stretch_steps(self, tick: int, limit: int) -> int:
        return limit

    def step_stretch(self, tick: int, count: int) -> None:
        period = self.ctx.clock.ticks(self.period)
        ticks = range(tick, tick + count * period, period)
        rows = self.inbox.stretch_rows(ticks)
        for i, t in enumerate(ticks):
            if t == self.fail_at:
                raise lockstep_module.StretchStepFailed(t, ValueError("boom"))
            self.seen[t] = self.inbox.value if rows is None else rows[i]


def _stretch_run(wakers: list[int], stretches: bool, fail_at: int | None = None) -> tuple[list, dict, list]:
    log: list = []
    source = StretchSource("src", Fraction(1, 10), log)
    sink = StretchSink("sink", Fraction(1, 10), "src", fail_at)
    slow = _stepper("datacenter")("slow", Fraction(1, 2), log)  # its ticks are kernel events
    components: list[Component] = [source, sink, slow]
    components += [Waker(f"w{j}", "src", log) for j in range(len(wakers))]
    if not stretches:
        source.stretch_steps = lambda tick, limit: 0  # type: ignore[method-assign]
    Simulation(components, horizon_s=3, seed=0).run()
    return sorted(log), dict(sink.seen), source.stretches


@pytest.mark.parametrize("wakers", [[], [0]])
def test_stretches_give_the_steps_one_by_one(wakers):
    """A source and a reader in a group step quiet stretches at once, between the slow
    member's kernel events; what the reader sees at every tick is what it sees one tick at a
    time. A process waiting on the source's every value stops stretches altogether."""
    log, seen, stretches = _stretch_run(wakers, stretches=True)
    log_1, seen_1, none = _stretch_run(wakers, stretches=False)
    assert none == []
    assert log == log_1
    assert seen == seen_1 == {t: StretchSource.value(t) for t in range(30)}
    if wakers:
        assert stretches == []
    else:
        # ticks 1-4 between the slow member's steps at 0 and 5 (tick 0 is a kernel event), and so on
        assert stretches[0] == (1, 4)
        assert all(count == 4 for _, count in stretches)
        assert sum(count for _, count in stretches) == 30 - 6


def test_a_failure_inside_a_stretch_names_its_tick():
    """A member failing at one tick of a stretch ends the run at that tick, its earlier ticks kept."""
    log: list = []
    source = StretchSource("src", Fraction(1, 10), log)
    sink = StretchSink("sink", Fraction(1, 10), "src", fail_at=13)
    simulation = Simulation([source, sink], horizon_s=3, seed=0)
    with pytest.raises(ComponentError, match="'sink' failed at t = 1.3 s: ValueError: boom"):
        simulation.run()
    assert sorted(sink.seen) == list(range(13))
    assert source.stretches  # it did fail inside a stretch

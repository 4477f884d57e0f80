"""Links: command and measurement latency, seeded jitter and loss (SPEC 1.4)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from g2gsim.kernel import (
    INSTANT,
    Clock,
    Command,
    Controller,
    DatacenterComponent,
    GridComponent,
    Link,
    LinkSpec,
    Phase,
    Simulation,
    priority,
)

PERIODS = st.sampled_from(["0.05", "0.1", "0.25", "1", "1/3", "0.2", "0.5"])
DELAYS = st.sampled_from(["0", "0.05", "0.1", "0.15", "0.25", "1/3", "0.5", "1", "1.3"])
JITTERS = st.sampled_from(["0.05", "0.1", "0.25", "1/3", "0.5"])
HORIZONS = st.sampled_from(["1", "1.5", "2.35", "7/3", "3"])


# -- toy components ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Nudge(Command):
    """A command that remembers the tick it was sent at."""

    sent: int


class _Target:
    """Shared body of the toy targets: record steps, arrivals and when commands take effect."""

    accepts = (Nudge,)

    def reset(self, ctx) -> None:
        super().reset(ctx)  # type: ignore[misc]
        self.box = ctx.mailbox("state")
        self.steps: list[int] = []
        self.arrivals: list[tuple[int, int]] = []  # (tick delivered, tick sent)
        self.applied: list[tuple[int, int]] = []  # (tick of the step that used it, tick sent)

    def deliver(self, command: Command) -> None:
        assert isinstance(command, Nudge)
        self.arrivals.append((self.ctx.now, command.sent))  # type: ignore[attr-defined]
        super().deliver(command)  # type: ignore[misc]

    def step(self, tick: int) -> None:
        for command in self.take_commands():  # type: ignore[attr-defined]
            self.applied.append((tick, command.sent))
        self.steps.append(tick)
        self.box.publish(tick, tick)


class Site(_Target, DatacenterComponent):
    pass


class Grid(_Target, GridComponent):
    pass


class Sender(Controller):
    """Sends one Nudge per step to `target`; records what it sees of `watch` (a tick or None)."""

    def __init__(
        self,
        name: str,
        period,
        *,
        target: str | None = None,
        watch: str | None = None,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
    ) -> None:
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link)
        self.target = target
        self.watch = watch

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.sent: list[int] = []
        self.observed: list[tuple[int, int | None]] = []

    def start(self) -> None:
        self.view = None if self.watch is None else self.ctx.subscribe(self.watch)

    def control(self, tick: int):
        if self.view is not None:
            self.observed.append((tick, self.view.get()))
        if self.target is not None:
            self.sent.append(tick)
            yield Nudge(target=self.target, sent=tick)


def _first_at_or_after(steps: list[int], due: int) -> int | None:
    return next((s for s in steps if s >= due), None)


# -- LinkSpec ----------------------------------------------------------------------------------
def test_link_spec_reads_exact_seconds_and_checks_its_fields() -> None:
    spec = LinkSpec(delay_s=0.1, jitter_s="1/3", loss_probability=0.25)
    assert spec.delay_s == Fraction(1, 10)
    assert spec.jitter_s == Fraction(1, 3)
    assert spec.times() == [Fraction(1, 10), Fraction(1, 3)]
    assert not spec.is_instant
    assert INSTANT.is_instant and INSTANT.times() == []
    assert not LinkSpec(loss_probability=0.1).is_instant
    with pytest.raises(ValidationError, match="delay"):
        LinkSpec(delay_s=-0.1)
    with pytest.raises(ValidationError, match="loss_probability"):
        LinkSpec(loss_probability=1.5)
    with pytest.raises(ValidationError, match="extra"):
        LinkSpec(delay=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        spec.delay_s = Fraction(1)  # type: ignore[misc]


def test_link_spec_round_trips_through_json() -> None:
    spec = LinkSpec(delay_s="0.1", jitter_s="1/3", loss_probability=0.5)
    dumped = spec.model_dump(mode="json")
    assert dumped == {"delay_s": 0.1, "jitter_s": "1/3", "loss_probability": 0.5}
    assert LinkSpec.model_validate(dumped) == spec


# -- Link on a bare environment -------------------------------------------------------------
def _link(env: simpy.Environment, spec: LinkSpec, seed: int = 0, drops: list | None = None) -> Link:
    def on_drop(name: str, message: object) -> None:
        if drops is not None:
            drops.append((name, message))

    return Link(env, Clock(Fraction(1, 20)), spec, np.random.default_rng(seed), on_drop, "a->b")


def test_an_instant_link_hands_over_at_once() -> None:
    env = simpy.Environment()
    got: list[object] = []
    assert _link(env, INSTANT).send("m", got.append) == 0
    assert got == ["m"]


def test_a_delayed_message_arrives_in_the_deliver_phase_of_its_tick() -> None:
    env = simpy.Environment()
    order: list[str] = []

    def datacenter_step_at_2():
        event = simpy.Event(env)
        event._ok, event._value = True, None
        env.schedule(event, priority(Phase.DATACENTER), 2)
        yield event
        order.append(f"step@{env.now}")

    env.process(datacenter_step_at_2())
    env.run(until=1)  # the step event is already queued when the message is sent
    link = _link(env, LinkSpec(delay_s="0.05"))  # one tick of 1/20 s
    assert link.send("m", lambda m: order.append(f"{m}@{env.now}")) == 2
    env.run()
    assert order == ["m@2", "step@2"]


def test_a_delay_that_is_not_a_whole_number_of_ticks_is_refused() -> None:
    with pytest.raises(ValueError, match="not a whole number of base ticks"):
        _link(simpy.Environment(), LinkSpec(delay_s="0.01"))


def test_jitter_covers_every_whole_tick_within_its_bound() -> None:
    link = _link(simpy.Environment(), LinkSpec(delay_s="0.1", jitter_s="0.15"))  # 2 + [0, 3]
    delays = {link.delay_ticks() for _ in range(400)}
    assert delays == {2, 3, 4, 5}


def test_a_lost_message_is_reported_and_never_delivered() -> None:
    env = simpy.Environment()
    drops: list = []
    got: list = []
    link = _link(env, LinkSpec(loss_probability=1.0), drops=drops)
    assert link.send("m", got.append) is None
    env.run()
    assert got == [] and drops == [("a->b", "m")]


@given(st.integers(0, 2**32), st.floats(0.05, 0.95))
def test_loss_rate_is_roughly_the_probability(seed: int, p: float) -> None:
    link = _link(simpy.Environment(), LinkSpec(loss_probability=p), seed=seed)
    lost = sum(link.delay_ticks() is None for _ in range(2000))
    assert abs(lost / 2000 - p) < 0.06


# -- (c) command latency in a run -------------------------------------------------------------
@given(
    target_period=PERIODS, ctl_period=PERIODS, delay=DELAYS, horizon=HORIZONS, target_role=st.sampled_from([Site, Grid])
)
def test_a_command_takes_effect_at_the_targets_first_step_at_or_after_arrival(
    target_period: str, ctl_period: str, delay: str, horizon: str, target_role: type
) -> None:
    """Sent at t with delay d > 0: first target step >= t + d; with d = 0: first step > t."""
    target = target_role("target", target_period)
    sender = Sender("ctl", ctl_period, target="target", command_link=LinkSpec(delay_s=delay))
    sim = Simulation([sender, target], horizon)
    result = sim.run()
    d = sim.clock.ticks(delay)

    expected_applied, expected_arrivals = [], []
    for t in sender.sent:
        due = t + d if d > 0 else t + 1  # the target already stepped at t (phase 1 or 2 < 3)
        step = _first_at_or_after(target.steps, due)
        if step is not None:
            expected_applied.append((step, t))
        if sim.clock.seconds(t + d) < sim.horizon:
            expected_arrivals.append((t + d, t))
    assert target.applied == expected_applied
    assert target.arrivals == expected_arrivals

    commands = result.commands
    assert list(commands["status"]) == ["sent"] * len(sender.sent)
    assert list(commands["sent_s"]) == [float(sim.clock.seconds(t)) for t in sender.sent]
    assert list(commands["deliver_s"]) == [float(sim.clock.seconds(t + d)) for t in sender.sent]
    assert set(commands["target"]) == {"target"} and set(commands["kind"]) == {"Nudge"}


def test_an_instant_command_at_a_shared_tick_waits_for_the_next_target_step() -> None:
    """OpenG2G's convention: a controller at t = 1 s affects the datacenter from t = 1.1 s."""
    site = Site("site", "0.1")
    sender = Sender("ctl", "1", target="site")
    sim = Simulation([site, sender], 3)
    sim.run()
    assert site.applied == [(1, 0), (11, 10), (21, 20)]


# -- (d) seeded jitter ----------------------------------------------------------------------
@given(delay=DELAYS, jitter=JITTERS, seeds=st.lists(st.integers(0, 2**63), min_size=2, max_size=2, unique=True))
def test_jitter_is_seeded_and_bounded(delay: str, jitter: str, seeds: list[int]) -> None:
    def run(seed: int):
        site = Site("site", "0.05")
        sender = Sender("ctl", "0.05", target="site", command_link=LinkSpec(delay_s=delay, jitter_s=jitter))
        sim = Simulation([site, sender], 4, seed=seed)
        return sim, site, sender, sim.run()

    sim, site, _sender, first = run(seeds[0])
    _, site_again, _, again = run(seeds[0])
    _, site_other, _, other = run(seeds[1])

    # Same seed: bit-identical arrivals and result tables.
    assert site_again.arrivals == site.arrivals
    assert_frame_equal(again.commands, first.commands)
    for key in first.tables:
        assert_frame_equal(again.tables[key], first.tables[key])
    # Another seed: other delivery times (80 messages, at least 2 choices each).
    assert other.commands["deliver_s"].tolist() != first.commands["deliver_s"].tolist()
    # Every delivery within [delay, delay + jitter], on whole ticks.
    d, j = sim.clock.ticks(delay), sim.clock.ticks(jitter)
    for arrivals in (site.arrivals, site_other.arrivals):
        assert arrivals and all(d <= arrived - sent <= d + j for arrived, sent in arrivals)
    for frame in (first, other):
        lateness = frame.commands["deliver_s"] - frame.commands["sent_s"]
        tolerance = 1e-9
        assert (lateness >= float(Fraction(delay)) - tolerance).all()
        assert (lateness <= float(Fraction(delay) + Fraction(jitter)) + tolerance).all()


def test_streams_are_per_link_so_adding_a_link_changes_no_other() -> None:
    def arrivals(extra: bool) -> list[tuple[int, int]]:
        spec = LinkSpec(jitter_s="0.5")
        site = Site("site", "0.1")
        components = [site, Sender("ctl", "0.1", target="site", command_link=spec)]
        if extra:
            components += [Site("other", "0.1"), Sender("ctl2", "0.1", target="other", command_link=spec)]
        Simulation(components, 3, seed=11).run()
        return site.arrivals

    assert arrivals(False) == arrivals(True)


# -- loss in a run ---------------------------------------------------------------------------
def test_a_lost_command_is_a_link_drop_event_and_a_dropped_row() -> None:
    site = Site("site", "0.1")
    sender = Sender("ctl", "0.5", target="site", command_link=LinkSpec(loss_probability=1.0))
    result = Simulation([site, sender], 2).run()
    assert site.arrivals == [] and site.applied == []
    commands = result.commands
    assert list(commands["status"]) == ["dropped"] * 4
    assert commands["deliver_s"].isna().all()
    drops = result.events_of("link_drop")
    assert list(drops["time_s"]) == [0.0, 0.5, 1.0, 1.5]
    assert set(drops["source"]) == {"ctl"}
    assert list(drops["payload"]) == [{"link": "ctl->site", "message": "Nudge"}] * 4


@given(st.integers(0, 2**32))
def test_partial_loss_drops_exactly_the_recorded_messages(seed: int) -> None:
    site = Site("site", "0.1")
    sender = Sender("ctl", "0.1", target="site", command_link=LinkSpec(loss_probability=0.4))
    result = Simulation([site, sender], 10, seed=seed).run()
    dropped = result.commands["status"] == "dropped"
    assert 0 < dropped.sum() < 100
    assert len(result.events_of("link_drop")) == dropped.sum()
    delivered = result.commands.loc[~dropped, "sent_s"]
    assert [sim_tick for _, sim_tick in site.arrivals] == [round(s * 10) for s in delivered]


# -- measurement links ----------------------------------------------------------------------
@given(source_period=PERIODS, ctl_period=PERIODS, delay=DELAYS, horizon=HORIZONS)
def test_a_measurement_link_delivers_values_delay_late(
    source_period: str, ctl_period: str, delay: str, horizon: str
) -> None:
    """At a control step t the controller sees the newest publish p with p + d <= t."""
    site = Site("site", source_period)
    watcher = Sender("ctl", ctl_period, watch="site", measurement_link=LinkSpec(delay_s=delay))
    sim = Simulation([watcher, site], horizon)
    sim.run()
    d = sim.clock.ticks(delay)
    for tick, seen in watcher.observed:
        visible = [p for p in site.steps if p + d <= tick]
        assert seen == (visible[-1] if visible else None)
    assert len(watcher.observed) > 0


@given(seed=st.integers(0, 50))
def test_a_jittered_measurement_link_never_goes_back_in_time(seed: int) -> None:
    """Jitter larger than the publish period reorders arrivals; the reader still only ever
    sees newer values (overtaken ones are discarded as stale, with an event)."""
    site = Site("site", "0.1")
    watcher = Sender("ctl", "0.1", watch="site", measurement_link=LinkSpec(delay_s="0.2", jitter_s="0.5"))
    result = Simulation([site, watcher], 20, seed=seed).run()
    seen = [value for _, value in watcher.observed if value is not None]
    assert seen and all(a <= b for a, b in itertools.pairwise(seen))
    assert result.events_of("stale_measurement").shape[0] > 0


def test_a_lossy_measurement_link_reports_drops_from_the_reader() -> None:
    site = Site("site", "0.5")
    watcher = Sender("ctl", "1", watch="site", measurement_link=LinkSpec(loss_probability=1.0))
    result = Simulation([site, watcher], 2).run()
    assert watcher.observed == [(0, None), (2, None)]  # ticks of 0.5 s
    drops = result.events_of("link_drop")
    assert list(drops["time_s"]) == [0.0, 0.5, 1.0, 1.5]
    assert set(drops["source"]) == {"ctl"}
    assert list(drops["payload"]) == [{"link": "site.state->ctl", "message": "int"}] * 4


def test_a_queue_behind_a_measurement_link_gets_every_value_late() -> None:
    class Collector(Controller):
        def reset(self, ctx) -> None:
            super().reset(ctx)
            self.batches: list[list[tuple[int, int]]] = []

        def start(self) -> None:
            self.queue = self.ctx.subscribe("site", queue=True)

        def control(self, tick: int):
            self.batches.append(self.queue.drain())
            return ()

    site = Site("site", "0.1")
    collector = Collector("ctl", "0.5", measurement_link=LinkSpec(delay_s="0.2"))
    sim = Simulation([site, collector], "1.5")
    sim.run()
    # Values are the site's publish ticks; each is queued at its arrival tick (2 ticks later).
    assert collector.batches == [
        [],
        [(2, 0), (3, 1), (4, 2), (5, 3)],
        [(6, 4), (7, 5), (8, 6), (9, 7), (10, 8)],
    ]


def test_measurement_and_command_links_together() -> None:
    site = Site("site", "0.1")
    ctl = Sender(
        "ctl",
        "0.5",
        target="site",
        watch="site",
        command_link=LinkSpec(delay_s="0.2"),
        measurement_link=LinkSpec(delay_s="0.3"),
    )
    Simulation([ctl, site], 2).run()
    assert ctl.observed == [(0, None), (5, 2), (10, 7), (15, 12)]
    assert site.applied == [(2, 0), (7, 5), (12, 10), (17, 15)]

"""Driving a run from outside: ``Simulation.start()`` and its handle.

Stepping in any number of pieces gives the tables of one ``run()``; commands sent from
outside travel through named links with their delays; errors, early closing and the
real-time kernel behave as in ``run()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from g2gsim.kernel import (
    AssemblyError,
    Command,
    ComponentError,
    Controller,
    DatacenterComponent,
    LinkSpec,
    RunResult,
    Simulation,
    read_chunks,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bump(Command):
    amount: int


class Counter(DatacenterComponent):
    """Publishes its level plus seeded noise; a Bump moves the level at its next step and is
    recorded with the tick it arrived at."""

    accepts = (Bump,)

    def __init__(self, name: str, period: Any = Fraction(1, 10), *, fail_at: float | None = None) -> None:
        super().__init__(name, period)
        self.fail_at = fail_at
        self.stopped = 0

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.noise = ctx.rng("noise")
        self.level = 0
        self.rows: list[tuple[float, int, int]] = []
        self.arrived: list[tuple[float, int]] = []

    def deliver(self, command: Command) -> None:
        assert isinstance(command, Bump)
        self.arrived.append((self.ctx.now_s, command.amount))
        super().deliver(command)

    def step(self, tick: int) -> None:
        if self.fail_at is not None and self.ctx.seconds(tick) >= self.fail_at:
            raise ArithmeticError("the counter overflowed")
        for command in self.take_commands():
            self.level += command.amount  # type: ignore[attr-defined]
        value = self.level * 100 + int(self.noise.integers(0, 10))
        self.rows.append((self.ctx.seconds(tick), self.level, value))
        self.box.publish(tick, value)

    def stop(self) -> None:
        self.stopped += 1

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"state": pd.DataFrame(self.rows, columns=["time_s", "level", "value"])}


class Pusher(Controller):
    """Bumps the counter up while its value is below 300, else down, through its command link."""

    def __init__(self, name: str, period: Any = 1, *, command_link: LinkSpec | None = None) -> None:
        super().__init__(name, period, command_link=command_link or LinkSpec())

    def start(self) -> None:
        self.seen = self.ctx.subscribe("counter")

    def control(self, tick: int) -> list[Command]:
        return [Bump(target="counter", amount=1 if self.seen.get(0) < 300 else -1)]


def _simulation(horizon: Any = 20, **counter: Any) -> Simulation:
    link = LinkSpec(delay_s=Fraction(3, 10), jitter_s=Fraction(2, 10), loss_probability=0.1)
    return Simulation([Counter("counter", **counter), Pusher("pusher", command_link=link)], horizon, seed=7)


def _same(a: RunResult, b: RunResult) -> None:
    assert sorted(a.tables) == sorted(b.tables)
    for key in a.tables:
        assert_frame_equal(a.tables[key], b.tables[key])
    assert_frame_equal(a.events, b.events)
    assert_frame_equal(a.commands, b.commands)
    timeless = [
        {c: {k: v for k, v in facts.items() if not k.endswith("_s")} for c, facts in r.summary.items()} for r in (a, b)
    ]
    assert timeless[0] == timeless[1]


# -- stepping in pieces ----------------------------------------------------------------------
def test_a_preset_stepped_in_100_uneven_pieces_gives_the_tables_of_one_run() -> None:
    from g2gsim.scenarios import build_simulation, load_scenario

    scenario = load_scenario("ieee13_ofo_tapchange").with_overrides(horizon_s=40)
    whole = build_simulation(scenario).simulation.run()
    simulation = build_simulation(scenario).simulation
    cuts = np.sort(np.random.default_rng(3).uniform(0.0, 40.0, size=99))
    handle = simulation.start()
    for t in cuts:
        handle.step_until(float(t))
        assert not handle.done
    handle.step_until(40)
    assert handle.done and handle.now_s == 40.0
    _same(whole, handle.result())


@given(cuts=st.lists(st.fractions(min_value=0, max_value=25), max_size=30), ticks=st.integers(0, 40))
def test_any_pieces_of_any_size_give_the_tables_of_one_run(cuts: list[Fraction], ticks: int) -> None:
    whole = _simulation().run()
    handle = _simulation().start()
    handle.step(ticks)
    for t in sorted(cuts):
        handle.step_until(t)  # times already reached do nothing
    handle.step_until(20)
    _same(whole, handle.result())


def test_step_advances_whole_ticks_and_stops_at_the_horizon() -> None:
    handle = _simulation(horizon="1.05").start()
    assert (handle.now, handle.now_s, handle.done) == (0, 0.0, False)
    handle.step()
    assert handle.now == 1 and handle.mailbox("counter").tick == 0
    handle.step(3)
    assert handle.now_s == pytest.approx(0.4)
    handle.step(1000)
    assert handle.done and handle.now == 11  # 1.05 s: ticks 0..10 fire, the horizon is tick 11 (ceil)
    handle.step()  # nothing left
    with pytest.raises(ValueError, match="n_ticks"):
        handle.step(-1)


def test_observe_shows_the_newest_value_of_every_mailbox() -> None:
    handle = _simulation().start()
    assert handle.observe() == {}
    handle.step_until(0.25)
    seen = handle.observe()
    assert list(seen) == ["counter"] and seen["counter"]["state"] == handle.mailbox("counter").value
    assert handle.mailbox("counter").tick == 2  # published at 0.2 s, the last step before 0.25 s
    with pytest.raises(LookupError, match=r"counter\.state"):
        handle.mailbox("counter", "voltages")


# -- commands from outside ---------------------------------------------------------------------
def test_a_command_sent_from_outside_arrives_after_the_link_delay() -> None:
    simulation = Simulation([Counter("counter")], 2, seed=1)
    handle = simulation.start(links={"operator": LinkSpec(delay_s="0.5"), "instant": LinkSpec()})
    handle.step_until(1)
    handle.send(Bump(target="counter", amount=2), via="operator")
    handle.send(Bump(target="counter", amount=10), via="instant")
    handle.step_until(1.45)
    counter = simulation.component("counter")
    assert counter.arrived == [(1.0, 10)]  # type: ignore[attr-defined]
    handle.step_until(2)
    assert counter.arrived == [(1.0, 10), (1.5, 2)]  # type: ignore[attr-defined]
    result = handle.result()
    levels = result.table("counter/state").set_index("time_s")["level"]
    assert levels[0.9] == 0 and levels[1.0] == 10 and levels[1.4] == 10 and levels[1.5] == 12
    log = result.commands
    assert log["source"].tolist() == ["operator", "instant"]
    assert log["sent_s"].tolist() == [1.0, 1.0] and log["deliver_s"].tolist() == [1.5, 1.0]


def test_a_command_sent_via_a_controller_travels_its_command_link() -> None:
    simulation = Simulation([Counter("counter"), Pusher("pusher", command_link=LinkSpec(delay_s=1))], 5)
    handle = simulation.start()
    handle.step_until(2.5)
    handle.send(Bump(target="counter", amount=-50), via="pusher")
    handle.step_until(5)
    commands = handle.result().commands
    mine = commands[commands["sent_s"] == 2.5]
    assert mine["source"].tolist() == ["pusher"] and mine["deliver_s"].tolist() == [3.5]


def test_the_default_link_is_instant_and_named_external() -> None:
    simulation = Simulation([Counter("counter")], 2)
    handle = simulation.start()
    handle.step_until(0.5)
    handle.send(Bump(amount=1))  # the only component accepting Bump
    assert simulation.component("counter").arrived == [(0.5, 1)]  # type: ignore[attr-defined]
    handle.step_until(2)
    assert handle.result().commands["source"].tolist() == ["external"]


def test_external_links_are_checked() -> None:
    simulation = Simulation([Counter("counter")], 2)
    with pytest.raises(AssemblyError, match="whole number of ticks"):
        simulation.start(links={"slow": LinkSpec(delay_s="0.05")})
    with pytest.raises(AssemblyError, match="name of a component"):
        simulation.start(links={"counter": LinkSpec()})
    handle = simulation.start()
    with pytest.raises(LookupError, match="no link 'radio'"):
        handle.send(Bump(amount=1), via="radio")
    with pytest.raises(LookupError, match="unknown component 'nowhere'"):
        handle.send(Bump(target="nowhere", amount=1))


# -- ending ------------------------------------------------------------------------------------
def test_results_wait_for_the_horizon_and_are_collected_once() -> None:
    simulation = _simulation()
    handle = simulation.start()
    handle.step_until(10)
    with pytest.raises(RuntimeError, match="before its horizon"):
        handle.result()
    handle.step_until(20)
    first = handle.result()
    assert handle.result() is first and handle.closed
    assert simulation.component("counter").stopped == 1  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="has finished"):
        handle.step()


def test_closing_early_stops_components_and_flushes_chunks(tmp_path) -> None:
    simulation = _simulation(horizon=100)
    with simulation.start(stream_to=tmp_path, chunk_s=30) as handle:
        handle.step_until(12.5)
    assert handle.closed and simulation.component("counter").stopped == 1  # type: ignore[attr-defined]
    assert len(read_chunks(tmp_path)["counter/state"]) == 125
    partial = handle.result()
    assert partial.meta["closed_at_s"] == 12.5 and len(partial.table("counter/state")) == 125
    handle.close()  # closing twice does nothing
    with pytest.raises(RuntimeError, match="was closed"):
        handle.send(Bump(target="counter", amount=1))


def test_an_error_inside_a_step_is_the_component_error_and_ends_the_run(tmp_path) -> None:
    simulation = _simulation(horizon=30, fail_at=4.2)
    handle = simulation.start(stream_to=tmp_path, chunk_s=1)
    handle.step_until(4)
    with pytest.raises(ComponentError, match=r"Counter 'counter' failed at t = 4\.2 s: ArithmeticError"):
        handle.step_until(10)
    assert handle.closed and simulation.component("counter").stopped == 1  # type: ignore[attr-defined]
    assert len(read_chunks(tmp_path)["counter/state"]) == 42  # everything before the failure
    with pytest.raises(RuntimeError, match="failed"):
        handle.step()
    with pytest.raises(RuntimeError, match="failed at t = 4.2 s"):
        handle.result()
    with pytest.raises(ComponentError):  # run() raises the same error
        _simulation(horizon=30, fail_at=4.2).run()


def test_the_real_time_kernel_can_be_stepped_too() -> None:
    whole = _simulation(horizon=2).run()
    handle = _simulation(horizon=2).start(realtime=0.05)
    for t in (0.3, 0.35, 1.2, 2):
        handle.step_until(t)
    result = handle.result()
    assert result.meta["realtime"]["ticks"] == 20
    for key in whole.tables:
        assert_frame_equal(whole.tables[key], result.tables[key])
    assert_frame_equal(whole.commands, result.commands)


def test_timing_works_when_stepped() -> None:
    handle = _simulation().start(timing=True)
    handle.step_until(7)
    handle.step_until(20)
    meta = handle.result().meta
    assert set(meta["timing_s"]) == {"counter", "pusher"} and meta["timing_phases_s"]["simulate"] > 0

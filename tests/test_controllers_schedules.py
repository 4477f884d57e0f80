"""Tap and batch-size schedules (SPEC 5.1): exact-time firing, polling, builders."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from g2gsim.controllers import (
    BatchSchedule,
    BatchScheduleController,
    BatchSizeChange,
    Noop,
    TapPosition,
    TapSchedule,
    TapScheduleController,
)
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.grid.commands import SetTaps
from g2gsim.kernel import Simulation
from g2gsim.testing import FakeSite, FakeSpec, ScriptedGrid, run_components, three_phase

HORIZON = Fraction(10)
# exact times: multiples of 1/8, 1/10 and 1/3 s
TIMES = st.builds(lambda n, d: Fraction(n, d), st.integers(0, 120), st.sampled_from([1, 3, 8, 10])).filter(
    lambda t: t <= 12
)


def _grid(period=Fraction(1, 2)):
    return ScriptedGrid("grid", three_phase(["x"]), lambda k: np.ones(3), period=period)


def _tap_schedule(times):
    schedule = None
    for i, t in enumerate(times):
        entry = TapPosition(a=1.0 + 0.00625 * i, creg2=1.0 + 0.00625 * (i % 5)).at(t)
        schedule = entry if schedule is None else schedule | entry
    return schedule


@given(st.lists(TIMES, min_size=1, max_size=8, unique=True))
def test_tap_entries_fire_once_at_their_exact_times_in_order(times):
    grid = _grid()
    schedule = _tap_schedule(times)
    controller = TapScheduleController("taps", schedule, grid="grid")
    result = run_components([grid, controller], HORIZON)
    due = sorted(t for t in times if t < HORIZON)
    sent = [(t, c) for t, c in grid.received if isinstance(c, SetTaps)]
    assert [t for t, _ in sent] == [float(t) for t in due]  # once each, at its time, in order
    by_time = dict(schedule)
    assert [dict(c.taps) for _, c in sent] == [dict(by_time[t].taps) for t in due]
    assert result.events_of("tap_schedule").shape[0] == len(due)
    # the base tick divides every entry time
    sim = Simulation([_grid(), TapScheduleController("taps", schedule, grid="grid")], HORIZON)
    assert all((t / sim.clock.tick).denominator == 1 for t in times)


@given(
    st.lists(TIMES, min_size=1, max_size=8, unique=True), st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(3)])
)
def test_polling_fires_due_entries_merged_at_the_first_poll(times, period):
    grid = _grid()
    schedule = _tap_schedule(times)
    run_components([grid, TapScheduleController("taps", schedule, grid="grid", period=period)], HORIZON)
    sent = [(Fraction(t).limit_denominator(1000), dict(c.taps)) for t, c in grid.received]
    polls = [k * period for k in range(math.ceil(HORIZON / period))]
    expected = []
    entries = sorted(schedule)
    i = 0
    for poll in polls:
        merged: dict[str, float] = {}
        while i < len(entries) and entries[i][0] <= poll:
            merged.update(entries[i][1].taps)
            i += 1
        if merged:
            expected.append((poll, merged))
    assert sent == expected


@given(
    st.dictionaries(
        st.sampled_from(["m0", "m1", "m2"]), st.lists(TIMES, min_size=1, max_size=4, unique=True), min_size=1
    ),
)
def test_batch_entries_fire_once_at_their_times_one_command_per_time(plan):
    specs = [FakeSpec(m) for m in ("m0", "m1", "m2")]
    dc = FakeSite("dc", specs, replicas={"m0": 1, "m1": 1, "m2": 1}, period=Fraction(1, 2))
    schedules, expected = {}, {}
    for label, times in plan.items():
        schedule = None
        for i, t in enumerate(times):
            entry = BatchSizeChange((8, 16, 32, 64)[i % 4], ramp_up_rate=float(i)).at(t)
            schedule = entry if schedule is None else schedule | entry
            if t < HORIZON:
                expected.setdefault(t, {})[label] = ((8, 16, 32, 64)[i % 4], float(i))
        schedules[label] = schedule
    result = run_components([dc, BatchScheduleController("batches", schedules, site="dc")], HORIZON)
    sent = [(t, c) for t, c in dc.received if isinstance(c, SetBatchSize)]
    assert [t for t, _ in sent] == [float(t) for t in sorted(expected)]
    for (_, command), t in zip(sent, sorted(expected), strict=True):
        assert dict(command.batch) == {m: b for m, (b, _) in expected[t].items()}
        assert dict(command.ramp_up_rate) == {m: r for m, (_, r) in expected[t].items() if r > 0}
    assert len(result.events_of("batch_schedule")) == len(expected)


def test_duplicate_times_are_rejected():
    with pytest.raises(ValueError, match="same time: 5 s"):
        TapPosition(a=1.0).at(5) | TapPosition(b=1.0).at(5.0)
    with pytest.raises(ValueError, match="same time"):
        BatchSizeChange(8).at(0.1) | BatchSizeChange(16).at("1/10")


def test_builders_validate_and_read_back():
    schedule = TapPosition(a=1.1).at(3) | TapPosition(creg1b=1.0).at(1)
    assert isinstance(schedule, TapSchedule) and schedule.times == (Fraction(1), Fraction(3))
    assert "TapPosition(creg1b=1.0).at(1)" in repr(schedule)
    assert isinstance(BatchSizeChange(8).at(2) | BatchSizeChange(16).at(1), BatchSchedule)
    with pytest.raises(ValueError):
        TapPosition()
    with pytest.raises(ValueError):
        TapPosition(a=-1.0)
    with pytest.raises(ValueError):
        BatchSizeChange(0)
    with pytest.raises(ValueError):
        BatchSizeChange(8, ramp_up_rate=-1)
    with pytest.raises(ValueError):
        TapPosition(a=1.0).at(-1)
    with pytest.raises(TypeError):
        TapPosition(a=1.0).at(1) | BatchSizeChange(8).at(2)  # type: ignore[operator]
    assert TapPosition(a=1.0).at(Fraction(1, 10)).times == (Fraction(1, 10),)
    assert TapPosition(a=1.0).at(0.1).times == (Fraction(1, 10),)


def test_resolve_flag_and_target_reach_the_command():
    grid = _grid()
    result = run_components(
        [grid, TapScheduleController("taps", TapPosition(a=1.05).at(2), grid="grid", resolve=True)], 5
    )
    [(t, command)] = grid.received
    assert t == 2.0 and command.resolve and command.target == "grid"
    assert result.commands["payload"].iloc[0]["taps"] == {"a": 1.05}


def test_unknown_scheduled_model_is_an_error():
    dc = FakeSite("dc", [FakeSpec("m0")], replicas={"m0": 1})
    with pytest.raises(KeyError, match="nope"):
        run_components([dc, BatchScheduleController("b", {"nope": BatchSizeChange(8).at(1)}, site="dc")], 3)


def test_reset_then_rerun_gives_identical_commands():
    grid = _grid()
    controller = TapScheduleController("taps", _tap_schedule([Fraction(1, 3), Fraction(7, 8), 4]), grid="grid")
    first, second = run_components([grid, controller], HORIZON), run_components([grid, controller], HORIZON)
    assert first.commands.equals(second.commands) and len(first.commands) == 3


def test_noop_never_commands():
    result = run_components([_grid(), Noop("none", 1)], 5)
    assert result.commands.empty
    assert Noop().period == 1 and Noop(period=None).times() == []

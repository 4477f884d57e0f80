"""Scheduled changes as kernel events, and blocks of steps that change no number (SPEC 2.2-2.5)."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g2gsim.datacenter import blocks as blocks_module
from g2gsim.datacenter.blocks import BlockLength, NormalStream, draw_ahead, draws_ahead
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.datacenter.config import DatacenterConfig, ReplicaSchedule, TrainingRun
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.datacenter.schedule import BatchRamp, ReplicaTimeline, StepClock, TrainingWindows
from g2gsim.kernel import Simulation
from test_datacenter_fakes import FakeSource, Script, flat_trace, site

PERIODS = [Fraction(1, 10), Fraction(1, 4), Fraction(1, 3), Fraction(1), Fraction(1, 20)]


def replica_table(config: DatacenterConfig, n_steps: int, period: Fraction) -> np.ndarray:
    """Test oracle: round(count_exact(k * period)) per step and model (one row per step)."""
    return np.array(
        [[round(d.replicas.count_exact(k * period)) for d in config.deployments] for k in range(n_steps)],
        dtype=np.int64,
    ).reshape(n_steps, len(config.deployments))


@st.composite
def schedules(draw: st.DrawFn) -> ReplicaSchedule:
    """Ramps with decimal times, zero-width steps and touching windows."""
    schedule = ReplicaSchedule(initial=draw(st.integers(0, 50)))
    t = 0.0
    for _ in range(draw(st.integers(0, 4))):
        start = round(t + draw(st.sampled_from([0.0, 0.05, 0.1, 0.35, 1.0, 1.25, 2.7])), 6)
        end = round(start + draw(st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0, 2.9, 4.25])), 6)
        schedule = schedule.ramp_to(draw(st.integers(0, 60)), start, end)
        t = end
    return schedule


def _expand(changes: tuple[tuple[int, int], ...], n_steps: int) -> list[int]:
    steps = [step for step, _ in changes] + [n_steps]
    return np.repeat([value for _, value in changes], np.diff(steps)).tolist()


# -- replica schedules -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(schedules(), st.sampled_from(PERIODS), st.integers(1, 150))
def test_change_steps_are_where_the_exactly_rounded_count_changes(schedule, period, n_steps) -> None:
    changes = schedule.changes(period, n_steps)
    assert changes[0][0] == 0 and all(a[0] < b[0] and a[1] != b[1] for a, b in itertools.pairwise(changes))
    exact = [round(schedule.count_exact(k * period)) for k in range(n_steps)]
    assert _expand(changes, n_steps) == exact


@settings(max_examples=100)
@given(schedules(), st.sampled_from(PERIODS), st.integers(1, 150))
def test_change_steps_agree_with_the_float_count_away_from_ties(schedule, period, n_steps) -> None:
    expanded = _expand(schedule.changes(period, n_steps), n_steps)
    times = np.array([float(k * period) for k in range(n_steps)])
    counts = schedule.counts(times)
    clear = np.abs(counts - np.floor(counts) - 0.5) > 1e-6
    assert np.array_equal(np.asarray(expanded)[clear], np.rint(counts)[clear])


def test_a_zero_width_ramp_touching_the_previous_ramp_jumps_after_its_end() -> None:
    # count(t) follows the first ramp whose end is >= t: at t = 1 that is the first ramp.
    schedule = ReplicaSchedule(initial=0).ramp_to(10, 0.0, 1.0).ramp_to(3, 1.0, 1.0)
    changes = dict(schedule.changes(Fraction(1, 10), 20))
    assert changes[10] == 10 and changes[11] == 3
    assert round(schedule.count(1.0)) == 10 and round(schedule.count(1.1)) == 3


def test_the_timeline_holds_every_models_changes_and_no_step_table() -> None:
    config = site({"a": ReplicaSchedule(initial=40).ramp_to(20, 1.0, 2.0), "b": ReplicaSchedule(initial=10)})
    timeline = ReplicaTimeline.build(config, Fraction(1, 10), 400)
    assert timeline.replicas.shape == (len(timeline.steps), 2) and len(timeline.steps) <= 21
    table = replica_table(config, 400, Fraction(1, 10))
    for k in (0, 5, 10, 13, 19, 20, 399):
        assert timeline.at(k).tolist() == table[k].tolist()
    assert timeline.next_change(0) == 11 and timeline.next_change(20) is None
    steps, rows = timeline.from_step(15)
    assert steps[0] == 15 and rows[0].tolist() == table[15].tolist() and steps[1:].tolist() == list(range(16, 21))


# -- training windows --------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 1.0, 1.05, 3.3]), st.sampled_from([0.0, 0.2, 1.0, 9.0])), max_size=3
    ),
    st.sampled_from(PERIODS),
)
def test_training_edges_and_closed_form_equal_the_schedule_power(windows, period) -> None:
    schedule = None
    for i, (start, length) in enumerate(windows):
        run = TrainingRun(trace=flat_trace(200.0 + 10 * i, span_s=0.7 + i), n_gpus=3 + i).at(start, start + length)
        schedule = run if schedule is None else schedule | run
    if schedule is None:
        return
    n_steps = 60
    clock = StepClock(1, period)
    windows_ = TrainingWindows(schedule, clock, n_steps)
    edges = dict.fromkeys(step for step, _, _ in windows_.edges)
    rows = []
    for k in range(n_steps):
        if k in edges:
            for step, index, on in windows_.edges:
                if step == k:
                    windows_.switch((index, on))
        rows.append(windows_.power(clock.times(k, k + 1))[0])
    times = clock.times(0, n_steps)
    assert np.array_equal(np.array(rows), schedule.power(times))
    assert times.tolist() == [float(k * period) for k in range(n_steps)]


# -- batch ramps ---------------------------------------------------------------------------------------


@given(st.integers(1, 100), st.integers(1, 100), st.sampled_from(["0.5", "3", "7.3", "10", "250"]), st.integers(0, 50))
def test_batch_ramp_changes_are_the_steps_where_its_batch_moves(start, extra, rate, first) -> None:
    period = Fraction(1, 10)
    ramp = BatchRamp(start, start + extra, Fraction(rate), first * period)
    changes = dict(ramp.changes(first, period))
    batch, expected = start, {}
    for j in range(1, 20000):
        now = ramp.batch_at((first + j) * period)
        if now != batch:
            expected[first + j] = batch = now
        if batch == ramp.target:
            break
    assert changes == expected


# -- random streams and block lengths -----------------------------------------------------------------


def test_normals_given_back_are_handed_out_again_in_stream_order() -> None:
    stream, reference = NormalStream(np.random.default_rng(7)), np.random.default_rng(7).standard_normal(100)
    first = stream.take(40)
    stream.unused(first[25:])  # a block cut after 25
    second = stream.take(10)
    stream.unused(second[4:])
    rest = stream.take(71)
    assert np.array_equal(np.concatenate((first[:25], second[:4], rest)), reference)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40_000), st.floats(0, 1)), min_size=1, max_size=25),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_a_stream_hands_out_the_generators_normals_in_order_whatever_it_draws_ahead(takes, ahead, seed) -> None:
    """Takes of any size, each keeping any part of what it took (a block cut anywhere): the
    normals kept, joined, are the generator's own sequence, drawn ahead or not."""
    stream = NormalStream(np.random.default_rng(seed), ahead=ahead)
    assert stream.ahead == ahead
    kept = []
    for count, share in takes:
        drawn = stream.take(count)
        assert drawn.shape == (count,)
        used = round(share * count)
        kept.append(drawn[:used].copy())
        stream.unused(drawn[used:])
    stream.close()
    joined = np.concatenate(kept)
    assert np.array_equal(joined, np.random.default_rng(seed).standard_normal(joined.size))


def test_a_closed_stream_refuses_to_hand_out_more() -> None:
    stream = NormalStream(np.random.default_rng(1), ahead=True)
    stream.take(10)
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.take(10)


def test_a_rewinding_stream_cannot_draw_ahead() -> None:
    with pytest.raises(ValueError, match="rewinding stream shares its generator"):
        NormalStream(np.random.default_rng(1), rewind=True, ahead=True)
    assert not NormalStream(np.random.default_rng(1), rewind=True).ahead


def test_drawing_ahead_is_on_with_two_cpus_unless_switched_off(monkeypatch) -> None:
    monkeypatch.setattr(blocks_module, "_usable_cpus", lambda: 2)
    monkeypatch.delenv("G2GSIM_DRAW_AHEAD", raising=False)
    try:
        draw_ahead(None)
        assert draws_ahead()
        monkeypatch.setenv("G2GSIM_DRAW_AHEAD", "0")
        assert not draws_ahead() and not NormalStream(np.random.default_rng(1)).ahead
        monkeypatch.setenv("G2GSIM_DRAW_AHEAD", "maybe")
        with pytest.raises(ValueError, match="G2GSIM_DRAW_AHEAD must be 0/1.*got 'maybe'"):
            draws_ahead()
        monkeypatch.delenv("G2GSIM_DRAW_AHEAD")
        monkeypatch.setattr(blocks_module, "_usable_cpus", lambda: 1)
        assert not draws_ahead()
        draw_ahead(True)
        assert draws_ahead()
        with pytest.raises(TypeError, match="True, False or None, got 'yes'"):
            draw_ahead("yes")  # type: ignore[arg-type]
    finally:
        draw_ahead(None)


def _draw_in_child(seed: int) -> np.ndarray:
    stream = NormalStream(np.random.default_rng(seed), ahead=True)
    return np.concatenate([stream.take(5000).copy(), stream.take(70_000).copy()])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_draws_ahead_on_its_own_thread() -> None:
    """The parent's helper thread is busy when the child forks: the child starts its own."""
    busy = NormalStream(np.random.default_rng(0), ahead=True)
    busy.take(100)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        values = pool.apply_async(_draw_in_child, (11,)).get(timeout=60)
    busy.close()
    assert np.array_equal(values, np.random.default_rng(11).standard_normal(75_000))


def test_a_rewinding_stream_puts_its_generator_back_after_the_normals_used() -> None:
    rng = np.random.default_rng(3)
    stream = NormalStream(rng, rewind=True)
    drawn = stream.take(30)
    stream.unused(drawn[12:])
    after = rng.random(5)  # a consumer that draws from the generator itself
    reference = np.random.default_rng(3)
    assert np.array_equal(reference.standard_normal(12), drawn[:12])
    assert np.array_equal(reference.random(5), after)


def test_block_length_grows_when_blocks_run_out_and_shrinks_when_cut() -> None:
    length = BlockLength(first=16, shortest=4, longest=64)
    for expected in (32, 64, 64):
        length.ran_out()
        assert length.value == expected
    for expected in (32, 16, 8, 4, 4):
        length.cut()
        assert length.value == expected
    with pytest.raises(ValueError, match="shortest <= first <= longest"):
        BlockLength(first=200, shortest=4, longest=64)


def test_block_length_follows_the_rhythm_of_changes() -> None:
    length = BlockLength(first=16, shortest=4, longest=64)
    length.cut(10)  # a command after 10 steps of 16
    assert length.value == 10
    length.ran_out(changed=True)  # the next block ended just where the next command came
    assert length.value == 10
    length.ran_out()  # nothing changed at its end: grow
    assert length.value == 20
    length.cut(2)
    assert length.value == 4  # never below the shortest


class StepByStep(OfflineDatacenter):
    """The same site computing one step at a time."""

    longest_block = 1


def _run(cls, config, plan, horizon: float, seed: int, *, ahead: bool | None = None):
    draw_ahead(ahead)
    try:
        dc = cls("dc", config, FakeSource())
        return Simulation([dc, Script(plan)], horizon, seed=seed).run()
    finally:
        draw_ahead(None)


def _assert_same_run(config, plan, horizon: float, seed: int) -> None:
    """Blocks with the noise drawn ahead on the helper thread, steps with it drawn in place."""
    blocks = _run(OfflineDatacenter, config, plan, horizon, seed, ahead=True)
    steps = _run(StepByStep, config, plan, horizon, seed, ahead=False)
    pd.testing.assert_frame_equal(blocks.tables["dc/state"], steps.tables["dc/state"], check_exact=True)
    pd.testing.assert_frame_equal(blocks.events, steps.events, check_exact=True)


COMMANDS = st.sampled_from(
    [
        SetBatchSize(batch={"a": 128}, target="dc"),
        SetBatchSize(batch={"a": 64, "b": 128}, ramp_up_rate={"a": 40.0, "b": 300.0}, target="dc"),
        SetBatchSize(batch={"b": 8}, target="dc"),
        ShiftReplicas(model="a", delta=-13, target="dc"),
        ShiftReplicas(model="b", delta=3, target="dc"),
        SetPowerCap(cap_w={"a": 300.0}, target="dc"),
        SetPowerCap(cap_w={"a": None}, target="dc"),
    ]
)


@settings(max_examples=16, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 79), COMMANDS), max_size=8),
    st.sampled_from([0.0, 0.02]),
    st.sampled_from([(40, 31), (20, 31), (40, 8)]),
    st.integers(0, 100),
)
def test_blocks_give_the_numbers_of_single_steps(plan, noise, replicas, seed) -> None:
    """Ramps, training edges and commands at any step (cutting blocks short); fleets in the
    normal ITL regime (> 30 replicas), crossing into it, and small."""
    a, b = replicas
    schedule = ReplicaSchedule(initial=a).ramp_to(a + 12, 1.0, 4.0)
    training = TrainingRun(trace=flat_trace(), n_gpus=7).at(2.05, 5.5)
    config = site({"a": schedule, "b": b}, noise_fraction=noise, amplitude=(0.9, 1.1), training=training)
    _assert_same_run(config, [(k / 10, command) for k, command in plan], 8.0, seed)


def test_blocks_with_an_idle_model_give_the_numbers_of_single_steps() -> None:
    """Normal-regime ITL with a model that has no replicas (NaN), cut by commands."""
    config = site({"a": 40, "b": 31, "c": 0}, noise_fraction=0.01, capacity_gpus=256)
    plan = [(0.7, ShiftReplicas(model="c", delta=33, target="dc")), (1.9, SetBatchSize(batch={"a": 8}, target="dc"))]
    _assert_same_run(config, plan, 4.0, 5)
    itl = _run(OfflineDatacenter, config, plan, 4.0, 5).tables["dc/state"].set_index("time_s")["c.itl_s"]
    assert np.isnan(itl[0.7]) and np.isfinite(itl[0.8])


def test_a_shift_refusal_names_the_first_time_a_later_ramp_would_not_fit() -> None:
    schedule = ReplicaSchedule(initial=40).ramp_to(180, 1.0, 2.0)  # 180 + 40 = 220 of 240 GPUs
    dc = OfflineDatacenter("dc", site({"a": schedule, "b": 10}), FakeSource())
    plan = [(0.2, ShiftReplicas(model="b", delta=10, target="dc"))]  # 20 servers left for a: 160
    result = Simulation([dc, Script(plan)], 3.0).run()
    [payload] = result.events[result.events["topic"] == "shift_refused"]["payload"]
    assert payload["reason"].startswith("at t = 1.9 s the site would need 246 GPUs / 31 servers")
    assert round(schedule.count(1.9)) == 166 and math.ceil(166 / 8) + 10 == 31

"""Load shift across sites (SPEC 5.4): conservation, capacity, non-negativity, direction."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from g2gsim.controllers import FeasibleBatches, LoadShiftConfig, LoadShiftController, SiteView, plan_shifts
from g2gsim.datacenter.commands import ShiftReplicas
from g2gsim.testing import FakeSite, FakeSpec, ScriptedGrid, run_components, three_phase

MODELS = {"a": 1, "b": 2, "c": 4, "d": 8}  # label -> GPUs per replica
SIZES = (8, 16, 32, 64)


@st.composite
def sites(draw):
    n = draw(st.integers(2, 4))
    views, feasible = [], {}
    for i in range(n):
        labels = draw(st.lists(st.sampled_from(sorted(MODELS)), min_size=1, max_size=4, unique=True))
        replicas = {m: draw(st.integers(0, 30)) for m in labels}
        used = sum(replicas[m] * MODELS[m] for m in labels)
        capacity = used + draw(st.integers(0, 40))
        v_low = draw(st.floats(0.90, 1.04))
        v_high = v_low + draw(st.floats(0.0, 0.06))
        # batches pinned at a limit often enough to saturate
        batch = {m: draw(st.sampled_from([SIZES[0], SIZES[-1], 32])) for m in labels}
        name = f"s{i}"
        views.append(SiteView(name, v_low, v_high, replicas, {m: MODELS[m] for m in labels}, batch, capacity - used))
        feasible[name] = FeasibleBatches.from_specs({m: FakeSpec(m, SIZES) for m in labels})
    config = LoadShiftConfig(enabled=True, gpus_per_shift=draw(st.sampled_from([1, 4, 8, 16])))
    return views, feasible, config


@given(sites())
def test_shifts_conserve_replicas_respect_capacity_and_never_go_negative(case):
    views, feasible, config = case
    before = copy.deepcopy(views)
    shifts = plan_shifts(views, feasible, config)
    delta: dict[str, Counter] = {v.name: Counter() for v in before}
    for shift in shifts:
        assert shift.n >= 1 and shift.source != shift.destination
        delta[shift.source][shift.model] -= shift.n
        delta[shift.destination][shift.model] += shift.n
    total = Counter()
    for view in before:
        for model, d in delta[view.name].items():
            total[model] += d
    assert all(v == 0 for v in total.values())  # replicas conserved across sites
    for view in before:
        capacity = view.free_gpus + sum(view.replicas[m] * view.gpus_per_replica[m] for m in view.replicas)
        after = {m: view.replicas[m] + delta[view.name][m] for m in view.replicas}
        assert set(delta[view.name]) <= set(view.replicas)
        assert all(count >= 0 for count in after.values())  # never negative
        used_after = sum(after[m] * view.gpus_per_replica[m] for m in after)
        gained = sum(max(d, 0) for d in delta[view.name].values())
        if gained:
            assert used_after <= capacity  # a receiving site never exceeds its capacity


@given(sites())
def test_shifts_only_leave_undervoltage_sites_and_enter_overvoltage_sites(case):
    views, feasible, config = case
    by_name = {v.name: copy.deepcopy(v) for v in views}
    for shift in plan_shifts(views, feasible, config):
        if shift.reason == "undervoltage":
            site = by_name[shift.source]
            assert site.v_low < config.v_min
            assert all(b == SIZES[0] for b in site.batch.values())
        else:
            site = by_name[shift.destination]
            assert site.v_high > config.v_max and site.v_low >= config.v_min
            assert all(b == SIZES[-1] for b in site.batch.values())


def test_undervoltage_moves_the_largest_model_to_the_highest_voltage_site():
    def view(name, v, free):
        return SiteView(name, v, v, {"a": 10, "d": 10}, {"a": 1, "d": 8}, {"a": 8, "d": 8}, free)

    views = [view("low", 0.93, 0), view("mid", 0.99, 100), view("high", 1.01, 100)]
    feasible = {v.name: FeasibleBatches.from_specs({m: FakeSpec(m, SIZES) for m in "ad"}) for v in views}
    [shift] = plan_shifts(views, feasible, LoadShiftConfig(enabled=True, gpus_per_shift=16))
    assert (shift.model, shift.n, shift.source, shift.destination) == ("d", 2, "low", "high")


def test_no_candidate_means_no_shift():
    views = [
        SiteView("low", 0.93, 0.93, {"a": 10}, {"a": 1}, {"a": 8}, 0),
        SiteView("full", 1.0, 1.0, {"a": 10}, {"a": 1}, {"a": 8}, 0),
    ]
    feasible = {v.name: FeasibleBatches.from_specs({"a": FakeSpec("a", SIZES)}) for v in views}
    assert plan_shifts(views, feasible, LoadShiftConfig(enabled=True)) == []


def _controller_run(enabled: bool, steps: int = 4):
    specs = [FakeSpec("a", SIZES, gpus_per_replica=2), FakeSpec("b", SIZES, gpus_per_replica=8)]
    low = FakeSite("low", specs, replicas={"a": 10, "b": 4}, batch={"a": 8, "b": 8}, capacity_gpus=52)
    high = FakeSite("high", specs, replicas={"a": 10, "b": 4}, batch={"a": 8, "b": 8}, capacity_gpus=100)
    volts = np.array([0.93, 1.0] * 3)  # phase-major: bus "x" low, bus "y" fine
    grid = ScriptedGrid("grid", three_phase(["x", "y"]), lambda k: volts, sites={"low": "x", "high": "y"})
    shift = LoadShiftController("shift", ["low", "high"], "grid", LoadShiftConfig(enabled=enabled))
    return low, high, shift, run_components([low, high, grid, shift], steps)


def test_controller_sends_paired_shift_commands_largest_model_first():
    low, high, shift, result = _controller_run(True, steps=8)
    moved = [(c.model, c.delta) for _, c in low.received if isinstance(c, ShiftReplicas)]
    received = [(c.model, c.delta) for _, c in high.received if isinstance(c, ShiftReplicas)]
    # b (8 GPUs/replica) one at a time until "low" runs none, then a (2 GPUs/replica) by 4
    # while "high" has room: 48 free GPUs = 4 x 8 + 2 x (4 x 2)
    assert moved == [("b", -1)] * 4 + [("a", -4)] * 2
    assert received == [(m, -d) for m, d in moved]
    assert result.events_of("load_shift").shape[0] == 6
    assert shift.summary() == {"shifts": 6}


def test_disabled_by_default_sends_nothing():
    _low, _high, _, result = _controller_run(False)
    assert result.commands.empty


def test_reset_then_rerun_gives_identical_commands():
    *_, first = _controller_run(True)
    *_, second = _controller_run(True)
    assert first.commands.equals(second.commands)


def test_validation():
    with pytest.raises(ValueError, match="two or more"):
        LoadShiftController("s", ["only"], "grid")
    with pytest.raises(TypeError):
        LoadShiftController("s", "ab", "grid")
    with pytest.raises(ValidationError):
        LoadShiftConfig(gpus_per_shift=0)
    with pytest.raises(ValidationError):
        LoadShiftConfig(v_min=1.2)
    assert LoadShiftConfig().enabled is False and LoadShiftConfig().gpus_per_shift == 8

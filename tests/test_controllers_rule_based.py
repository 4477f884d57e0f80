"""Rule-based batch-size controller (SPEC 5.3): direction, latency guard, zones, deadband."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from g2gsim.controllers import RuleBasedConfig, RuleBasedController, regulator_zone
from g2gsim.controllers.batching import nearest_batch
from g2gsim.testing import FakeSite, FakeSpec, Probe, Scripted, ScriptedGrid, run_components, three_phase

SIZE_POOL = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


@st.composite
def setups(draw, v_range=(0.85, 1.15), late: bool | None = None, guard: bool | None = None):
    n = draw(st.integers(1, 3))
    specs, batch = [], {}
    for i in range(n):
        sizes = tuple(sorted(draw(st.lists(st.sampled_from(SIZE_POOL), min_size=1, max_size=6, unique=True))))
        specs.append(FakeSpec(f"m{i}", sizes, draw(st.floats(0.02, 0.2))))
        batch[f"m{i}"] = draw(st.sampled_from(sizes))
    steps = draw(st.integers(1, 8))
    n_buses = draw(st.integers(1, 4))
    volts = [
        np.array(draw(st.lists(st.floats(*v_range), min_size=3 * n_buses, max_size=3 * n_buses))) for _ in range(steps)
    ]
    deadlines = np.array([s.itl_deadline_s for s in specs])
    itl = []
    for _ in range(steps):
        if late is None:
            factors = draw(st.lists(st.floats(0.2, 3.0), min_size=n, max_size=n))
        else:
            factors = draw(st.lists(st.floats(1.01, 3.0) if late else st.floats(0.1, 0.99), min_size=n, max_size=n))
        itl.append(deadlines * np.array(factors))
    config = RuleBasedConfig(
        step_size=draw(st.floats(1.0, 200.0)),
        deadband=draw(st.floats(0.0, 0.01)),
        latency_guard=draw(st.booleans()) if guard is None else guard,
    )
    return specs, batch, volts, itl, [f"b{i}" for i in range(n_buses)], config


def simulate(setup):
    specs, batch, volts, itl, buses, config = setup
    dc = FakeSite("dc", specs, replicas={s.model_label: 4 for s in specs}, batch=batch, itl=Scripted(itl))
    grid = ScriptedGrid("grid", three_phase(buses), Scripted(volts), sites={"dc": buses[0]})
    rule = RuleBasedController("rule", "dc", "grid", config)
    probe = Probe(rule, lambda c: c.log_batch)
    result = run_components([dc, grid, rule, probe], len(volts))
    return dc, rule, probe, result


def _batches_per_step(dc, initial, steps):
    """Commanded batch per step (the previous one when the controller sent nothing)."""
    by_time = dict(dc.batch_commands())
    out, last = [], dict(initial)
    for k in range(steps):
        last = {**last, **by_time.get(float(k), {})}
        out.append(dict(last))
    return out


@given(setups(v_range=(0.80, 0.9499)))
def test_never_raises_a_batch_under_undervoltage(setup):
    dc, *_ = simulate(setup)
    last = dict(setup[1])
    for _, batch in dc.batch_commands():
        assert all(batch[m] <= last[m] for m in batch)
        last = batch


@given(setups(v_range=(1.0501, 1.2)))
def test_never_lowers_a_batch_under_overvoltage(setup):
    dc, *_ = simulate(setup)
    last = dict(setup[1])
    for _, batch in dc.batch_commands():
        assert all(batch[m] >= last[m] for m in batch)
        last = batch


@given(setups(guard=True))
def test_latency_guard_never_raises_a_late_model(setup):
    specs, initial, volts, itl, _, _ = setup
    dc, *_ = simulate(setup)
    observed = [dict(initial), *_batches_per_step(dc, initial, len(volts))]
    by_time = dict(dc.batch_commands())
    for k in range(len(volts)):
        command = by_time.get(float(k))
        if command is None:
            continue
        for i, spec in enumerate(specs):
            if itl[k][i] > spec.itl_deadline_s:
                assert command[spec.model_label] <= observed[k][spec.model_label]


@given(setups())
def test_batches_feasible_x_in_bounds_and_only_changes_are_sent(setup):
    specs, initial, _volts, _, _, _ = setup
    dc, _, probe, _ = simulate(setup)
    sizes = {s.model_label: s.feasible_batch_sizes for s in specs}
    last = dict(initial)
    for _, batch in dc.batch_commands():
        assert all(b in sizes[m] for m, b in batch.items())
        assert batch != last  # emitted only if some batch changes
        last = batch
    for _, x in probe.seen:
        for m, value in x.items():
            assert math.log2(sizes[m][0]) <= value <= math.log2(sizes[m][-1])
            assert nearest_batch(sizes[m], value) in sizes[m]


@given(setups(v_range=(0.9501, 1.0499)))
def test_no_action_inside_the_band(setup):
    dc, *_ = simulate(setup)
    assert dc.batch_commands() == []


@given(setups())
def test_reset_then_rerun_gives_identical_commands(setup):
    specs, batch, volts, itl, buses, config = setup
    dc = FakeSite("dc", specs, replicas={s.model_label: 4 for s in specs}, batch=batch, itl=Scripted(itl))
    grid = ScriptedGrid("grid", three_phase(buses), Scripted(volts), sites={"dc": buses[0]})
    rule = RuleBasedController("rule", "dc", "grid", config)
    first, second = run_components([dc, grid, rule], len(volts)), run_components([dc, grid, rule], len(volts))
    assert first.commands.equals(second.commands) and first.events.equals(second.events)


def test_pressure_follows_the_spec():
    p = RuleBasedController.pressure
    assert p(np.array([0.94, 1.06]), 0.95, 1.05, 1e-4) == pytest.approx(0.01)  # undervoltage wins
    assert p(np.array([0.96, 1.07]), 0.95, 1.05, 1e-4) == pytest.approx(-0.02)
    assert p(np.array([0.94995, 1.0]), 0.95, 1.05, 1e-4) == 0.0  # inside the deadband
    assert p(np.array([math.nan, 1.0]), 0.95, 1.05, 1e-4) == 0.0


def _zone_case(config):
    specs = [FakeSpec("a")]
    # bus "far" is deeply under v_min, bus "near" is fine
    entries = three_phase(["near", "far"])
    volts = np.array([1.0, 0.90, 1.0, 0.90, 1.0, 0.90])
    dc = FakeSite("dc", specs, replicas={"a": 4})
    grid = ScriptedGrid("grid", entries, lambda k: volts, sites={"dc": "near"})
    rule = RuleBasedController("rule", "dc", "grid", config)
    run_components([dc, grid, rule], 3)
    return dc.batch_commands()


def test_excluded_buses_and_zone_limit_what_is_observed():
    assert _zone_case(RuleBasedConfig()) != []
    assert _zone_case(RuleBasedConfig(excluded_buses=["FAR"])) == []
    assert _zone_case(RuleBasedConfig(zone=["near"])) == []
    assert _zone_case(RuleBasedConfig(zone=["near", "far"])) != []


def test_a_zone_that_observes_nothing_is_an_error():
    with pytest.raises(Exception, match="observes no bus"):
        _zone_case(RuleBasedConfig(zone=["elsewhere"]))


def test_regulator_zone_helper():
    class Topology:
        def regulator_zones(self):
            return {"creg1": {"814R", "850"}, "creg2": {"852r", "832"}}

    class GridLike:
        def topology(self):
            return Topology()

    assert regulator_zone(Topology(), "CREG1") == frozenset({"814r", "850"})
    assert regulator_zone(GridLike(), "creg2") == frozenset({"852r", "832"})
    with pytest.raises(KeyError, match="creg1"):
        regulator_zone(Topology(), "creg9")


def test_config_validation():
    assert RuleBasedConfig().step_size == 10.0 and RuleBasedConfig().deadband == 1e-4
    with pytest.raises(ValidationError):
        RuleBasedConfig(v_min=1.1)
    with pytest.raises(ValidationError):
        RuleBasedConfig(zone=[])
    with pytest.raises(ValidationError):
        RuleBasedConfig(step_size=-1)
    with pytest.raises(ValidationError):
        RuleBasedConfig(excluded_buses="650")

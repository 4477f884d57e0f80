"""The controller testing kit: stand-ins keep the component contracts, the harness returns typed
commands, the strategies draw valid inputs."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from g2gsim.controllers import OFOBatchController, RuleBasedController
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.commands import SensitivityRequest, SetTaps
from g2gsim.grid.state import GridState, SensitivityReply
from g2gsim.kernel import Command, ComponentError, Controller, LinkSpec
from g2gsim.testing import (
    BATCHES,
    FakeSite,
    FakeSpec,
    Probe,
    ScriptedGrid,
    run_components,
    run_controller,
    three_phase,
)
from g2gsim.testing.strategies import (
    batches,
    itl_scripts,
    itl_values,
    link_specs,
    scripted_grids,
    voltage_scripts,
    voltages,
)

SPECS = [FakeSpec("a", itl_deadline_s=0.08), FakeSpec("b", itl_deadline_s=0.12)]


def _site(**kwargs) -> FakeSite:
    return FakeSite("dc", SPECS, replicas={"a": 4, "b": 2}, **kwargs)


class Asker(Controller):
    """Asks the grid for its sensitivity every step and keeps each reply (the request contract)."""

    def __init__(self) -> None:
        super().__init__("asker", 1)

    def start(self) -> None:
        self.replies = self.ctx.subscribe("grid", "sensitivity/dc")
        self.got: list[SensitivityReply] = []

    def control(self, tick: int) -> Iterable[Command]:
        if self.replies.has_value:
            self.got.append(self.replies.value)
        return [SensitivityRequest(target="grid", site="dc", delta_kw=50.0)]


class Setter(Controller):
    """Sets batch 64 for model a every step; reads the site like any controller."""

    def __init__(self, **links) -> None:
        super().__init__("setter", Fraction(1, 2), **links)

    def start(self) -> None:
        self.site = self.ctx.subscribe("dc")

    def control(self, tick: int) -> Iterable[Command]:
        return [SetBatchSize(target="dc", batch={"a": 64})]


# -- stand-ins ---------------------------------------------------------------------------------
def test_the_fake_site_publishes_the_site_contract_and_obeys_batch_commands() -> None:
    site = _site(itl=lambda k, b: np.array([0.01 * k, np.nan]))
    run_components([site, Setter()], 2)
    assert site.batch_commands()[0] == (0.0, {"a": 64})  # delivered at once, applied at the next step
    box_state = site.last_state
    assert isinstance(box_state, DatacenterState)
    assert box_state.models == ("a", "b") and box_state.batch_of("a") == 64 and box_state.replicas_of("b") == 2
    assert np.isnan(box_state.itl_of("b")) and box_state.itl_of("a") == pytest.approx(0.01)
    with pytest.raises(KeyError, match="unknown model"):
        FakeSite("dc", SPECS, replicas={"c": 1})


def test_the_scripted_grid_takes_fixed_scripted_or_function_voltages() -> None:
    entries = three_phase(["x"])
    fixed = ScriptedGrid("grid", entries, [1.0, 0.99, 0.98])
    table = ScriptedGrid("grid", entries, [[1.0, 1.0, 1.0], [0.9, 0.9, 0.9]])
    function = ScriptedGrid("grid", entries, lambda k: np.full(3, 1 + k / 100))
    seen = {}
    for grid in (fixed, table, function):
        run_components([grid], 3)
        state = grid.last_state
        assert isinstance(state, GridState) and state.index is grid.voltage_index
        seen[id(grid)] = state.voltages.tolist()
    assert seen[id(fixed)] == [1.0, 0.99, 0.98]
    assert seen[id(table)] == [0.9, 0.9, 0.9]  # the last row repeats
    assert seen[id(function)] == pytest.approx([1.02] * 3)
    with pytest.raises(ValueError, match="vector of 3 values"):
        ScriptedGrid("grid", entries, [1.0, 1.0])
    with pytest.raises(ValueError, match="h must have shape"):
        ScriptedGrid("grid", entries, [1.0] * 3, h=np.zeros((2, 3)))


def test_the_scripted_grid_answers_sensitivity_requests_at_once_and_keeps_the_method() -> None:
    h = np.arange(18, dtype=float).reshape(6, 3) * -1e-6
    grid = ScriptedGrid("grid", three_phase(["x", "y"]), np.ones(6), sites={"dc": "x"}, h=h)
    asker = Asker()
    run_components([_site(), grid, asker], 3)
    assert [r.time_s for r in asker.got] == [0.0, 1.0]  # each reply is there the step after asking
    reply = asker.got[0]
    assert (reply.grid, reply.site, reply.delta_kw) == ("grid", "dc", 50.0)
    assert np.array_equal(reply.h, h) and reply.index is grid.voltage_index
    assert grid.sensitivity_calls == 3
    assert np.array_equal(grid.estimate_sensitivity("dc"), h)
    with pytest.raises(KeyError, match="attached: \\['dc'\\]"):
        grid.estimate_sensitivity("elsewhere")


def test_ofo_runs_against_the_stand_ins() -> None:
    grid = ScriptedGrid("grid", three_phase(["x"]), np.full(3, 0.93), sites={"dc": "x"})
    run = run_controller(OFOBatchController("ofo", "dc", "grid"), _site(), grid, horizon_s=20)
    sizes = run.batches()
    assert len(sizes) == 20 and sizes[-1][1]["a"] < 128  # undervoltage: batches come down
    assert grid.sensitivity_calls == 1


def test_taps_apply_at_the_next_step_or_at_once_with_a_resolve() -> None:
    class Tapper(Controller):
        def __init__(self) -> None:
            super().__init__("tapper", 1)

        def control(self, tick: int) -> Iterable[Command]:
            return [SetTaps(target="grid", taps={"creg1a": 1.0 + tick / 100}, resolve=tick == 2)]

    grid = ScriptedGrid("grid", three_phase(["x"]), np.ones(3), taps={"creg1a": 1.0})
    result = run_components([grid, Tapper()], 3)
    assert grid.last_state.taps == {"creg1a": 1.02}  # re-published at once at t = 2
    assert result.summary["grid"]["n_resolves"] == 1


# -- the harness -------------------------------------------------------------------------------
def test_the_harness_returns_typed_commands_that_travel_the_links() -> None:
    link = LinkSpec(delay_s="1.5", loss_probability=0.3)
    run = run_controller(Setter(command_link=link), _site(), horizon_s=10, seed=4, look=lambda c: c.site.tick)
    assert len(run.commands) == 20 and all(isinstance(c.command, SetBatchSize) for c in run.commands)
    dropped = [c for c in run.commands if c.deliver_s is None]
    assert 0 < len(dropped) < 20
    for c in run.delivered():
        assert c.deliver_s == pytest.approx(c.sent_s + 1.5) and (c.source, c.target) == ("setter", "dc")
    assert [t for t, _ in run.seen] == [k / 2 for k in range(20)]
    assert run.of_type(SetTaps) == [] and len(run.batches()) == 20


def test_a_probe_follows_its_controller_period() -> None:
    setter = Setter()
    probe = Probe(setter, lambda c: 1)
    assert probe.period == Fraction(1, 2) and probe.name == "probe_setter"


def test_a_broken_stand_in_is_reported_with_its_name() -> None:
    grid = ScriptedGrid("grid", three_phase(["x"]), lambda k: np.ones(2 if k else 3), sites={"dc": "x"})
    with pytest.raises(ComponentError, match="ScriptedGrid 'grid' failed at t = 1 s.*step 1 gave voltages"):
        run_components([_site(), grid], 3)


# -- strategies --------------------------------------------------------------------------------
@given(
    v=voltages(6, allow_nan=True),
    table=voltage_scripts(3, steps=(2, 5)),
    chosen=batches(["a", "b"], {"a": (8, 16), "b": BATCHES}),
    itl=itl_values([0.08, 0.12], allow_nan=False),
    script=itl_scripts([0.08, 0.12], steps=(1, 3)),
    link=link_specs(tick_s="0.5", max_delay_ticks=4),
)
def test_the_strategies_draw_valid_inputs(v, table, chosen, itl, script, link) -> None:
    assert v.shape == (6,) and np.all((np.isnan(v)) | ((v >= 0.9) & (v <= 1.1)))
    assert 2 <= table.shape[0] <= 5 and table.shape[1] == 3
    assert chosen["a"] in (8, 16) and chosen["b"] in BATCHES
    assert np.all((itl >= 0) & (itl <= np.array([0.24, 0.36])))
    assert script(0).shape == (2,) and script(99).shape == (2,)
    assert (link.delay_s / Fraction(1, 2)).denominator == 1 and link.delay_s <= 2 and link.loss_probability < 1


@given(grid=scripted_grids(["x", "y"], sites={"dc": "x"}, steps=(1, 4)), link=link_specs(tick_s=1, max_delay_ticks=3))
def test_rule_based_batches_stay_feasible_whatever_the_voltages_and_the_link(grid, link) -> None:
    rule = RuleBasedController("rule", "dc", "grid", command_link=link, measurement_link=link)
    run = run_controller(rule, _site(), grid, horizon_s=6)
    for _, chosen in run.batches():
        assert set(chosen) <= {"a", "b"} and set(chosen.values()) <= set(BATCHES)


@given(st.data())
def test_a_drawn_script_replays_identically(data) -> None:
    table = data.draw(voltage_scripts(3, steps=(1, 6)))
    a = ScriptedGrid("grid", three_phase(["x"]), table, sites={"dc": "x"})
    b = ScriptedGrid("grid", three_phase(["x"]), table, sites={"dc": "x"})
    run_a = run_controller(OFOBatchController("ofo", "dc", "grid"), _site(), a, horizon_s=6)
    run_b = run_controller(OFOBatchController("ofo", "dc", "grid"), _site(), b, horizon_s=6)
    assert run_a.batches() == run_b.batches()

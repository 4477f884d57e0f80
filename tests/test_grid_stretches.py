"""Quiet stretches stepped at once by a site and its grid give the results of their steps one by one.

Between kernel events (a controller's step, a schedule's change) a lockstep group of sites
and their grid may step a stretch of ticks in one call per member (:mod:`g2gsim.kernel.lockstep`):
the datacenter publishes the stretch's power rows, the grid writes, solves, reads and records
each step from them. These tests run the same scenarios with stretches and without
(``OpenDSSGrid.stretch_steps`` forced to 0) and compare every table and event exactly.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest

from g2gsim.grid.commands import SetTaps
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel import ComponentError, Simulation
from g2gsim.scenarios import load_scenario, run_scenario
from test_grid_opendss import FakeSite, Scripted, ieee13

pytestmark = pytest.mark.usefixtures("trusted_feeder_dirs")


class StretchingSite(FakeSite):
    """The fake site of the grid tests, stepping quiet stretches at once as a datacenter does
    (and offering the rows of a stretch while its group decides)."""

    def stretch_steps(self, tick: int, limit: int) -> int:
        if not self._box.stretchable:
            return 0
        period = self.ctx.clock.ticks(self.period)
        ticks = range(tick, tick + limit * period, period)
        self._box.offer_stretch(ticks, np.array([np.asarray(self._power(self.ctx.seconds(t))) * 1e3 for t in ticks]))
        return limit

    def step_stretch(self, tick: int, count: int) -> None:
        period = self.ctx.clock.ticks(self.period)
        ticks = range(tick, tick + count * period, period)
        times = [self.ctx.seconds(t) for t in ticks]
        rows = np.array([np.asarray(self._power(t), dtype=float) * 1e3 for t in times])
        self.step(ticks[-1])  # publishes the last step's state
        self._box.publish_stretch(ticks, self._box.value, rows)


def _wave(t: float) -> tuple[float, float, float]:
    return (900.0 + 40.0 * np.sin(t), 1000.0 + 25.0 * t, 950.0 - 30.0 * np.cos(3.0 * t))


def _not_finite_at(when: float):
    def power(t: float) -> tuple[float, float, float]:
        a, b, c = _wave(t)
        return (a, float("nan") if abs(t - when) < 1e-9 else b, c)

    return power


def _counting(monkeypatch: pytest.MonkeyPatch, *, stretches: bool) -> list[int]:
    """Stretch steps the grids take (or none: stretches off, every tick stepped on its own)."""
    taken: list[int] = []
    original = OpenDSSGrid.step_stretch

    def counted(self: OpenDSSGrid, tick: int, count: int) -> None:
        taken.append(count)
        original(self, tick, count)

    monkeypatch.setattr(OpenDSSGrid, "step_stretch", counted)
    if not stretches:
        _without_stretches(monkeypatch)
    return taken


def _assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=True, obj=key)


def _fake_run(site_type: type, power: Any, horizon_s: float = 4.0):
    taps = {"creg1a": 1.05, "creg1b": 1.0375, "creg1c": 1.0625}
    components = [
        site_type("dc", power),
        OpenDSSGrid("grid", ieee13(measurement_tolerance=1e-6)),
        Scripted("ops", {2.0: [SetTaps(taps=taps, target="grid")]}, period=Fraction(1, 2)),
    ]
    return Simulation(components, horizon_s=horizon_s, seed=3).run()


def test_a_stretching_site_and_grid_match_their_steps_one_by_one(monkeypatch) -> None:
    """Stretches between a controller's steps (every 0.5 s, a tap change at 2 s, tight solves
    at the measured steps): every table and event equal to the same run without stretches."""
    taken = _counting(monkeypatch, stretches=True)
    stretched = _fake_run(StretchingSite, _wave)
    # each stretch runs from the tick after a controller step to its next step (the group's
    # slot comes first in that tick), the last one to the horizon; the grid applies the tap
    # change of 2 s in a step of its own, and stretches from the tick after it
    assert taken == [5, 5, 5, 5, 4, 5, 5, 4]
    monkeypatch.undo()
    none = _counting(monkeypatch, stretches=False)
    stepped = _fake_run(StretchingSite, _wave)
    assert none == []
    _assert_same_tables(stretched.tables, stepped.tables)
    pd.testing.assert_frame_equal(stretched.events, stepped.events, check_exact=True)


def test_a_grid_stretches_with_a_site_of_another_period(monkeypatch) -> None:
    """A site stepping every second (its own group) holds its newest sample over the grid's stretches."""
    taken = _counting(monkeypatch, stretches=True)

    def slow_site(name: str, power: Any) -> FakeSite:
        return FakeSite(name, power, period=Fraction(1))

    stretched = _fake_run(slow_site, _wave)
    assert taken
    monkeypatch.undo()
    _counting(monkeypatch, stretches=False)
    _assert_same_tables(stretched.tables, _fake_run(slow_site, _wave).tables)


def test_a_linearised_grid_stretches_on_its_own_model(monkeypatch) -> None:
    """The linear model reads each step's loads (a PV generator's profile too), not the last ones."""
    from g2gsim.grid.config import GeneratorAttachment
    from g2gsim.grid.linearized import LinearizedOpenDSSGrid

    pv = GeneratorAttachment(name="pv", bus="675", profile={"kind": "synthetic_pv", "peak_kw": 300.0})

    def run() -> dict[str, pd.DataFrame]:
        grid = LinearizedOpenDSSGrid("grid", ieee13(generators=[pv]))
        components = [StretchingSite("dc", _wave), grid, Scripted("ops", {}, period=Fraction(1))]
        return Simulation(components, horizon_s=6.0).run().tables

    taken = _counting(monkeypatch, stretches=True)
    stretched = run()
    assert sum(taken) > 40
    monkeypatch.undo()
    _counting(monkeypatch, stretches=False)
    stepped = run()
    _assert_same_tables(stretched, stepped)
    assert stepped["grid/voltages"].drop(columns="time_s").diff().abs().to_numpy()[1:].max() > 0


def test_power_that_is_not_finite_inside_a_stretch_fails_at_its_step(monkeypatch) -> None:
    """The error names the step's time and site, as step by step; the steps before it are recorded."""
    _counting(monkeypatch, stretches=True)
    stretched_grid: dict[str, Any] = {}

    def run(site_type: type) -> str:
        site = site_type("dc", _not_finite_at(1.3))
        grid = OpenDSSGrid("grid", ieee13())
        with pytest.raises(ComponentError) as failure:
            Simulation([site, grid, Scripted("ops", {}, period=Fraction(1, 2))], horizon_s=3).run()
        stretched_grid[site_type.__name__] = grid.tables()
        return str(failure.value)

    message = run(StretchingSite)
    assert "'grid' failed at t = 1.3 s" in message
    assert "t = 1.3 s: datacenter 'dc' power is not finite" in message
    assert message == run(FakeSite)
    _assert_same_tables(stretched_grid["StretchingSite"], stretched_grid["FakeSite"])
    assert len(stretched_grid["FakeSite"]["voltages"]) == 13  # steps at 0.0 .. 1.2 s


@pytest.mark.parametrize(
    ("name", "horizon_s"),
    [
        ("ieee13_ofo_tapchange", 30.0),
        ("ieee13_baseline_notap", 30.0),
        ("ieee123_storage_pv", 30.0),
        ("ieee13_ofo_event", 150.0),
    ],
)
def test_presets_match_with_and_without_stretches(monkeypatch, name: str, horizon_s: float) -> None:
    """Real datacenters (noise, blocks, commands), OFO, taps, batteries with a queued reader,
    a grid solving on change with an OFO woken by its solves."""
    scenario = load_scenario(name).with_overrides(horizon_s=horizon_s)
    taken = _counting(monkeypatch, stretches=True)
    stretched = run_scenario(scenario, plots=False)
    assert taken
    monkeypatch.undo()
    _counting(monkeypatch, stretches=False)
    stepped = run_scenario(scenario, plots=False)
    wall = {"wall_s"}
    assert {k: v for k, v in stretched.metrics.items() if k not in wall} == {
        k: v for k, v in stepped.metrics.items() if k not in wall
    }
    _assert_same_tables(stretched.result.tables, stepped.result.tables)
    pd.testing.assert_frame_equal(stretched.result.events, stepped.result.events, check_exact=True)


def test_timing_counts_stretches_for_their_component(monkeypatch) -> None:
    """With timing on, a stretch's steps are the grid's own time (its solves are in it), not the kernel's."""
    taken = _counting(monkeypatch, stretches=True)
    components = [StretchingSite("dc", _wave), OpenDSSGrid("grid", ieee13())]
    result = Simulation(components, horizon_s=4.0).run(timing=True)
    assert taken and sum(taken) > 30  # most of the 40 grid steps are inside stretches
    own = result.meta["timing_s"]
    solve_s = result.meta["summary"]["grid"]["solve_s"]
    assert own["grid"] >= solve_s > 0
    assert own["dc"] > 0


def _preset_with_script(script: dict[float, list[Any]], horizon_s: float = 4.0) -> Simulation:
    """IEEE 13 baseline with a scripted controller (every 0.5 s) next to it."""
    from g2gsim.scenarios.build import build_simulation

    built = build_simulation(load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=horizon_s))
    scripted = Scripted("ops", script, period=Fraction(1, 2))
    return Simulation([*built.simulation.components, scripted], horizon_s=horizon_s, seed=0)


def _without_stretches(monkeypatch: pytest.MonkeyPatch) -> None:
    from g2gsim.kernel import lockstep

    monkeypatch.setattr(lockstep, "_stretch", lambda *args: 0)


def test_commands_applied_as_a_stretch_begins_match_their_steps(monkeypatch) -> None:
    """A batch change and a ramp-up (a process of its own, started by the command) applied at
    the first tick of a stretch: every table, event and command as step by step."""
    from g2gsim.datacenter.commands import SetBatchSize

    script = {
        1.0: [SetBatchSize(batch={"Llama-3.1-8B": 64}, target="dc")],
        2.0: [
            SetBatchSize(
                batch={"Llama-3.1-70B": 32, "Llama-3.1-8B": 128}, ramp_up_rate={"Llama-3.1-8B": 200.0}, target="dc"
            )
        ],
    }
    taken = _counting(monkeypatch, stretches=True)
    stretched = _preset_with_script(script).run()
    assert sum(taken) >= 30  # of the 40 grid steps (none while the ramp moves the batch)
    monkeypatch.undo()
    _without_stretches(monkeypatch)
    stepped = _preset_with_script(script).run()
    _assert_same_tables(stretched.tables, stepped.tables)
    pd.testing.assert_frame_equal(stretched.events, stepped.events, check_exact=True)
    pd.testing.assert_frame_equal(stretched.commands, stepped.commands, check_exact=True)


def test_a_bad_command_at_a_stretch_start_fails_as_its_step_would(monkeypatch) -> None:
    """Applied while the group asks its members for a stretch, a rejected command ends the run
    at its tick with the site named, and the steps before it recorded, as step by step."""
    from g2gsim.datacenter.commands import SetBatchSize

    script = {1.5: [SetBatchSize(batch={"Llama-3.1-8B": 100}, target="dc")]}

    def failure(simulation: Simulation) -> tuple[str, int]:
        with pytest.raises(ComponentError) as raised:
            simulation.run()
        grid = next(c for c in simulation.components if c.name == "grid")
        return str(raised.value), len(grid.tables()["voltages"])

    stretched = failure(_preset_with_script(script))
    _without_stretches(monkeypatch)
    assert stretched == failure(_preset_with_script(script))
    assert "'dc' failed at t = 1.6 s" in stretched[0] and "batch 100" in stretched[0]


def test_a_grid_solving_on_change_holds_stretches_until_its_loads_move(monkeypatch) -> None:
    """Solve-on-change: a stretch keeps the last solve up to the step whose loads moved past the
    threshold (a PV profile moves them too); that step solves on its own, waking a reader."""
    from g2gsim.grid.config import GeneratorAttachment, SolveOnChange

    pv = GeneratorAttachment(name="pv", bus="675", profile={"kind": "synthetic_pv", "peak_kw": 300.0})

    def run() -> Any:
        grid = OpenDSSGrid("grid", ieee13(generators=[pv], solve=SolveOnChange(on_change_kw=30.0)))
        components = [StretchingSite("dc", _wave), grid, Scripted("ops", {}, period=Fraction(1))]
        return Simulation(components, horizon_s=8.0).run()

    taken = _counting(monkeypatch, stretches=True)
    stretched = run()
    summary = stretched.meta["summary"]["grid"]
    assert sum(taken) > 20 and 3 < summary["n_solves"] < 40 and summary["n_skipped_solves"] > 20
    monkeypatch.undo()
    _counting(monkeypatch, stretches=False)
    stepped = run()
    _assert_same_tables(stretched.tables, stepped.tables)
    assert stretched.meta["summary"]["grid"] == {**stepped.meta["summary"]["grid"], "solve_s": summary["solve_s"]}

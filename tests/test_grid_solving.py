"""How the OpenDSS grid solves: on change instead of every period, the run's solver settings,
and a retry (an event) for a power flow that does not converge."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from g2gsim.grid.commands import SetTaps
from g2gsim.grid.config import GeneratorAttachment, GridConfig, StorageSpec, SyntheticPV
from g2gsim.grid.engine import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel import Command, Controller
from test_grid_opendss import IEEE13_TAPS, FakeSite, Scripted, ieee13, run


class Counter(Controller):
    """Counts the grid states it is woken by (an on-change controller)."""

    def __init__(self) -> None:
        super().__init__("counter", 0.1, trigger="on_change")
        self.woken: list[float] = []

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.woken = []

    def start(self) -> None:
        self.box = self.ctx.subscribe("grid")

    def control(self, tick: int) -> list[Command]:
        self.woken.append(round(self.ctx.seconds(tick), 6))
        return []


def _step_power(t: float) -> tuple[float, float, float]:
    """1000 kW per phase, +10 kW at 1.0 s, +1 kW per step from 1.5 s (a slow drift)."""
    kw = 1000.0 + (10.0 if t >= 1.0 else 0.0) + (round((t - 1.5) * 10) + 1 if t >= 1.5 else 0.0)
    return (kw, kw, kw)


def test_on_change_solves_only_when_a_load_moved_past_the_threshold() -> None:
    grid = OpenDSSGrid("grid", ieee13(solve={"on_change_kw": 5.0}))
    counter = Counter()
    result = run([grid, FakeSite("dc", _step_power), counter], horizon_s=2.4)
    # solves at 0 (first), 1.0 (+10 kW), 2.0 (drift 1.5..2.0 reaches 6 kW > 5 since 1.0's solve)
    assert counter.woken == [0.0, 1.0, 2.0]
    summary = result.meta["summary"]["grid"]
    assert summary["n_steps"] == 24
    assert summary["n_skipped_solves"] == 21
    assert summary["n_solves"] == 1 + 3  # the reset solve and three steps
    voltages = result.table("grid/voltages")
    assert len(voltages) == 24  # every step is recorded, held ones with the last solve's voltages
    values = voltages.drop(columns="time_s").to_numpy()
    assert np.array_equal(values[1:10], np.repeat(values[:1], 9, axis=0))
    assert not np.array_equal(values[10], values[0])
    power = result.table("grid/site_power")
    assert power["kw_a"].iloc[19] == 1010.0  # held: the loads of the solve at 1.0
    assert power["kw_a"].iloc[20] == 1016.0


def test_every_period_is_the_default_and_matches_on_change_at_zero_movement() -> None:
    assert ieee13().solve is None
    assert ieee13(solve="every_period").solve is None
    every = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc")], horizon_s=0.5)
    held = run([OpenDSSGrid("grid", ieee13(solve={"on_change_kw": 1.0})), FakeSite("dc")], horizon_s=0.5)
    assert held.meta["summary"]["grid"]["n_skipped_solves"] == 4
    held_rows = held.table("grid/voltages").drop(columns="time_s").to_numpy()
    first = every.table("grid/voltages").drop(columns="time_s").to_numpy()[0]
    assert (held_rows == first).all()  # re-solving the same loads would move them within the tolerance


def test_a_pending_command_forces_a_solve() -> None:
    grid = OpenDSSGrid("grid", ieee13(solve={"on_change_kw": 50.0}))
    taps = Scripted("taps", {0.5: [SetTaps(taps={"a": 1.0})]})  # sent at 0.5, applied at the step at 0.6
    result = run([grid, FakeSite("dc"), taps], horizon_s=1.0)
    assert result.meta["summary"]["grid"]["n_skipped_solves"] == 8  # all but 0 and 0.6
    table = result.table("grid/taps")
    assert table["creg1a"].iloc[5] == IEEE13_TAPS["creg1a"]
    assert table["creg1a"].iloc[6] == 1.0


def test_a_moving_profile_counts_as_a_load_move() -> None:
    pv = GeneratorAttachment(name="pv", bus="675", profile=SyntheticPV(peak_kw=3000.0, profile=0))
    grid = OpenDSSGrid("grid", ieee13(solve={"on_change_kw": 1e-6}, generators=[pv]))
    result = run([grid, FakeSite("dc")], horizon_s=1.0)
    assert result.meta["summary"]["grid"]["n_skipped_solves"] == 0


def test_on_change_solves_are_refused_with_storage() -> None:
    battery = StorageSpec(name="bat", bus="675", rated_kw=500, rated_kwh=1000)
    with pytest.raises(ValueError, match="on_change_kw cannot be used with storage"):
        ieee13(solve={"on_change_kw": 5.0}, storage=[battery])
    with pytest.raises(ValueError, match="on_change_kw"):
        GridConfig(feeder="ieee13", solve={"on_change_kw": -1})


def test_solver_settings_are_options_and_defaults_are_restored() -> None:
    tight = OpenDSSGrid("grid", ieee13(tolerance=1e-8, max_iterations=60))
    run([tight, FakeSite("dc")], horizon_s=0.2)
    assert tight.engine.solver_settings() == (1e-8, 60)
    default = OpenDSSGrid("grid", ieee13())
    default.use_engine(tight.engine)  # the same engine: the defaults are put back
    run([default, FakeSite("dc")], horizon_s=0.2)
    assert default.engine.solver_settings() == (DEFAULT_TOLERANCE, DEFAULT_MAX_ITERATIONS)
    with pytest.raises(ValueError):
        ieee13(max_iterations=0)


def test_a_solve_that_does_not_converge_is_retried_and_reported() -> None:
    # one iteration cannot meet 1e-10 after a load step: every such solve is retried
    grid = OpenDSSGrid("grid", ieee13(tolerance=1e-10, max_iterations=1))
    result = run([grid, FakeSite("dc", lambda t: (1000.0 + 300.0 * t,) * 3)], horizon_s=0.5)
    retries = result.events_of("solve_retry")
    assert len(retries) == result.meta["summary"]["grid"]["n_solve_retries"] > 0
    facts = retries["payload"].iloc[0]
    assert facts["max_iterations"] == 1 and facts["retry_max_iterations"] == 500
    assert grid.engine.solver_settings() == (1e-10, 1)  # the run's settings are back

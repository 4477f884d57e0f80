"""A sensitivity that solver noise cannot move: the estimate solves at a tight tolerance, so H is
the same whatever the run's power-flow tolerance, and a power flow that does not converge after
a tap change is retried (an event) instead of ending the run."""

from __future__ import annotations

import numpy as np
import pytest

from g2gsim.grid.commands import SetTaps
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.scenarios import build_simulation, load_scenario
from test_grid_opendss import FakeSite, Scripted, drive, ieee13


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _ieee34(horizon_s: float, **grid: float) -> tuple[object, dict[str, object]]:
    overrides = {f"grid.{key}": value for key, value in grid.items()}
    built = build_simulation(load_scenario("ieee34_ofo_tapchange").with_overrides(horizon_s=horizon_s, **overrides))
    result = built.simulation.run()
    ofos = {c.name: c for c in built.simulation.components if c.name.startswith("ofo_")}
    return result, ofos


def test_ofo_gets_the_same_sensitivity_at_loose_and_tight_run_tolerances() -> None:
    _, loose = _ieee34(1.0, tolerance=1e-4)
    _, tight = _ieee34(1.0, tolerance=1e-8)
    assert sorted(loose) == ["ofo_downstream", "ofo_upstream"]
    for name, ofo in loose.items():
        # estimated at the run's own 1e-4 tolerance, H was about 1 % off
        assert _relative(ofo.sensitivity, tight[name].sensitivity) < 1e-6


def test_the_estimate_after_a_tap_change_does_not_depend_on_the_run_tolerance() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    taps = Scripted("taps", {0.5: [SetTaps(taps={"a": 1.05}, resolve=True)]})
    drive([grid, FakeSite("dc", (1500.0, 1200.0, 1400.0)), taps], 0.6)
    h_loose = grid.estimate_sensitivity("dc")
    assert grid.engine.solver_settings() == (1e-4, 15)  # the run's settings are back
    grid.engine.set_solver_settings(1e-8, 15)
    h_tight = grid.estimate_sensitivity("dc")
    assert _relative(h_loose, h_tight) < 1e-6


@pytest.mark.slow
def test_ieee34_ofo_keeps_its_batches_through_the_tap_change_at_a_tight_tolerance() -> None:
    # 1e-10 with OpenDSS's 15 iterations does not converge after the 1800 s tap change: those
    # solves are retried with more iterations (events), and the batches are those of a 1e-7 run
    horizon = 1900.0
    tight, tight_ofos = _ieee34(horizon, tolerance=1e-10, max_iterations=15)
    loose, _ = _ieee34(horizon, tolerance=1e-7)
    retries = tight.events_of("solve_retry")
    assert len(retries) > 0 and retries["time_s"].min() >= 1800.0
    assert len(loose.events_of("solve_retry")) == 0
    for name in tight_ofos:
        a, b = tight.table(f"{name}/ofo"), loose.table(f"{name}/ofo")
        batches = [c for c in a.columns if c.startswith("batch.")]
        assert len(a) == 1900 and a[batches].equals(b[batches])


@pytest.mark.slow
def test_ieee34_ofo_gives_one_batch_trajectory_at_power_flow_tolerances_1e4_and_1e8() -> None:
    # the preset solves OFO's measurement steps (every 1 s) at 1e-8 whatever the run's tolerance
    loose, ofos = _ieee34(3600.0, tolerance=1e-4)
    tight, _ = _ieee34(3600.0, tolerance=1e-8)
    for name in ofos:
        a, b = loose.table(f"{name}/ofo"), tight.table(f"{name}/ofo")
        batches = [c for c in a.columns if c.startswith("batch.")]
        assert len(a) == 3600 and a[batches].equals(b[batches])
    # the voltages of the other steps keep the run's tolerance: the two runs record different ones
    va, vb = (r.table("grid/voltages").drop(columns="time_s").to_numpy() for r in (loose, tight))
    assert 1e-7 < np.max(np.abs(va - vb)) < 1e-3


def test_measurement_settings_are_validated() -> None:
    from pydantic import ValidationError

    from g2gsim.grid.config import GridOptions

    assert GridOptions(feeder="ieee13", measurement_tolerance=1e-8).measurement_period_s is None  # None: every 1 s
    with pytest.raises(ValidationError, match="measurement_tolerance"):
        GridOptions(feeder="ieee13", measurement_tolerance=0.0)
    with pytest.raises((ValidationError, ValueError), match="measurement_period_s"):
        GridOptions(feeder="ieee13", measurement_period_s=-1)

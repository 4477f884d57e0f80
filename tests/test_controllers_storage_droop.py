"""Local-voltage storage droop (SPEC 5.5): the droop law's properties and the window statistics."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from g2gsim.controllers import DroopStorage, StorageDroopConfig, StorageDroopController, droop_output
from g2gsim.grid.commands import SetStoragePower
from g2gsim.grid.config import StorageSpec
from g2gsim.testing import ScriptedGrid, run_components, three_phase


@st.composite
def laws(draw):
    deadband = draw(st.floats(0.0, 0.02))
    limit = draw(st.floats(1.0, 1000.0))
    gain = draw(st.floats(1.0, 1e5))
    return {"v_ref": draw(st.floats(0.95, 1.05)), "deadband": deadband, "gain": gain, "limit": limit}


@given(laws(), st.floats(0.0, 0.02))
def test_zero_inside_the_deadband(law, offset):
    v = law["v_ref"] + min(offset, law["deadband"]) * 0.999
    assert droop_output(v, **law) == 0.0
    assert droop_output(law["v_ref"] - min(offset, law["deadband"]) * 0.999, **law) == 0.0


@given(laws(), st.floats(0.0, 0.2))
def test_odd_symmetric_around_v_ref(law, d):
    assert droop_output(law["v_ref"] + d, **law) == pytest.approx(-droop_output(law["v_ref"] - d, **law), abs=1e-9)


@given(laws(), st.floats(0.7, 1.3), st.floats(0.7, 1.3), st.booleans())
def test_monotone_in_the_error_and_within_the_rating(law, v1, v2, allow_negative):
    lo, hi = sorted((v1, v2))
    out_lo = droop_output(lo, **law, allow_negative=allow_negative)  # larger error e = v_ref - v
    out_hi = droop_output(hi, **law, allow_negative=allow_negative)
    assert out_lo >= out_hi
    for out in (out_lo, out_hi):
        assert -law["limit"] <= out <= law["limit"]
        if not allow_negative:
            assert out >= 0.0


def test_droop_law_values():
    law = {"v_ref": 1.0, "deadband": 0.005, "gain": 300 / 0.045, "limit": 300.0}
    assert droop_output(0.97, **law) == pytest.approx(300 / 0.045 * 0.025)
    assert droop_output(0.90, **law) == 300.0
    assert droop_output(1.10, **law) == -300.0
    assert droop_output(1.10, **law, allow_negative=False) == 0.0


# -- the controller -------------------------------------------------------------------------
STEPS = [0.96, 0.99, 1.0, 0.93, 0.97]  # bus "s" phase minimum at each 0.2 s grid step


def _grid():
    def voltages(k):
        v = STEPS[k % len(STEPS)]
        return np.array([v, 1.0, v + 0.01, 1.0, v + 0.02, 1.0])  # phase-major over buses s, t

    return ScriptedGrid("grid", three_phase(["s", "t"]), voltages, period=Fraction(1, 5))


def _run(config, storage=None, horizon=3):
    grid = _grid()
    storage = storage or [DroopStorage(name="bat", bus="S", rated_kw=250.0, rated_kva=300.0)]
    droop = StorageDroopController("droop", "grid", storage, config)
    result = run_components([grid, droop], horizon)
    return [c for _, c in grid.received if isinstance(c, SetStoragePower)], result


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [
        # the first step sees only t = 0; later steps see the five states since the previous step
        ("minimum", [0.96, min(STEPS), min(STEPS)]),
        ("mean", [0.96, float(np.mean([0.99, 1.0, 0.93, 0.97, 0.96])), float(np.mean([0.99, 1.0, 0.93, 0.97, 0.96]))]),
        ("latest", [0.96, 0.96, 0.96]),
    ],
)
def test_window_statistic_over_the_states_since_the_last_step(statistic, expected):
    config = StorageDroopConfig(voltage_statistic=statistic)
    commands, result = _run(config)
    gain = 300.0 / (0.05 - 0.005)
    want = [droop_output(v, v_ref=1.0, deadband=0.005, gain=gain, limit=300.0) for v in expected]
    assert [c.kvar for c in commands] == pytest.approx(want)
    assert all(c.kw == 0.0 and c.storage == "bat" for c in commands)
    events = result.events_of("storage_droop")
    assert len(events) == 3


def test_pv_mode_commands_kw_within_rated_kw():
    commands, _ = _run(StorageDroopConfig(mode="pv", droop_gain_per_pu=1e6))
    assert all(c.kvar == 0.0 and 0 < c.kw <= 250.0 for c in commands)


def test_max_output_caps_the_limit():
    commands, _ = _run(StorageDroopConfig(max_abs_output=10.0, droop_gain_per_pu=1e6))
    assert all(abs(c.kvar) <= 10.0 for c in commands)


def test_grid_storage_spec_is_accepted():
    spec = StorageSpec(name="bat_z1", bus="s", rated_kw=250.0, rated_kva=300.0, rated_kwh=500.0)
    commands, _ = _run(StorageDroopConfig(), storage=[spec])
    assert commands and commands[0].storage == "bat_z1"
    assert max(abs(c.kvar) for c in commands) <= 300.0


def test_reset_then_rerun_gives_identical_commands():
    _, first = _run(StorageDroopConfig(voltage_statistic="mean"))
    _, second = _run(StorageDroopConfig(voltage_statistic="mean"))
    assert first.commands.equals(second.commands)


def test_unobserved_bus_is_an_error():
    with pytest.raises(KeyError, match="does not observe"):
        _run(StorageDroopConfig(), storage=[DroopStorage(name="bat", bus="nowhere", rated_kw=1.0)])


def test_config_validation():
    cfg = StorageDroopConfig()
    assert (cfg.mode, cfg.v_ref, cfg.deadband_pu, cfg.full_output_voltage_error_pu) == ("qv", 1.0, 0.005, 0.05)
    assert cfg.allow_negative_output and cfg.voltage_statistic == "minimum"
    with pytest.raises(ValidationError, match="deadband"):
        StorageDroopConfig(deadband_pu=0.06)
    with pytest.raises(ValidationError):
        StorageDroopConfig(mode="xy")
    with pytest.raises(ValidationError):
        StorageDroopConfig(voltage_statistic="median")
    with pytest.raises(ValidationError):
        DroopStorage(name="b", bus="x", rated_kw=10.0, rated_kva=5.0)
    with pytest.raises(ValueError):
        StorageDroopController("d", "grid", [])
    with pytest.raises(ValueError, match="twice"):
        StorageDroopController("d", "grid", ["a", "A"])
    assert math.isfinite(cfg.v_ref)

"""Voltage metrics of SPEC 6 on hand-made voltage tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from g2gsim.metrics import voltage_metrics


def _table(times: list[float], columns: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame({"time_s": times, **columns})


def test_hand_computed_violation_figures() -> None:
    # dt = 0.5 s. t=0: fine. t=0.5: 671.1 at 0.94 (0.01 under). t=1.0: 671.1 at 0.93 (0.02)
    # and 675.2 at 1.07 (0.02 over). t=1.5: fine.
    table = _table(
        [0.0, 0.5, 1.0, 1.5],
        {"671.1": [1.0, 0.94, 0.93, 0.96], "675.2": [1.0, 1.0, 1.07, 1.04]},
    )
    m = voltage_metrics(table)
    assert m["violation_time_s"] == pytest.approx(1.0)  # two violated states x 0.5 s
    assert m["integral_violation_pu_s"] == pytest.approx((0.01 + 0.04) * 0.5)
    assert m["worst_vmin"] == pytest.approx(0.93)
    assert m["worst_vmax"] == pytest.approx(1.07)
    assert m["n_grid_states"] == 4
    assert m["grid_dt_s"] == pytest.approx(0.5)


def test_nan_phases_are_ignored_and_bounds_are_parameters() -> None:
    table = _table([0.0, 1.0, 2.0], {"a.1": [0.97, 0.97, 0.97], "b.2": [np.nan, 0.5, np.nan]})
    m = voltage_metrics(table, v_min=0.98, v_max=1.02)
    assert m["violation_time_s"] == pytest.approx(3.0)
    assert m["integral_violation_pu_s"] == pytest.approx(3 * 0.01 + 0.48)
    assert m["worst_vmin"] == pytest.approx(0.5)
    clean = voltage_metrics(_table([0.0, 1.0], {"a.1": [1.0, np.nan]}))
    assert clean["violation_time_s"] == 0.0 and clean["integral_violation_pu_s"] == 0.0


def test_dt_is_the_median_step() -> None:
    # One long gap must not inflate dt: steps 0.1, 0.1, 5.0 -> median 0.1.
    table = _table([0.0, 0.1, 0.2, 5.2], {"x.1": [0.9, 0.9, 0.9, 0.9]})
    m = voltage_metrics(table)
    assert m["grid_dt_s"] == pytest.approx(0.1)
    assert m["violation_time_s"] == pytest.approx(0.4)


def test_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        voltage_metrics(_table([0.0], {"x.1": [1.0]}))
    with pytest.raises(ValueError, match="time_s"):
        voltage_metrics(pd.DataFrame({"x.1": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="below"):
        voltage_metrics(_table([0.0, 1.0], {"x.1": [1.0, 1.0]}), v_min=1.1, v_max=1.0)


def test_a_window_scores_only_its_states() -> None:
    # dt = 0.5 s; a violation at 0.5 s (warm-up) and at 2.0 s.
    table = _table([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], {"x.1": [1.0, 0.9, 1.0, 1.0, 0.94, 1.0]})
    whole = voltage_metrics(table)
    assert whole["violation_time_s"] == pytest.approx(1.0) and whole["worst_vmin"] == pytest.approx(0.9)
    after_warm_up = voltage_metrics(table, start_s=1.0)
    assert after_warm_up["violation_time_s"] == pytest.approx(0.5)
    assert after_warm_up["integral_violation_pu_s"] == pytest.approx(0.01 * 0.5)
    assert after_warm_up["worst_vmin"] == pytest.approx(0.94) and after_warm_up["n_grid_states"] == 4
    # Half-open windows split a run: [0, 1) and [1, inf) add up to the whole.
    warm_up = voltage_metrics(table, end_s=1.0)
    assert warm_up["n_grid_states"] == 2 and warm_up["worst_vmin"] == pytest.approx(0.9)
    assert warm_up["violation_time_s"] + after_warm_up["violation_time_s"] == pytest.approx(whole["violation_time_s"])
    one_period = voltage_metrics(table, start_s=1.0, end_s=2.0)
    assert one_period["violation_time_s"] == 0.0 and one_period["n_grid_states"] == 2


def test_window_errors_name_the_window() -> None:
    table = _table([0.0, 1.0, 2.0], {"x.1": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"got 1 in the window \[2, inf\) s"):
        voltage_metrics(table, start_s=2.0)
    with pytest.raises(ValueError, match=r"start_s \(2.0\) must be below end_s \(1.0\)"):
        voltage_metrics(table, start_s=2.0, end_s=1.0)
    with pytest.raises(ValueError, match="end_s must be a finite number"):
        voltage_metrics(table, end_s=float("nan"))

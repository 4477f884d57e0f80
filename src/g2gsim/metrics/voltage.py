"""Voltage quality over a grid's voltage table (SPEC 6): violation time and integral, extreme voltages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from g2gsim.metrics.window import describe_window, time_window


def voltage_metrics(
    voltages: pd.DataFrame,
    v_min: float = 0.95,
    v_max: float = 1.05,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> dict[str, Any]:
    """Violation time, integrated violation and extreme voltages of a wide voltage table.

    `voltages` has a ``time_s`` column and one column per (bus, phase) in pu, as a grid's
    ``voltages`` table. With viol[t, n] = max(v_min - V, 0) + max(V - v_max, 0) and
    s[t] = sum over n (NaN entries ignored), and dt = the median time step:
    ``violation_time_s`` = dt * #{t : s[t] > 0}, ``integral_violation_pu_s`` = sum_t s[t] dt,
    ``worst_vmin`` / ``worst_vmax`` = extreme voltages. `start_s` / `end_s` score only the
    states with start_s <= time_s < end_s (skip a warm-up, or score one period). At least two
    states are needed, since dt comes from their spacing.
    """
    if not v_min < v_max:
        raise ValueError(f"v_min ({v_min}) must be below v_max ({v_max})")
    if "time_s" not in voltages.columns:
        raise ValueError(f"the voltage table needs a 'time_s' column; columns: {list(voltages.columns)[:8]}")
    voltages = time_window(voltages, start_s, end_s)
    times = voltages["time_s"].to_numpy(dtype=float)
    if times.size < 2:
        raise ValueError(
            f"voltage metrics need at least 2 grid states, got {times.size}{describe_window(start_s, end_s)}"
        )
    v = voltages.drop(columns="time_s").to_numpy(dtype=float)
    if v.shape[1] == 0:
        raise ValueError("the voltage table has no voltage columns")
    # Recorded times are float images of exact ticks: round away their representation noise.
    dt = float(np.round(np.median(np.diff(times)), 9))
    valid = ~np.isnan(v)
    if not valid.any():
        raise ValueError("every voltage in the table is NaN")
    violation = np.where(valid, np.maximum(v_min - v, 0.0) + np.maximum(v - v_max, 0.0), 0.0)
    per_state = violation.sum(axis=1)
    return {
        "violation_time_s": float(np.round(np.count_nonzero(per_state > 0.0) * dt, 9)),
        "integral_violation_pu_s": float(np.sum(per_state * dt)),
        "worst_vmin": float(np.min(np.where(valid, v, np.inf))),
        "worst_vmax": float(np.max(np.where(valid, v, -np.inf))),
        "n_grid_states": int(times.size),
        "grid_dt_s": dt,
    }

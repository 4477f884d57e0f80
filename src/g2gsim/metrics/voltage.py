"""Voltage quality over a grid's voltage table (SPEC 6): violation time and integral, extreme voltages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from g2gsim.metrics.window import describe_window, time_window

#: Rows of the voltage table scored at a time.
_ROWS = 4096


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
    per_state = np.empty(v.shape[0])
    low, high, any_valid = np.inf, -np.inf, False
    for start in range(0, v.shape[0], _ROWS):  # a block of rows at a time: small temporaries
        block = v[start : start + _ROWS]
        valid = ~np.isnan(block)
        violation = np.where(valid, np.maximum(v_min - block, 0.0) + np.maximum(block - v_max, 0.0), 0.0)
        per_state[start : start + _ROWS] = violation.sum(axis=1)
        if valid.any():
            any_valid = True
            low = min(low, float(np.min(np.where(valid, block, np.inf))))
            high = max(high, float(np.max(np.where(valid, block, -np.inf))))
    if not any_valid:
        raise ValueError("every voltage in the table is NaN")
    return {
        "violation_time_s": float(np.round(np.count_nonzero(per_state > 0.0) * dt, 9)),
        "integral_violation_pu_s": float(np.sum(per_state * dt)),
        "worst_vmin": low,
        "worst_vmax": high,
        "n_grid_states": int(times.size),
        "grid_dt_s": dt,
    }

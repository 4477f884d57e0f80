"""Run metrics (SPEC 6): voltage quality over grid states, serving performance over datacenter states.

Each metric is a plain function of a result table, so it can be applied to a live run or to
tables read back from Parquet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# -- voltage ------------------------------------------------------------------------------


def voltage_metrics(voltages: pd.DataFrame, v_min: float = 0.95, v_max: float = 1.05) -> dict[str, Any]:
    """Violation time, integrated violation and extreme voltages of a wide voltage table.

    `voltages` has a ``time_s`` column and one column per (bus, phase) in pu, as a grid's
    ``voltages`` table. With viol[t, n] = max(v_min - V, 0) + max(V - v_max, 0) and
    s[t] = sum over n (NaN entries ignored), and dt = the median time step:
    ``violation_time_s`` = dt * #{t : s[t] > 0}, ``integral_violation_pu_s`` = sum_t s[t] dt,
    ``worst_vmin`` / ``worst_vmax`` = extreme voltages. At least two states are needed, since
    dt comes from their spacing.
    """
    if not v_min < v_max:
        raise ValueError(f"v_min ({v_min}) must be below v_max ({v_max})")
    if "time_s" not in voltages.columns:
        raise ValueError(f"the voltage table needs a 'time_s' column; columns: {list(voltages.columns)[:8]}")
    times = voltages["time_s"].to_numpy(dtype=float)
    if times.size < 2:
        raise ValueError(f"voltage metrics need at least 2 grid states, got {times.size}")
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


# -- performance ---------------------------------------------------------------------------
# Serving performance over datacenter states (SPEC 6), computed from the wide ``state`` table
# a datacenter records: columns ``time_s`` and, per model, ``<label>.batch``,
# ``<label>.replicas`` and ``<label>.itl_s``.


def performance_metrics(states: pd.DataFrame | Sequence[pd.DataFrame], specs: Mapping[str, Any]) -> dict[str, Any]:
    """Throughput and ITL statistics over one or several sites' datacenter state tables.

    A (state, model) sample is valid when replicas > 0, batch > 0 and the ITL is finite and
    > 0; its throughput is tps = batch / ITL * replicas (tokens/s). With T the number of
    distinct times over all tables: ``mean_throughput_tps`` = sum of tps / T,
    ``integrated_tokens`` = that mean * (t_last - t_first), ``itl_deadline_fraction`` =
    share of valid samples with ITL > the model's deadline (NaN without valid samples).
    Per model: throughput summed over sites / T; batch and replicas averaged over every
    sample; ITL and deadline share over valid samples. `specs` maps labels to model specs
    (or directly to deadlines in s).
    """
    tables = [states] if isinstance(states, pd.DataFrame) else list(states)
    return _performance([(table, specs) for table in tables])


def combined_performance_metrics(
    states: Mapping[str, pd.DataFrame], deadlines: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """:func:`performance_metrics` over several sites, each with its own deadlines (or specs) by label."""
    missing = sorted(set(states) - set(deadlines))
    if missing:
        raise KeyError(f"no deadlines for sites {missing}; sites with deadlines: {sorted(deadlines)}")
    return _performance([(states[site], deadlines[site]) for site in states])


def _deadline(spec: Any) -> float:
    """ITL deadline in s from a model spec (``itl_deadline_s``) or a plain number."""
    return float(getattr(spec, "itl_deadline_s", spec))


def _model_labels(table: pd.DataFrame) -> list[str]:
    """Model labels of a datacenter state table, from its ``<label>.batch`` columns."""
    return [c[: -len(".batch")] for c in table.columns if c.endswith(".batch")]


def _performance(pairs: Sequence[tuple[pd.DataFrame, Mapping[str, Any]]]) -> dict[str, Any]:
    """Accumulate the SPEC 6 performance sums over (state table, specs by label) pairs."""
    if not pairs or all(len(table) == 0 for table, _ in pairs):
        raise ValueError("performance metrics need at least one datacenter state")
    times = np.concatenate([table["time_s"].to_numpy(dtype=float) for table, _ in pairs])
    n_times = int(np.unique(times).size)
    duration = float(times.max() - times.min())

    tps_sum: dict[str, float] = {}
    batch_sum: dict[str, float] = {}
    replica_sum: dict[str, float] = {}
    samples: dict[str, int] = {}
    itl_values: dict[str, list[np.ndarray]] = {}
    late: dict[str, int] = {}
    for table, specs in pairs:
        for label in _model_labels(table):
            if label not in specs:
                raise KeyError(f"no spec (deadline) for model {label!r}; specs: {sorted(specs)}")
            batch = table[f"{label}.batch"].to_numpy(dtype=float)
            replicas = table[f"{label}.replicas"].to_numpy(dtype=float)
            itl = table[f"{label}.itl_s"].to_numpy(dtype=float)
            valid = (replicas > 0) & (batch > 0) & np.isfinite(itl) & (itl > 0)
            tps = batch[valid] / itl[valid] * replicas[valid]
            tps_sum[label] = tps_sum.get(label, 0.0) + float(tps.sum())
            batch_sum[label] = batch_sum.get(label, 0.0) + float(batch.sum())
            replica_sum[label] = replica_sum.get(label, 0.0) + float(replicas.sum())
            samples[label] = samples.get(label, 0) + batch.size
            itl_values.setdefault(label, []).append(itl[valid])
            late[label] = late.get(label, 0) + int(np.count_nonzero(itl[valid] > _deadline(specs[label])))

    mean_tps = sum(tps_sum.values()) / n_times
    valid_itl = {label: np.concatenate(parts) for label, parts in itl_values.items()}
    n_valid = sum(v.size for v in valid_itl.values())
    return {
        "mean_throughput_tps": mean_tps,
        "integrated_tokens": mean_tps * duration,
        "itl_deadline_fraction": sum(late.values()) / n_valid if n_valid else float("nan"),
        "throughput_by_model_tps": {label: tps_sum[label] / n_times for label in tps_sum},
        "mean_batch_by_model": {label: batch_sum[label] / samples[label] for label in samples},
        "mean_replicas_by_model": {label: replica_sum[label] / samples[label] for label in samples},
        "mean_itl_s_by_model": {label: float(v.mean()) if v.size else float("nan") for label, v in valid_itl.items()},
        "itl_deadline_fraction_by_model": {
            label: late[label] / v.size if v.size else float("nan") for label, v in valid_itl.items()
        },
        "n_datacenter_states": int(times.size),
        "duration_s": duration,
    }


def budget_metrics(state: pd.DataFrame, budget: pd.DataFrame, *, grace_s: float = 5.0) -> dict[str, float]:
    """Budget tracking of one site (issue 10).

    `state` is the site's state table (time_s, power_a_w, power_b_w, power_c_w); `budget`
    the budget source's table (time_s, budget_kw; a step function from each row on). Each
    site sample holds for one step dt (median spacing). A sample counts only after a grace
    period of `grace_s` from the latest budget change (including the first publish):

    - budget_violation_s = dt * #{samples with site power > budget};
    - budget_excess_kwh = sum of (power - budget)+ * dt / 3600 over those samples.
    """
    if state.empty or budget.empty or len(state) < 2:
        return {"budget_violation_s": 0.0, "budget_excess_kwh": 0.0}
    t = state["time_s"].to_numpy(dtype=float)
    power_kw = state[["power_a_w", "power_b_w", "power_c_w"]].to_numpy(dtype=float).sum(axis=1) / 1e3
    dt = float(np.median(np.diff(t)))
    changes = budget["time_s"].to_numpy(dtype=float)
    levels = budget["budget_kw"].to_numpy(dtype=float)
    order = np.argsort(changes, kind="stable")
    changes, levels = changes[order], levels[order]
    idx = np.searchsorted(changes, t, side="right") - 1
    known = idx >= 0
    limit = np.where(known, levels[np.maximum(idx, 0)], np.inf)
    since = np.where(known, t - changes[np.maximum(idx, 0)], 0.0)
    counted = known & (since >= grace_s)
    excess = np.where(counted, np.maximum(power_kw - limit, 0.0), 0.0)
    return {
        "budget_violation_s": float(dt * np.count_nonzero(excess > 0)),
        "budget_excess_kwh": float(excess.sum() * dt / 3600.0),
    }

"""Serving performance over datacenter states (SPEC 6): throughput, ITL deadline misses, site power.

Computed from the wide ``state`` table a datacenter records: columns ``time_s``, the site
power per phase (``power_a_w`` ...) and, per model, ``<label>.batch``, ``<label>.replicas``
and ``<label>.itl_s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.metrics.window import check_window, describe_window, in_window, time_window

#: The site power columns of a datacenter state table (W per phase).
PHASE_POWER_COLUMNS = ("power_a_w", "power_b_w", "power_c_w")


def performance_metrics(
    states: pd.DataFrame | Sequence[pd.DataFrame],
    specs: Mapping[str, Any],
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> dict[str, Any]:
    """Throughput and ITL statistics over one or several sites' datacenter state tables.

    A (state, model) sample is valid when replicas > 0, batch > 0 and the ITL is finite and
    > 0; its throughput is tps = batch / ITL * replicas (tokens/s). With T the number of
    distinct times over all tables: ``mean_throughput_tps`` = sum of tps / T,
    ``integrated_tokens`` = that mean * (t_last - t_first), ``itl_deadline_fraction`` =
    share of valid samples with ITL > the model's deadline (NaN without valid samples).
    Per model: throughput summed over sites / T; batch and replicas averaged over every
    sample; ITL and deadline share over valid samples. `specs` maps labels to model specs
    (or directly to deadlines in s). `start_s` / `end_s` score only the states with
    start_s <= time_s < end_s.
    """
    tables = [states] if isinstance(states, pd.DataFrame) else list(states)
    return _performance([(table, specs) for table in tables], start_s, end_s)


def combined_performance_metrics(
    states: Mapping[str, pd.DataFrame],
    deadlines: Mapping[str, Mapping[str, Any]],
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> dict[str, Any]:
    """:func:`performance_metrics` over several sites, each with its own deadlines (or specs) by label."""
    missing = sorted(set(states) - set(deadlines))
    if missing:
        raise KeyError(f"no deadlines for sites {missing}; sites with deadlines: {sorted(deadlines)}")
    return _performance([(states[site], deadlines[site]) for site in states], start_s, end_s)


def _deadline(spec: Any) -> float:
    """ITL deadline in s from a model spec (``itl_deadline_s``) or a plain number."""
    return float(getattr(spec, "itl_deadline_s", spec))


def _model_labels(table: pd.DataFrame) -> list[str]:
    """Model labels of a datacenter state table, from its ``<label>.batch`` columns."""
    return [c[: -len(".batch")] for c in table.columns if c.endswith(".batch")]


def _performance(
    pairs: Sequence[tuple[pd.DataFrame, Mapping[str, Any]]], start_s: float | None, end_s: float | None
) -> dict[str, Any]:
    """Accumulate the SPEC 6 performance sums over (state table, specs by label) pairs."""
    check_window(start_s, end_s)
    pairs = [(time_window(table, start_s, end_s), specs) for table, specs in pairs]
    if not pairs or all(len(table) == 0 for table, _ in pairs):
        raise ValueError(f"performance metrics need at least one datacenter state{describe_window(start_s, end_s)}")
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


def site_power_total_kw(states: Mapping[str, pd.DataFrame]) -> pd.Series:
    """All sites' three-phase power (kW) on the union of their time grids (latest value held)."""
    per_site = [
        frame.set_index("time_s")[list(PHASE_POWER_COLUMNS)].sum(axis=1).rename(name) for name, frame in states.items()
    ]
    return pd.concat(per_site, axis=1).sort_index().ffill().sum(axis=1) / 1e3


def site_power_metrics(
    states: Mapping[str, pd.DataFrame], *, start_s: float | None = None, end_s: float | None = None
) -> dict[str, float]:
    """``mean_dc_power_kw`` and ``peak_dc_power_kw``: mean and peak of all sites' summed power.

    `start_s` / `end_s` score only the times with start_s <= time_s < end_s.
    """
    check_window(start_s, end_s)
    total_kw = site_power_total_kw(states)
    if start_s is not None or end_s is not None:
        total_kw = total_kw[in_window(total_kw.index, start_s, end_s)]
    if total_kw.empty:
        raise ValueError(f"site power metrics need at least one datacenter state{describe_window(start_s, end_s)}")
    return {"mean_dc_power_kw": float(total_kw.mean()), "peak_dc_power_kw": float(total_kw.max())}

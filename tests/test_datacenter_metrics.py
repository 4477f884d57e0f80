"""Serving performance metrics over datacenter state tables (SPEC 6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from g2gsim.metrics import combined_performance_metrics, performance_metrics


def table(times, batch, replicas, itl, label: str = "m") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_s": times,
            "power_a_w": 0.0,
            "power_b_w": 0.0,
            "power_c_w": 0.0,
            f"{label}.batch": batch,
            f"{label}.replicas": replicas,
            f"{label}.itl_s": itl,
            f"{label}.power_w": 0.0,
        }
    )


def test_throughput_deadline_and_means() -> None:
    states = table([0.0, 1.0, 2.0, 3.0], [64, 64, 32, 32], [10, 10, 0, 10], [0.05, 0.2, 0.05, np.nan])
    metrics = performance_metrics(states, {"m": 0.1})
    tps = [64 / 0.05 * 10, 64 / 0.2 * 10]  # the other two samples are invalid
    assert metrics["mean_throughput_tps"] == pytest.approx(sum(tps) / 4)
    assert metrics["integrated_tokens"] == pytest.approx(sum(tps) / 4 * 3.0)
    assert metrics["itl_deadline_fraction"] == pytest.approx(0.5)
    assert metrics["mean_batch_by_model"]["m"] == pytest.approx(48)
    assert metrics["mean_replicas_by_model"]["m"] == pytest.approx(7.5)
    assert metrics["mean_itl_s_by_model"]["m"] == pytest.approx(0.125)
    assert metrics["throughput_by_model_tps"]["m"] == pytest.approx(sum(tps) / 4)


def test_sites_add_throughput_over_distinct_times() -> None:
    one = table([0.0, 1.0], [10, 10], [1, 1], [0.1, 0.1])
    two = table([0.0, 1.0], [20, 20], [2, 2], [0.1, 0.1])
    metrics = combined_performance_metrics({"x": one, "y": two}, {"x": {"m": 0.05}, "y": {"m": 1.0}})
    assert metrics["mean_throughput_tps"] == pytest.approx(100 + 400)
    assert metrics["itl_deadline_fraction"] == pytest.approx(0.5)
    assert performance_metrics([one, two], {"m": 1.0})["mean_throughput_tps"] == pytest.approx(500)


def test_no_valid_sample_and_errors() -> None:
    states = table([0.0, 1.0], [8, 8], [0, 0], [np.nan, np.nan])
    metrics = performance_metrics(states, {"m": 0.1})
    assert metrics["mean_throughput_tps"] == 0.0 and math.isnan(metrics["itl_deadline_fraction"])
    with pytest.raises(KeyError, match="no spec .* 'm'"):
        performance_metrics(states, {"other": 0.1})
    with pytest.raises(ValueError, match="at least one datacenter state"):
        performance_metrics(states.iloc[:0], {"m": 0.1})
    with pytest.raises(KeyError, match=r"no deadlines for sites \['x'\]"):
        combined_performance_metrics({"x": states}, {})


def test_a_window_scores_only_its_states() -> None:
    # Batch 64 until 2 s (ITL 0.05 s, within the deadline), then batch 128 (ITL 0.2 s, late).
    states = table([0.0, 1.0, 2.0, 3.0], [64, 64, 128, 128], [1, 1, 1, 1], [0.05, 0.05, 0.2, 0.2])
    whole = performance_metrics(states, {"m": 0.1})
    assert whole["itl_deadline_fraction"] == pytest.approx(0.5)
    early = performance_metrics(states, {"m": 0.1}, end_s=2.0)
    late = performance_metrics(states, {"m": 0.1}, start_s=2.0)
    assert early["itl_deadline_fraction"] == 0.0 and late["itl_deadline_fraction"] == 1.0
    assert early["mean_throughput_tps"] == pytest.approx(64 / 0.05)
    assert late["mean_throughput_tps"] == pytest.approx(128 / 0.2)
    assert early["n_datacenter_states"] == 2 and late["duration_s"] == pytest.approx(1.0)
    combined = combined_performance_metrics({"x": states}, {"x": {"m": 0.1}}, start_s=2.0)
    assert combined["mean_throughput_tps"] == late["mean_throughput_tps"]
    with pytest.raises(ValueError, match=r"at least one datacenter state in the window \[5, inf\) s"):
        performance_metrics(states, {"m": 0.1}, start_s=5.0)
    with pytest.raises(ValueError, match="must be below"):
        performance_metrics(states, {"m": 0.1}, start_s=3.0, end_s=1.0)


def test_site_power_sums_sites_and_scores_a_window() -> None:
    from g2gsim.metrics import site_power_metrics

    one = table([0.0, 1.0, 2.0], [1, 1, 1], [1, 1, 1], [0.1, 0.1, 0.1]).assign(power_a_w=[1000.0, 3000.0, 2000.0])
    two = table([0.0, 2.0], [1, 1], [1, 1], [0.1, 0.1]).assign(power_b_w=[500.0, 1500.0])
    # total kW at 0, 1, 2 s: 1.5, 3.5 (site two's 0 s value held), 3.5
    power = site_power_metrics({"one": one, "two": two})
    assert power == {"mean_dc_power_kw": pytest.approx(8.5 / 3), "peak_dc_power_kw": pytest.approx(3.5)}
    assert site_power_metrics({"one": one, "two": two}, end_s=1.0) == {
        "mean_dc_power_kw": pytest.approx(1.5),
        "peak_dc_power_kw": pytest.approx(1.5),
    }
    with pytest.raises(ValueError, match="in the window"):
        site_power_metrics({"one": one}, start_s=10.0)

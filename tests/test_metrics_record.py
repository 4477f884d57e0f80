"""The typed record of a run's metrics: every key named once, described once, produced by a run."""

from __future__ import annotations

import typing

import pandas as pd
import pytest

from g2gsim.metrics import METRICS, RunMetrics, budget_summary, study_headings, table_metrics
from g2gsim.scenarios import load_scenario, run_scenario


def test_the_record_and_the_table_name_the_same_metrics() -> None:
    keys = typing.get_type_hints(RunMetrics)
    assert list(METRICS) != [] and set(METRICS) == set(keys)
    assert {k for k, info in METRICS.items() if info.optional} == set(RunMetrics.__optional_keys__)
    for key, info in METRICS.items():
        assert info.key == key and info.label and info.definition and "\n" not in info.definition
        assert info.unit in ("", "count") or f"({info.unit})" in info.label or not info.table  # rows show units


def test_a_run_returns_the_record(tmp_path) -> None:
    run = run_scenario(load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=2), plots=False)
    assert set(run.metrics) == set(RunMetrics.__required_keys__)
    for key, value in run.metrics.items():
        if value is not None and METRICS[key].table:
            assert isinstance(METRICS[key].format(value), str)


def test_results_table_rows_and_study_headings_come_from_the_record() -> None:
    plain = {"violation_time_s": 1.0}
    budget = {"violation_time_s": 1.0, "budget_violation_s": 2.0, "budget_excess_kwh": 0.5}
    rows = [info.key for info in table_metrics([plain])]
    assert rows[:4] == ["violation_time_s", "integral_violation_pu_s", "worst_vmin", "worst_vmax"]
    assert "budget_violation_s" not in rows and rows[-1] == "wall_s"
    with_budget = [info.key for info in table_metrics([plain, budget])]
    assert with_budget[-2:] == ["budget_violation_s", "budget_excess_kwh"]
    assert study_headings()["violation_time_s"] == "violation s" and study_headings()["peak_dc_power_kw"] == "peak kW"
    assert METRICS["n_solves"].format(36006) == "36,006" and METRICS["worst_vmin"].format(None) == "-"


def _state(times: list[float], kw: list[float]) -> pd.DataFrame:
    watts = [k * 1e3 for k in kw]
    return pd.DataFrame({"time_s": times, "power_a_w": watts, "power_b_w": 0.0, "power_c_w": 0.0})


def test_budget_summary_finds_budgets_by_table_and_sites_by_name() -> None:
    state = _state([0.0, 10.0, 20.0, 30.0], [5.0, 5.0, 1.0, 1.0])
    budget = pd.DataFrame({"time_s": [0.0], "budget_kw": [2.0], "reason": ["constant"]})
    assert budget_summary({}, {"dc": state}, {}) == {}
    summary = budget_summary({"cap": budget}, {"dc": state}, {"cap": "dc"})
    assert summary["budget_violation_s"] == pytest.approx(10.0)  # the 0 s sample is in the 5 s grace
    assert summary["budget_excess_kwh"] == pytest.approx(3.0 * 10.0 / 3600)
    twice = budget_summary({"cap": budget, "cap2": budget}, {"dc": state}, {"cap": "dc", "cap2": "dc"})
    assert twice["budget_violation_s"] == pytest.approx(20.0)
    unknown_site = budget_summary({"cap": budget}, {"dc": state}, {"cap": "elsewhere"})
    assert unknown_site == {"budget_violation_s": 0.0, "budget_excess_kwh": 0.0}


def test_a_budget_run_reports_the_budget_metrics() -> None:
    run = run_scenario(load_scenario("ieee13_power_budget").with_overrides(horizon_s=5), plots=False)
    assert {"budget_violation_s", "budget_excess_kwh"} <= set(run.metrics)


def test_the_old_runner_path_of_site_power_warns() -> None:
    import g2gsim.scenarios.runner as runner
    from g2gsim.metrics import site_power_total_kw

    with pytest.warns(DeprecationWarning, match=r"g2gsim\.metrics\.site_power_total_kw"):
        assert runner.site_power_total_kw is site_power_total_kw

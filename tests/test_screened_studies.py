"""Screened studies: the error bound, the re-run rule, and exact rows equal to plain runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from g2gsim.scenarios import load_scenario
from g2gsim.studies import hosting_capacity, site_sweep
from g2gsim.studies.surrogate import (
    ScreenOptions,
    error_bound,
    rerun_selection,
    shift_and_bound,
    surrogate_overrides,
)

#: Columns that differ between two executions of the same run (timing, process, position in its sweep).
VOLATILE = {"wall_s", "worker_wall_s", "worker_cpu_s", "worker_pid", "traceback", "order"}
#: Screening's own columns (added to a row, never part of a plain run's row).
SCREEN_COLUMNS = {"exact", "screen_bound", "screen_value"}


# -- the bound ---------------------------------------------------------------------------------
def test_error_bound_is_the_conformal_quantile() -> None:
    residuals = [0.5, -0.1, 0.2, -0.4, 0.3]
    # n = 5, c = 0.5: the ceil(6 * 0.5) = 3rd smallest |r| = 0.3
    assert error_bound(residuals, 0.5) == 0.3
    # c = 0.9 needs ceil(6 * 0.9) = 6 > 5 residuals: no finite bound
    assert error_bound(residuals, 0.9) == math.inf
    assert error_bound([np.nan, 0.1, 0.2, 0.3], 0.5) == 0.2  # NaN pairs dropped (n = 3: 2nd smallest)


@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=19, max_size=60),
    st.floats(0.0, 50.0),
)
def test_shift_and_bound_covers_the_sample_around_its_median(residuals: list[float], offset: float) -> None:
    shift, bound = shift_and_bound([r + offset for r in residuals], 0.95)
    assert shift == pytest.approx(float(np.median(residuals)) + offset, abs=1e-9)
    inside = np.abs(np.asarray(residuals) + offset - shift) <= bound + 1e-9
    assert inside.mean() >= 0.95 * (len(residuals) + 1) / len(residuals) - 1.0 / len(residuals)


# -- the re-run rule --------------------------------------------------------------------------------
candidates = st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    values=candidates,
    bound=st.floats(0.0, 10.0),
    top=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
    threshold=st.one_of(st.none(), st.floats(-50, 50)),
    maximize=st.booleans(),
    data=st.data(),
)
def test_rerun_selection_leaves_only_certain_candidates(
    values: list[float], bound: float, top: float, threshold: float | None, maximize: bool, data: st.DataObject
) -> None:
    n = len(values)
    exact = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    v = np.asarray(values)
    rerun = rerun_selection(v, bound, top_fraction=top, threshold=threshold, maximize=maximize, exact=exact)
    assert not (rerun & exact).any()  # an exact row is never run again
    half = np.where(exact, 0.0, bound)
    lo, hi = v - half, v + half
    if threshold is not None:  # every interval that overlaps the threshold is re-run
        assert rerun[(lo <= threshold) & (threshold <= hi) & ~exact].all()
    k = math.ceil(top * n - 1e-12)
    order = np.argsort(-v if maximize else v, kind="stable")
    assert rerun[order[:k][~exact[order[:k]]]].all()  # the surrogate's own top is re-run
    # Whatever the true values within the intervals, an unselected candidate is outside the true
    # top k and on the surrogate's side of the threshold.
    truth = lo + np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))) * (hi - lo)
    sign = -1.0 if maximize else 1.0
    for i in np.flatnonzero(~rerun & ~exact):
        better = int((sign * truth < sign * truth[i]).sum())
        assert k == 0 or better >= k
        if threshold is not None:
            feasible = (lambda x: x >= threshold) if maximize else (lambda x: x <= threshold)
            assert feasible(truth[i]) == feasible(v[i])


def test_rerun_selection_reruns_failed_surrogate_runs() -> None:
    rerun = rerun_selection([1.0, np.nan, 5.0, 6.0], 0.1, top_fraction=0.0)
    assert rerun.tolist() == [False, True, False, False]


# -- options ------------------------------------------------------------------------------------------
def test_screen_options_name_the_bad_value() -> None:
    with pytest.raises(ValidationError, match=r"sample=10: a bound at confidence 0.95 needs at least 19"):
        ScreenOptions(sample=10, confidence=0.95)
    with pytest.raises(ValidationError, match="confidence"):
        ScreenOptions(confidence=1.0)
    with pytest.raises(ValidationError, match="step_s"):
        ScreenOptions(step_s=0)
    with pytest.raises(ValidationError, match="top_fraction"):
        ScreenOptions(top_fraction=1.5)
    assert ScreenOptions(sample=4, confidence=0.75).sample == 4


def test_surrogate_overrides_coarsen_only_finer_periods() -> None:
    scenario = load_scenario("ieee13_ofo_notap")
    coarse = surrogate_overrides(scenario, 5.0)
    assert coarse["grid.period_s"] == 5.0 and coarse["sites.0.period_s"] == 5.0
    assert all(v == 5.0 for v in coarse.values())
    assert surrogate_overrides(scenario, 0.05) == {}  # nothing is finer than 0.05 s
    scenario.with_changes(coarse)  # a valid scenario
    short = scenario.with_overrides(horizon_s=8)
    assert surrogate_overrides(short, 5.0)["grid.period_s"] == 2.0  # a quarter of the horizon at most


# -- screened studies: exact rows are plain runs, bit for bit ------------------------------------------
def plain_rows(table: pd.DataFrame) -> pd.DataFrame:
    keep = sorted(c for c in table.columns if c not in VOLATILE | SCREEN_COLUMNS)
    return table[keep].sort_values("run_id").reset_index(drop=True)


def test_screened_site_sweep_exact_rows_equal_plain_runs(tmp_path: Path) -> None:
    base = load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=20)
    options = {"sample": 4, "confidence": 0.75, "top_fraction": 0.1}
    screened = site_sweep(
        base, tmp_path / "screened", seeds=[0, 1], screen=True, screen_options=options, progress=False
    )
    plain = site_sweep(base, tmp_path / "plain", seeds=[0, 1], progress=False)
    table, report = screened.table, screened.screening
    assert report is not None and len(table) == len(plain.table) == screened.n_total
    assert table["exact"].dtype == bool and report.n_calibration == 4
    assert report.n_exact == int(table["exact"].sum()) == 4 + report.n_rerun
    assert (table.loc[~table["exact"], "screen_bound"] == report.bound).all()
    assert (table.loc[table["exact"], "screen_bound"] == 0.0).all()
    exact = table[table["exact"]]
    reference = plain.table[plain.table["run_id"].isin(exact["run_id"])]
    pd.testing.assert_frame_equal(plain_rows(exact), plain_rows(reference), check_dtype=False, check_exact=True)
    # the surrogate rows are the coarse runs (other run ids), one per remaining candidate
    assert not set(table.loc[~table["exact"], "run_id"]) & set(plain.table["run_id"])
    saved = json.loads((tmp_path / "screened" / "screening.json").read_text())
    assert saved["n_exact"] == report.n_exact and saved["options"]["sample"] == 4


def test_screening_reuses_exact_runs_already_in_the_folder(tmp_path: Path) -> None:
    base = load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=10)
    buses = ["671", "675", "680", "633"]
    plain = site_sweep(base, tmp_path, buses=buses, progress=False)
    options = ScreenOptions(sample=3, confidence=0.5)
    screened = site_sweep(base, tmp_path, buses=buses, screen=True, screen_options=options, progress=False)
    exact = screened.table[screened.table["exact"]]
    rows = plain.table.set_index("run_id")
    for _, row in exact.iterrows():  # the very rows recorded before (walls included: not run again)
        assert row["worker_wall_s"] == rows.loc[row["run_id"], "worker_wall_s"]


def test_screened_hosting_capacity_exact_buses_equal_plain_bisection(tmp_path: Path) -> None:
    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=10)
    buses = ["671", "633", "680"]
    common = {"buses": buses, "resolution_gpus": 512, "progress": False}
    options = ScreenOptions(sample=3, confidence=0.5, top_fraction=0.3)
    screened = hosting_capacity(base, tmp_path / "s", screen=True, screen_options=options, **common)
    plain = hosting_capacity(base, tmp_path / "p", **common)
    assert screened.screening is not None and list(screened.table["bus"]) == buses
    exact = screened.table[screened.table["exact"]].drop(columns=["exact", "screen_bound"])
    assert len(exact) >= 1  # the top 30% of three buses at least
    reference = plain.table.set_index("bus").loc[exact["bus"]].reset_index()
    pd.testing.assert_frame_equal(exact.reset_index(drop=True), reference, check_dtype=False, check_exact=True)


# -- the commands ---------------------------------------------------------------------------------------
def invoke(*args: str):
    from g2gsim.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--screen", "--screen-sample", "5"], "--screen-sample 5: sample=5: a bound at confidence 0.95 needs"),
        (["--screen", "--screen-confidence", "1.5"], "--screen-confidence 1.5"),
        (["--screen", "--screen-step", "0"], "--screen-step 0"),
        (["--screen", "--screen-top", "2"], "--screen-top 2"),
        (["--threshold", "1"], "--threshold 1: only used with --screen"),
        (
            ["--screen", "--screen-sample", "3", "--screen-confidence", "0.5", "--metric", "nope", "--bus", "671,675"],
            "--metric 'nope': not a metric of these runs",
        ),
    ],
)
def test_cli_site_sweep_bad_screen_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("site-sweep", "ieee13_ofo_notap", "--duration", "5", "--out", tmp_path, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_site_sweep_screen_json(tmp_path: Path) -> None:
    result = invoke(
        "site-sweep", "ieee13_ofo_notap", "--duration", "10", "--bus", "671,675,680,633,634", "--screen",
        "--screen-sample", "3", "--screen-confidence", "0.5", "--metric", "integral_violation_pu_s",
        "--out", tmp_path, "--no-progress", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["screening"]["n_calibration"] == 3 and line["total"] == 5
    assert sum(row["n_exact"] for row in line["summary"]) == line["screening"]["n_exact"]

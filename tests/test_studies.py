"""Sweeps and studies: determinism across executors, resume, failure isolation, Dask, studies."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from g2gsim.scenarios import load_scenario
from g2gsim.studies import Sweep, SweepError, apply_parameters, load_results, run_sweep
from g2gsim.studies.cli import register
from g2gsim.studies.screening import compare_with_power_flow, linearization_error, run_screening, screening_stats
from g2gsim.studies.studies import ensemble_summary, hosting_capacity, plot_metric_heatmap, seed_ensemble

STEP = "controllers.0.params.primal_step_size"
#: Columns that legitimately differ between executions (timing, which process ran it).
VOLATILE = {"wall_s", "worker_wall_s", "worker_pid", "traceback"}


def small_sweep(**changes) -> Sweep:
    fields = {
        "name": "small",
        "base": "ieee13_ofo_notap",
        "overrides": {"horizon_s": 5},
        "axes": {STEP: [0.05, 0.2], "seed": [0, 1]},
    }
    fields.update(changes)
    return Sweep(**fields)


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in table.columns if c not in VOLATILE]
    return table[sorted(keep)].sort_values("run_id").reset_index(drop=True)


def test_serial_and_two_processes_give_identical_results(tmp_path: Path) -> None:
    serial = run_sweep(small_sweep(), tmp_path / "serial", progress=False)
    parallel = run_sweep(small_sweep(), tmp_path / "parallel", workers=2, progress=False)
    assert serial.n_ok == parallel.n_ok == 4 and serial.n_failed == 0
    pd.testing.assert_frame_equal(comparable(serial.table), comparable(parallel.table))
    assert len(set(parallel.table["worker_pid"])) >= 1
    assert (tmp_path / "parallel" / "results.parquet").is_file()
    from_disk = pd.read_parquet(tmp_path / "parallel" / "results.parquet")
    assert sorted(from_disk["run_id"]) == sorted(parallel.table["run_id"])
    # The seed changes the noise, so the two seeds differ; the step size is recorded.
    assert set(serial.table[STEP]) == {0.05, 0.2}


def test_resume_after_a_worker_is_killed(tmp_path: Path) -> None:
    sweep = small_sweep(axes={STEP: [0.05, 0.1, 0.2], "seed": [0, 1, 2]})  # 9 runs
    first_ids: list[str] = []
    pool = cf.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"))

    def crash_after_first(row: dict) -> None:
        first_ids.append(row["run_id"])
        if len(first_ids) == 1:
            os.kill(next(iter(pool._processes)), signal.SIGKILL)  # a worker dies mid-sweep

    with pytest.warns(UserWarning, match="lost by the executor"):
        first = run_sweep(sweep, tmp_path, pool, progress=False, max_in_flight=3, on_result=crash_after_first)
    pool.shutdown(wait=False, cancel_futures=True)
    assert first.n_lost > 0 and not first.complete
    assert sorted(load_results(tmp_path)["run_id"]) == sorted(first_ids)

    second_ids: list[str] = []
    second = run_sweep(sweep, tmp_path, progress=False, on_result=lambda row: second_ids.append(row["run_id"]))
    assert second.complete and second.n_skipped == len(first_ids)
    assert not set(first_ids) & set(second_ids), "a run was done twice"
    all_ids = {t.run_id for t in sweep.tasks()}
    assert set(first_ids) | set(second_ids) == all_ids
    assert len(list((tmp_path / "runs").glob("*.json"))) == 9
    third = run_sweep(sweep, tmp_path, progress=False)  # nothing left to do
    assert third.n_skipped == 9 and third.n_ok == 0


def test_a_failing_run_is_recorded_and_the_sweep_continues(tmp_path: Path) -> None:
    sweep = small_sweep(axes={"sites.0.bus": ["671", "no_such_bus", "675"]})
    result = run_sweep(sweep, tmp_path, progress=False)
    assert (result.n_ok, result.n_failed, result.n_lost) == (2, 1, 0)
    failed = result.table[result.table["status"] == "failed"].iloc[0]
    assert failed["sites.0.bus"] == "no_such_bus" and "no_such_bus" in failed["error"]
    # Resuming does not retry recorded failures.
    assert run_sweep(sweep, tmp_path, progress=False).n_skipped == 3


def test_dask_local_cluster_matches_serial(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    sweep = small_sweep(axes={STEP: [0.05, 0.2]})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = run_sweep(sweep, tmp_path / "dask", client, progress=False)
        by_address = run_sweep(sweep, tmp_path / "address", cluster.scheduler_address, progress=False)  # --scheduler
    serial = run_sweep(sweep, tmp_path / "serial", progress=False)
    assert on_dask.n_ok == by_address.n_ok == 2
    pd.testing.assert_frame_equal(comparable(on_dask.table), comparable(serial.table))
    pd.testing.assert_frame_equal(comparable(by_address.table), comparable(serial.table))


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"controllers.3.params.primal_step_size": [0.1]}, "controllers has 1 item"),
        ({"sites.0.bogus": [1]}, "sites.0.bogus"),
        ({"sites.first.bus": ["671"]}, "not an index"),
        ({"grid.feeder.name": ["x"]}, "grid.feeder is a value"),
        ({STEP: [0.1, -1.0]}, "primal_step_size"),
        ({"horizon_s": [-5]}, "horizon_s"),
    ],
)
def test_dotted_paths_are_validated_against_the_scenario(axes: dict, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        Sweep(base="ieee13_ofo_notap", axes=axes).tasks()


def test_sweep_modes_and_stable_run_ids() -> None:
    cartesian = small_sweep().tasks()
    assert len(cartesian) == 4 and [t.run_id for t in cartesian] == [t.run_id for t in small_sweep().tasks()]
    zipped = small_sweep(mode="zip").tasks()
    assert [t.params for t in zipped] == [{STEP: 0.05, "seed": 0}, {STEP: 0.2, "seed": 1}]
    draws = small_sweep(mode="random", samples=5, axes={STEP: {"low": 0.01, "high": 1.0, "log": True}}).tasks()
    again = small_sweep(mode="random", samples=5, axes={STEP: {"low": 0.01, "high": 1.0, "log": True}}).tasks()
    assert [t.params for t in draws] == [t.params for t in again]
    assert all(0.01 <= t.params[STEP] <= 1.0 for t in draws)
    with pytest.raises(ValueError, match="equal length"):
        small_sweep(mode="zip", axes={STEP: [0.1, 0.2], "seed": [0]})


def test_hosting_capacity_bisection(tmp_path: Path) -> None:
    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=2)
    result = hosting_capacity(base, tmp_path, buses=["671"], max_gpus=28800, resolution_gpus=3600, progress=False)
    row = result.table.iloc[0]
    capacity, infeasible = int(row["capacity_gpus"]), row["infeasible_gpus"]
    assert 0 < capacity < 28800 and infeasible is not None and infeasible - capacity <= 3600
    runs = result.runs.set_index("site_gpus")
    assert runs.loc[capacity, "violation_time_s"] == 0.0
    assert runs.loc[int(infeasible), "violation_time_s"] > 0.0
    assert (tmp_path / "hosting_capacity.csv").is_file()


def test_seed_ensemble_confidence_interval(tmp_path: Path) -> None:
    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=2)
    summary = seed_ensemble(base, 3, tmp_path, progress=False).set_index("metric")
    vmin = summary.loc["worst_vmin"]
    assert vmin["n"] == 3 and vmin["ci_low"] <= vmin["mean"] <= vmin["ci_high"]
    assert ensemble_summary(load_results(tmp_path)).shape[0] == summary.shape[0]


def test_linearised_grid_is_accurate_for_small_perturbations() -> None:
    scenario = load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=5)
    errors = linearization_error(scenario, (1.0, 10.0, 100.0))
    assert errors[1.0] < 1e-4 and errors[10.0] < 2e-4 and errors[100.0] < 2e-3
    comparison = compare_with_power_flow(load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=10))
    assert comparison["max_abs_error_pu"] < 1e-3
    metrics = run_screening(scenario, linearized=True)
    assert metrics["grid_mode"] == "linearized" and metrics["n_linearizations"] == 1
    assert screening_stats()["engines_created"] <= screening_stats()["runs"]


def test_linearised_grid_refreshes_when_taps_change() -> None:
    tapped = apply_parameters(
        load_scenario("ieee13_baseline_tapchange").with_overrides(horizon_s=4), {"controllers.0.events.0.t_s": 2.0}
    )
    comparison = compare_with_power_flow(tapped)
    assert comparison["worst_vmax_full"] > 1.035  # the tap change raised the voltages
    assert comparison["max_abs_error_pu"] < 5e-4
    assert run_screening(tapped, linearized=True)["n_linearizations"] == 2
    with pytest.raises(Exception, match="batteries"):
        run_screening(load_scenario("ieee123_storage_idle").with_overrides(horizon_s=1), linearized=True)


def test_cli_sweep_and_heatmap(tmp_path: Path) -> None:
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(
        'name = "cli"\nbase = "ieee13_ofo_notap"\n[overrides]\nhorizon_s = 3\n'
        f'[axes]\n"{STEP}" = [0.05, 0.2]\nseed = [0, 1]\n'
    )
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["ok"] == 4 and Path(counts["heatmap"]).is_file()
    again = runner.invoke(app, ["sweep", str(sweep_file), "--out", str(out), "--no-progress", "--json"])
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 4
    bad = runner.invoke(app, ["sweep", str(sweep_file), "--workers", "2", "--scheduler", "tcp://x:1"])
    assert bad.exit_code != 0
    assert runner.invoke(app, ["hosting-capacity", "--help"]).exit_code == 0
    fig = plot_metric_heatmap(load_results(out), STEP, "seed", "worst_vmin")
    assert fig.axes


# -- study commands: sensitivity, site-sweep, ensemble -----------------------------------------
def invoke(*args: str):
    """Run the real ``g2gsim`` app in-process."""
    from g2gsim.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def json_line(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_sensitivity_writes_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "sens"
    args = ("sensitivity", "ieee13_ofo_notap", STEP, "0.05", "0.1,0.2", "--duration", "2", "--out", out, "--no-progress")
    earlier = json_line(invoke(*args[:3], "0.3,0.2", *args[5:], "--json"))  # another study into the same folder
    assert [row[STEP] for row in earlier["summary"]] == [0.3, 0.2]
    counts = json_line(invoke(*args, "--metric", "worst_vmin", "--json"))
    assert (counts["total"], counts["ok"], counts["failed"], counts["lost"]) == (3, 3, 0, 0)
    assert [row[STEP] for row in counts["summary"]] == [0.05, 0.1, 0.2]  # this study's values, in order
    assert all(row["n_ok"] == 1 and 0.9 < row["worst_vmin"] < 1.0 for row in counts["summary"])
    table = pd.read_csv(out / "sensitivity.csv")
    assert table[STEP].tolist() == [0.05, 0.1, 0.2] and "violation_time_s" in table
    assert sorted(pd.read_parquet(out / "results.parquet")[STEP]) == [0.05, 0.1, 0.2, 0.3]
    plot = Path(counts["plot"])
    assert plot == out / "sensitivity_worst_vmin.png" and plot.stat().st_size > 5000
    again = invoke(*args)  # resumes (nothing to run) and prints the table
    assert again.exit_code == 0, again.output
    assert "primal_step_si" in again.stdout and "0.05" in again.stdout and "ok=3 failed=0" in again.stdout
    assert "0.3" not in again.stdout
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_cli_sensitivity_failed_runs_exit_1_with_outputs(tmp_path: Path) -> None:
    out = tmp_path / "bus"
    result = invoke("sensitivity", "ieee13_ofo_notap", "sites.0.bus", "671", "no_such_bus", "--duration", "2",
                    "--out", out, "--no-progress")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no_such_bus" in result.stderr and "1 of 2 run(s) failed" in result.stderr
    table = pd.read_csv(out / "sensitivity.csv", dtype={"sites.0.bus": str}).set_index("sites.0.bus")
    assert table.loc["671", "n_ok"] == 1 and table.loc["no_such_bus", "n_ok"] == 0  # "671" stayed text


def test_cli_site_sweep_ranks_every_three_phase_bus(tmp_path: Path) -> None:
    from g2gsim.studies.studies import candidate_buses

    out = tmp_path / "sites"
    counts = json_line(invoke("site-sweep", "ieee13_ofo_notap", "--duration", "2", "--metric", "worst_vmin",
                              "--descending", "--out", out, "--no-progress", "--json"))
    expected = candidate_buses(load_scenario("ieee13_ofo_notap"))
    assert counts["ok"] == len(expected) >= 6 and counts["failed"] == 0
    summary = counts["summary"]
    assert sorted(row["bus"] for row in summary) == sorted(expected)
    vmins = [row["worst_vmin"] for row in summary]
    assert vmins == sorted(vmins, reverse=True) and vmins[0] > vmins[-1]
    assert [row["rank"] for row in summary] == list(range(1, len(expected) + 1))
    assert pd.read_csv(out / "site_sweep.csv", dtype={"bus": str})["bus"].tolist() == [row["bus"] for row in summary]
    assert Path(counts["plot"]).stat().st_size > 5000 and Path(counts["map"]).stat().st_size > 5000
    subset = invoke("site-sweep", "ieee13_ofo_notap", "--duration", "2", "--bus", "675,680", "--bus", "634",
                    "--metric", "integral_violation_pu_s", "--out", out, "--no-progress")  # already run: only the table
    assert subset.exit_code == 0, subset.output
    lines = [line for line in subset.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[2].strip() for line in lines] == ["675", "680", "634"]  # least violation first


def test_cli_ensemble_mean_and_confidence_interval(tmp_path: Path) -> None:
    out = tmp_path / "ens"
    args = ("ensemble", "ieee13_baseline_notap", "--duration", "2", "--out", out, "--no-progress")
    counts = json_line(invoke(*args, "--seeds", "0-2", "--confidence", "0.9", "--json"))
    assert (counts["total"], counts["ok"], counts["confidence"]) == (3, 3, 0.9)
    summary = {row["metric"]: row for row in counts["summary"]}
    vmin = summary["worst_vmin"]
    assert vmin["n"] == 3 and vmin["ci_low"] < vmin["mean"] < vmin["ci_high"] and vmin["std"] > 0
    assert "seed" not in summary and (out / "ensemble.csv").is_file()
    same = invoke(*args, "--n", "3", "--metric", "worst_vmin", "--metric", "mean_throughput_tps")
    assert same.exit_code == 0, same.output
    assert "worst_vmin" in same.stdout and "mean_throughput_tps" in same.stdout and "violation_time_s" not in same.stdout
    assert f"{vmin['mean']:.4g}" in same.stdout  # the 95 % run reuses the three recorded seeds
    assert len(list((out / "runs").glob("*.json"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sensitivity", "ieee13_ofo_notap", "controllers.3.params.primal_step_size", "0.1"),
         ["controllers.3.params.primal_step_size", "out of range"]),
        (("sensitivity", "ieee13_ofo_notap", "controllers.0.params.no_such_knob", "0.1"), ["no_such_knob"]),
        (("sensitivity", "ieee13_ofo_notap", STEP, "0.1", "abc"), ["'abc'", "primal_step_size"]),
        (("sensitivity", "ieee13_ofo_notap", STEP, "0.1,,0.2"), ["'0.1,,0.2'", "empty value"]),
        (("sensitivity", "ieee13_ofo_notap", STEP, "0.1", "--seeds", "0-2,x"), ["--seeds", "'x'"]),
        (("sensitivity", "no_such_scenario", STEP, "0.1"), ["no_such_scenario"]),
        (("ensemble", "ieee13_baseline_notap", "--seeds", "9-0"), ["--seeds", "'9-0'", "low <= high"]),
        (("ensemble", "ieee13_baseline_notap", "--n", "1"), ["--n 1", "at least 2 seeds"]),
        (("ensemble", "ieee13_baseline_notap", "--confidence", "1.5"), ["--confidence 1.5"]),
        (("site-sweep", "ieee13_ofo_notap", "--bus", "671,999"), ["--bus '999'", "three-phase buses"]),
        (("site-sweep", "ieee13_ofo_notap", "--site", "2"), ["--site 2", "1 site(s)"]),
        (("hosting-capacity", "ieee13", "--bus", "999"), ["--bus '999'", "three-phase buses"]),
        (("hosting-capacity", "ieee13", "--site", "3"), ["--site 3", "1 site(s)"]),
        (("hosting-capacity", "ieee99"), ["ieee99", "--scenario"]),
        (("hosting-capacity", "ieee13", "--workers", "0"), ["--workers 0"]),
    ],
)
def test_cli_study_input_errors_are_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, "--duration", "2", "--no-progress")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    for fragment in message:
        assert fragment in result.stderr
    assert not (tmp_path / "sweeps").exists()  # nothing ran, nothing written


def test_cli_hosting_capacity_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from g2gsim.cli import app as g2gsim_app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(g2gsim_app, [
        "hosting-capacity", "ieee13", "--bus", "671", "--duration", "2", "--max-gpus", "16000",
        "--resolution", "4000", "--json", "--out", str(tmp_path / "hc"),
    ])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line["capacity_gpus"]) == {"671"} and 0 < line["capacity_gpus"]["671"] <= 16000
    assert (tmp_path / "hc" / "hosting_capacity.png").is_file()


def test_cli_study_commands_screen_with_the_linearised_grid(tmp_path: Path) -> None:
    from g2gsim.studies.sweep import load_results

    out = tmp_path / "lin"
    counts = json_line(invoke("ensemble", "ieee13_baseline_notap", "--duration", "2", "--seeds", "0-1", "--out", out,
                              "--no-progress", "--json", "--linearized"))
    assert (counts["total"], counts["ok"]) == (2, 2)
    runs = load_results(out, write=False)
    assert set(runs["grid_mode"]) == {"linearized"}
    full = tmp_path / "full"
    json_line(invoke("ensemble", "ieee13_baseline_notap", "--duration", "2", "--seeds", "0-1", "--out", full,
                     "--no-progress", "--json"))
    assert "linearized" not in set(load_results(full, write=False).get("grid_mode", ["full"]))

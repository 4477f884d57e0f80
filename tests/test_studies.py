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

from g2gsim.cli.studies import register
from g2gsim.plots import plot_metric_heatmap
from g2gsim.scenarios import load_scenario
from g2gsim.studies import Sweep, SweepError, apply_parameters, load_results, run_sweep
from g2gsim.studies.screening import compare_with_power_flow, linearization_error, run_screening, screening_stats
from g2gsim.studies.studies import ensemble_summary, hosting_capacity, seed_ensemble

STEP = "controllers.0.params.primal_step_size"
#: Columns that legitimately differ between executions (timing, which process ran it).
VOLATILE = {"wall_s", "worker_wall_s", "worker_cpu_s", "worker_pid", "traceback"}


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
    args = (
        "sensitivity",
        "ieee13_ofo_notap",
        STEP,
        "0.05",
        "0.1,0.2",
        "--duration",
        "2",
        "--out",
        out,
        "--no-progress",
    )
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
    result = invoke(
        "sensitivity",
        "ieee13_ofo_notap",
        "sites.0.bus",
        "671",
        "no_such_bus",
        "--duration",
        "2",
        "--out",
        out,
        "--no-progress",
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no_such_bus" in result.stderr and "1 of 2 run(s) failed" in result.stderr
    table = pd.read_csv(out / "sensitivity.csv", dtype={"sites.0.bus": str}).set_index("sites.0.bus")
    assert table.loc["671", "n_ok"] == 1 and table.loc["no_such_bus", "n_ok"] == 0  # "671" stayed text


def test_cli_site_sweep_ranks_every_three_phase_bus(tmp_path: Path) -> None:
    from g2gsim.studies.studies import candidate_buses

    out = tmp_path / "sites"
    counts = json_line(
        invoke(
            "site-sweep",
            "ieee13_ofo_notap",
            "--duration",
            "2",
            "--metric",
            "worst_vmin",
            "--descending",
            "--out",
            out,
            "--no-progress",
            "--json",
        )
    )
    expected = candidate_buses(load_scenario("ieee13_ofo_notap"))
    assert counts["ok"] == len(expected) >= 6 and counts["failed"] == 0
    summary = counts["summary"]
    assert sorted(row["bus"] for row in summary) == sorted(expected)
    vmins = [row["worst_vmin"] for row in summary]
    assert vmins == sorted(vmins, reverse=True) and vmins[0] > vmins[-1]
    assert [row["rank"] for row in summary] == list(range(1, len(expected) + 1))
    assert pd.read_csv(out / "site_sweep.csv", dtype={"bus": str})["bus"].tolist() == [row["bus"] for row in summary]
    assert Path(counts["plot"]).stat().st_size > 5000 and Path(counts["map"]).stat().st_size > 5000
    subset = invoke(
        "site-sweep",
        "ieee13_ofo_notap",
        "--duration",
        "2",
        "--bus",
        "675,680",
        "--bus",
        "634",
        "--metric",
        "integral_violation_pu_s",
        "--out",
        out,
        "--no-progress",
    )  # already run: only the table
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
    assert (
        "worst_vmin" in same.stdout and "mean_throughput_tps" in same.stdout and "violation_time_s" not in same.stdout
    )
    assert f"{vmin['mean']:.4g}" in same.stdout  # the 95 % run reuses the three recorded seeds
    assert len(list((out / "runs").glob("*.json"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("sensitivity", "ieee13_ofo_notap", "controllers.3.params.primal_step_size", "0.1"),
            ["controllers.3.params.primal_step_size", "out of range"],
        ),
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
    result = CliRunner().invoke(
        g2gsim_app,
        [
            "hosting-capacity",
            "ieee13",
            "--bus",
            "671",
            "--duration",
            "2",
            "--max-gpus",
            "16000",
            "--resolution",
            "4000",
            "--json",
            "--out",
            str(tmp_path / "hc"),
        ],
    )
    # the 16000-GPU site's power flow does not converge: beyond the feeder, so infeasible, not an error
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line["capacity_gpus"]) == {"671"} and 0 < line["capacity_gpus"]["671"] < 16000
    assert (line["runs"], line["failed"], line["unsolved"]) == (3, 0, 1)
    assert (tmp_path / "hc" / "hosting_capacity.png").is_file()


def test_cli_study_commands_screen_with_the_linearised_grid(tmp_path: Path) -> None:
    from g2gsim.studies.sweep import load_results

    out = tmp_path / "lin"
    counts = json_line(
        invoke(
            "ensemble",
            "ieee13_baseline_notap",
            "--duration",
            "2",
            "--seeds",
            "0-1",
            "--out",
            out,
            "--no-progress",
            "--json",
            "--linearized",
        )
    )
    assert (counts["total"], counts["ok"]) == (2, 2)
    runs = load_results(out, write=False)
    assert set(runs["grid_mode"]) == {"linearized"}
    full = tmp_path / "full"
    json_line(
        invoke(
            "ensemble",
            "ieee13_baseline_notap",
            "--duration",
            "2",
            "--seeds",
            "0-1",
            "--out",
            full,
            "--no-progress",
            "--json",
        )
    )
    assert "linearized" not in set(load_results(full, write=False).get("grid_mode", ["full"]))


# -- reviewed defects: studies sharing a folder, metric checks, failures, interrupts, dotted keys -----
HC = {"buses": ["671"], "resolution_gpus": 3600, "max_gpus": 7200, "progress": False}


def test_hosting_capacity_matches_rows_by_this_studys_run_ids(tmp_path: Path) -> None:
    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=1)
    hot = apply_parameters(base, {"grid.source_pu": 1.2})  # every size violates
    seed_ensemble(base, 2, tmp_path, progress=False)  # another study's rows: no bus, no site_gpus
    first = hosting_capacity(base, tmp_path, **HC)
    assert (first.table.loc[0, "capacity_gpus"], first.table.loc[0, "infeasible_gpus"]) == (3600, 7200)
    second = hosting_capacity(hot, tmp_path, **HC)  # same buses and sizes, another base scenario
    assert (second.table.loc[0, "capacity_gpus"], second.table.loc[0, "infeasible_gpus"]) == (0, 3600)
    assert sorted(second.runs["site_gpus"]) == [3600, 7200] and (second.runs["violation_time_s"] > 0).all()
    assert set(second.runs["run_id"]).isdisjoint(first.runs["run_id"])
    again = hosting_capacity(base, tmp_path, **HC)  # resumes: the first study's rows, not the second's
    pd.testing.assert_frame_equal(again.table, first.table)
    assert sorted(again.runs["run_id"]) == sorted(first.runs["run_id"])
    assert len(load_results(tmp_path)) == 2 + 2 + 2


def test_hosting_capacity_counts_failed_runs(tmp_path: Path) -> None:
    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=1)
    result = hosting_capacity(base, tmp_path, **{**HC, "buses": ["652"]})  # a single-phase bus: every run fails
    assert result.n_failed == 2 and result.table.loc[0, "n_failed"] == 2
    assert result.table.loc[0, "capacity_gpus"] == 0 and set(result.runs["status"]) == {"failed"}


def test_run_sweep_returns_only_this_sweeps_runs(tmp_path: Path) -> None:
    one = Sweep(base="ieee13_baseline_notap", overrides={"horizon_s": 1}, axes={"seed": [0, 1]})
    two = Sweep(base="ieee13_baseline_notap", overrides={"horizon_s": 2}, axes={"seed": [0, 1]})
    first = run_sweep(one, tmp_path, progress=False)
    with pytest.warns(UserWarning, match="holds the runs of another sweep"):
        second = run_sweep(two, tmp_path, progress=False)
    assert len(first.table) == len(second.table) == 2
    assert set(second.table["horizon_s"]) == {2.0} and set(first.table["run_id"]).isdisjoint(second.table["run_id"])
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 4  # the folder's table keeps every run
    with pytest.warns(UserWarning, match="another sweep"):
        resumed = run_sweep(one, tmp_path, progress=False)
    assert resumed.n_skipped == 2 and sorted(resumed.table["run_id"]) == sorted(first.table["run_id"])


def test_ctrl_c_stops_a_serial_sweep_at_once_and_keeps_written_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from g2gsim.studies import sweep as sweep_module

    real = sweep_module.execute_task
    started: list[str] = []

    def interrupted_at(n: int):
        def run(task):
            started.append(task.run_id)
            if len(started) == n:
                raise KeyboardInterrupt  # the user presses Ctrl-C during run n
            return real(task)

        return run

    seeds = Sweep(base="ieee13_baseline_notap", overrides={"horizon_s": 1}, axes={"seed": [0, 1, 2, 3]})
    monkeypatch.setattr(sweep_module, "execute_task", interrupted_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(seeds, tmp_path / "first", progress=False)
    assert len(started) == 1 and not sweep_module.completed_run_ids(tmp_path / "first")  # no run after Ctrl-C
    started.clear()
    monkeypatch.setattr(sweep_module, "execute_task", interrupted_at(2))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(seeds, tmp_path / "second", progress=False)
    assert len(started) == 2 and sweep_module.completed_run_ids(tmp_path / "second") == {started[0]}


def test_unquoted_dotted_keys_in_a_sweep_file_are_paths(tmp_path: Path) -> None:
    file = tmp_path / "dotted.toml"
    file.write_text(
        'name = "dotted"\nbase = "ieee13_ofo_notap"\nmode = "random"\nsamples = 2\n'
        "[overrides]\nhorizon_s = 1\ngrid.source_pu = 1.02\n"
        '[axes]\nsites.0.bus = ["671", "675"]\ncontrollers.0.params.primal_step_size = {low = 0.05, high = 0.2}\n'
    )
    sweep = Sweep.from_toml(file)
    assert sweep.overrides == {"horizon_s": 1, "grid.source_pu": 1.02}
    assert list(sweep.axes) == ["sites.0.bus", STEP] and sweep.axes[STEP].high == 0.2
    assert sweep.base_scenario().grid.source_pu == 1.02 and len(sweep.tasks()) == 2
    assert Sweep(base="x", overrides={"grid": {"initial_tap_steps": {}}}).overrides == {"grid.initial_tap_steps": {}}
    file.write_text('base = "ieee13_ofo_notap"\n[overrides]\ngrid.source_pu = 1.02\n"grid.source_pu" = 1.0\n')
    with pytest.raises(SweepError, match="'grid.source_pu' is given twice"):
        Sweep.from_toml(file)


def test_cli_sweep_reports_its_own_runs_and_errors_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def sweep_file(name: str, body: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'base = "ieee13_baseline_notap"\n{body}\n')
        return path

    one = sweep_file("one", "[overrides]\nhorizon_s = 1\n[axes]\nseed = [0, 1]")
    two = sweep_file("two", "[overrides]\nhorizon_s = 2\n[axes]\nseed = [0, 1]")
    out = tmp_path / "shared"
    assert json_line(invoke("sweep", one, "--out", out, "--no-progress", "--json"))["ok"] == 2
    second = invoke("sweep", two, "--out", out, "--no-progress")
    assert second.exit_code == 0, second.output
    assert "2 run(s)" in second.stdout and "ok=2 failed=0 lost=0" in second.stdout
    assert "warning:" in second.stderr and "another sweep" in second.stderr
    # a failing run: exit 1 after the table, and again on resume (the failure is recorded)
    failing = sweep_file("fail", '[overrides]\nhorizon_s = 1\n[axes]\n"sites.0.bus" = ["671", "652"]')
    for _attempt in range(2):
        result = invoke("sweep", failing, "--out", tmp_path / "fail", "--no-progress")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "2 run(s)" in result.stdout and "1 of 2 run(s) failed" in result.stderr and "652" in result.stderr
    # bad input: exit 2 with a message, nothing run
    (tmp_path / "bad_base.toml").write_text('base = "no_such_preset"\n[axes]\nseed = [0, 1]\n')
    cases = [
        ((tmp_path / "bad_base.toml",), "no_such_preset"),
        ((sweep_file("bad_val", "[axes]\nhorizon_s = [1, -5]"),), "horizon_s"),
        ((one, "--workers", "0"), "--workers 0"),
        ((one, "--scheduler", "localhost"), "--scheduler 'localhost'"),
    ]
    for args, fragment in cases:
        result = invoke("sweep", *args, "--no-progress")
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert not (tmp_path / "sweeps").exists()


def test_cli_scheduler_connection_errors_exit_1(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        swept = invoke(
            "ensemble",
            "ieee13_baseline_notap",
            "--seeds",
            "0-1",
            "--duration",
            "1",
            "--scheduler",
            "tcp://127.0.0.1:1",
            "--out",
            tmp_path / "e",
            "--no-progress",
        )
        sweep_file = tmp_path / "s.toml"
        sweep_file.write_text('base = "ieee13_baseline_notap"\n[axes]\nseed = [0, 1]\n')
        plain = invoke(
            "sweep", sweep_file, "--scheduler", "tcp://127.0.0.1:1", "--out", tmp_path / "s", "--no-progress"
        )
    for result in (swept, plain):
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "error: --scheduler tcp://127.0.0.1:1" in result.stderr


def test_cli_hosting_capacity_checks_the_metric_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from g2gsim.scenarios.library import bundled_scenarios

    monkeypatch.chdir(tmp_path)
    args = ("hosting-capacity", "ieee13", "--bus", "671", "--max-gpus", "7200", "--resolution", "3600", "--no-progress")
    misspelt = invoke(*args, "--duration", "1", "--metric", "violation_tme_s", "--out", tmp_path / "hc")
    assert misspelt.exit_code == 2 and isinstance(misspelt.exception, SystemExit), misspelt.output
    assert "--metric 'violation_tme_s'" in misspelt.stderr and "violation_time_s" in misspelt.stderr
    from g2gsim.studies.studies import MetricError

    base = load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=1)
    with pytest.raises(MetricError, match="metric 'nope'.*violation_time_s"):  # from the recorded rows
        hosting_capacity(base, tmp_path / "hc", metric="nope", **HC)
    # every run fails (an external load at an unknown bus): outputs written, failures reported, exit 1
    broken = tmp_path / "broken.toml"
    broken.write_text(bundled_scenarios()["ieee13_baseline_notap"].read_text().replace('bus = "680"', 'bus = "nope"'))
    failed = invoke(*args, "--scenario", broken, "--duration", "1", "--json")
    assert failed.exit_code == 1 and isinstance(failed.exception, SystemExit), failed.output
    line = json.loads(failed.stdout.strip().splitlines()[-1])
    assert line["failed"] == 2 and line["capacity_gpus"] == {"671": 0}
    assert "2 of 2 run(s) failed" in failed.stderr and "nope" in failed.stderr
    folder = Path(line["out"])
    assert folder == Path("sweeps") / "hosting_ieee13_baseline_notap_site0_1s"  # scenario, site and duration
    assert (tmp_path / folder / "hosting_capacity.csv").is_file()
    longer = invoke(*args, "--scenario", broken, "--duration", "2", "--json")
    assert longer.exit_code == 1 and json.loads(longer.stdout.strip().splitlines()[-1])["out"].endswith("_2s")

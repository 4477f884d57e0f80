"""The ``g2gsim`` command line (typer app ``g2gsim.cli.app``): list, validate, run, compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g2gsim.cli import app
from g2gsim.kernel.results import RunResult
from g2gsim.scenarios.library import bundled_scenarios
from g2gsim.scenarios.model import Scenario

NAMES = sorted(bundled_scenarios())
METRIC_KEYS = {
    "violation_time_s",
    "integral_violation_pu_s",
    "worst_vmin",
    "worst_vmax",
    "mean_throughput_tps",
    "itl_deadline_fraction",
    "mean_dc_power_kw",
    "peak_dc_power_kw",
    "n_solves",
    "wall_s",
    "seed",
    "scenario",
    "horizon_s",
    "data_source",
}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the app from a scratch folder (``run`` writes ``results/<name>`` by default)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def _flat(text: str) -> str:
    """Whitespace-normalised text (rich wraps long messages)."""
    return " ".join(text.split())


def _assert_clean_failure(result) -> None:
    """A non-zero exit with a message, not a traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "error:" in result.output


def _broken_file(tmp_path: Path) -> Path:
    text = bundled_scenarios()["ieee13_ofo_notap"].read_text()
    text = text.replace("capacity_gpus = 7200", 'capacity_gpus = "lots"')
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


# -- list / validate ---------------------------------------------------------------------------
def test_list_shows_every_bundled_preset(cli) -> None:
    result = cli("list")
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.stdout
    assert "invalid" not in result.stdout


@pytest.mark.parametrize("name", ["ieee13_ofo_notap", "ieee34_ofo_tapchange", "ieee123_storage_qv"])
def test_validate_preset(cli, name: str) -> None:
    result = cli("validate", name)
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and name in result.stdout


def test_validate_file_path(cli, tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(bundled_scenarios()["ieee13_rule_notap"].read_text())
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.output


def test_validate_broken_file_names_the_key(cli, tmp_path: Path) -> None:
    path = _broken_file(tmp_path)
    result = cli("validate", str(path))
    _assert_clean_failure(result)
    text = _flat(result.output)
    assert "sites.0.capacity_gpus" in text
    assert "'lots'" in text
    assert "broken.toml" in text


def test_validate_reports_build_errors(cli, tmp_path: Path) -> None:
    text = bundled_scenarios()["ieee13_ofo_notap"].read_text()
    path = tmp_path / "feeder.toml"
    path.write_text(text.replace('feeder = "ieee13"', 'feeder = "ieee999"'))
    result = cli("validate", str(path))
    _assert_clean_failure(result)
    assert "ieee999" in _flat(result.output)

    path = tmp_path / "params.toml"
    path.write_text(text.replace("w_switch = 1.0", "w_switch = 1.0\nw_swich = 2.0"))
    result = cli("validate", str(path))
    _assert_clean_failure(result)
    assert "w_swich" in _flat(result.output)


def test_validate_runs_a_first_step_and_catches_unknown_buses(cli, tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    path.write_text(bundled_scenarios()["ieee13_ofo_notap"].read_text().replace('bus = "671"', 'bus = "999"'))
    result = cli("validate", str(path))
    _assert_clean_failure(result)
    assert "unknown bus '999'" in _flat(result.output)


def test_validate_unknown_name(cli) -> None:
    result = cli("validate", "nonexistent")
    _assert_clean_failure(result)
    assert "nonexistent" in result.output


# -- run -------------------------------------------------------------------------------------------
# Every in-process run below passes an absolute --out: creating an OpenDSS context moves the
# process working directory back to where opendssdirect was first imported, so a relative
# default folder would land outside tmp_path. The default folder is tested in a subprocess.
def test_run_json_prints_one_line_of_metrics(cli, tmp_path: Path) -> None:
    out = tmp_path / "json_run"
    result = cli("run", "ieee13_ofo_notap", "--duration", "3", "--json", "--no-plots", "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    metrics = json.loads(lines[0])
    assert set(metrics) >= METRIC_KEYS
    assert metrics["scenario"] == "ieee13_ofo_notap"
    assert metrics["horizon_s"] == 3.0
    assert metrics["n_solves"] > 0
    # The human-readable table goes to stderr.
    assert "violation" in result.stderr
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not (out / "plots").exists()


def test_entry_point_default_out_folder(tmp_path: Path) -> None:
    """``python -m g2gsim.cli run`` writes results/<name> under the working directory."""
    env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "250"}
    command = [sys.executable, "-m", "g2gsim.cli", "run", "ieee13_ofo_notap", "--duration", "2", "--json", "--no-plots"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    metrics = json.loads(line)
    default_out = tmp_path / "results" / "ieee13_ofo_notap"
    assert json.loads((default_out / "metrics.json").read_text()) == metrics
    assert RunResult.from_parquet(default_out / "results").table("dc/state").shape[0] > 0

    failed = subprocess.run(
        [sys.executable, "-m", "g2gsim.cli", "run", "nonexistent"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert "ieee13_ofo_notap" in failed.stderr


def test_run_out_writes_metrics_and_results(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "ieee13_baseline_tapchange", "--duration", "2", "--no-plots", "--out", str(out))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    assert metrics["horizon_s"] == 2.0
    stored = RunResult.from_parquet(out / "results")
    state = stored.table("dc/state")
    assert len(state) > 0 and "power_a_w" in state.columns
    assert "grid/voltages" in stored.tables
    assert (out / "results" / "dc__state.parquet").is_file()
    scenario = Scenario.from_toml(out / "scenario.toml")
    assert scenario.name == "ieee13_baseline_tapchange" and scenario.horizon_s == 2
    assert "results written to" in _flat(result.output)


def test_run_with_plots(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "ieee13_ofo_notap", "--duration", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "plots" / "voltage_envelope.png").is_file()
    assert (out / "plots" / "power_dc.png").is_file()


def test_run_seed_override_is_recorded(cli, tmp_path: Path) -> None:
    out = tmp_path / "seeded"
    result = cli("run", "ieee13_ofo_notap", "--duration", "2", "--seed", "7", "--no-plots", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seed"] == 7
    assert json.loads((out / "metrics.json").read_text())["seed"] == 7
    assert tomllib.loads((out / "scenario.toml").read_text())["seed"] == 7


def test_run_scenario_file(cli, tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    text = bundled_scenarios()["ieee13_ofo_notap"].read_text()
    path.write_text(text.replace('name = "ieee13_ofo_notap"', 'name = "custom_run"'))
    out = tmp_path / "custom_out"
    result = cli("run", str(path), "--duration", "2", "--json", "--no-plots", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scenario"] == "custom_run"
    assert (out / "metrics.json").is_file()


def test_run_unknown_scenario_lists_bundled(cli) -> None:
    result = cli("run", "nonexistent")
    _assert_clean_failure(result)
    text = _flat(result.output)
    assert "nonexistent" in text
    for name in NAMES:
        assert name in text


def test_run_broken_file(cli, tmp_path: Path) -> None:
    result = cli("run", str(_broken_file(tmp_path)), "--duration", "2")
    _assert_clean_failure(result)
    assert "sites.0.capacity_gpus" in _flat(result.output)


def test_run_bad_duration_is_a_clean_error(cli) -> None:
    result = cli("run", "ieee13_ofo_notap", "--duration", "-1")
    _assert_clean_failure(result)
    assert "horizon_s" in _flat(result.output)


def test_run_bad_data_folder_is_a_clean_error(cli, tmp_path: Path) -> None:
    result = cli("run", "ieee13_ofo_notap", "--duration", "1", "--no-plots", "--data", str(tmp_path / "nowhere"))
    _assert_clean_failure(result)
    assert "nowhere" in _flat(result.output)


def test_run_unknown_bus_is_a_clean_error(cli, tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    text = bundled_scenarios()["ieee13_ofo_notap"].read_text()
    path.write_text(text.replace('bus = "671"', 'bus = "nope"'))
    result = cli("run", str(path), "--duration", "1", "--no-plots", "--json", "--out", str(tmp_path / "bus_out"))
    _assert_clean_failure(result)
    assert "'nope'" in _flat(result.output)
    assert result.stdout == ""


# -- compare -------------------------------------------------------------------------------------
def test_compare_prints_both_names(cli) -> None:
    result = cli("compare", "ieee13_baseline_notap", "ieee13_ofo_notap", "--duration", "2")
    assert result.exit_code == 0, result.output
    for name in ("ieee13_baseline_notap", "ieee13_ofo_notap"):
        assert name in result.output
    assert "power-flow solves" in result.output


def test_compare_json_and_out(cli, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = cli(
        "compare", "ieee13_baseline_notap", "ieee13_rule_notap", "--duration", "2", "--json", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(rows) == {"ieee13_baseline_notap", "ieee13_rule_notap"}
    for name, metrics in rows.items():
        assert set(metrics) >= METRIC_KEYS
        assert metrics["scenario"] == name
        assert (out / name / "metrics.json").is_file()
        assert not (out / name / "plots").exists()


def test_compare_unknown_scenario(cli) -> None:
    result = cli("compare", "ieee13_ofo_notap", "nonexistent", "--duration", "1")
    _assert_clean_failure(result)
    assert "nonexistent" in result.output


# -- live scenarios (issue 8): `run --live`, against the shipped fakes ---------------------------
def _short_live_file(tmp_path: Path, endpoints: dict | None = None) -> Path:
    """The live preset with a 1 s power buffer (quick warm-up), optionally re-pointed."""
    from g2gsim.live.scenario import with_endpoints

    scenario = Scenario.from_toml(bundled_scenarios()["ieee13_live_ofo"])
    scenario = with_endpoints(scenario, endpoints or {}, buffer_s=1.0, warmup_timeout_s=30.0)
    path = tmp_path / "live.toml"
    scenario.to_toml(path)
    return path


def test_live_scenario_needs_the_live_flag(cli, tmp_path: Path) -> None:
    result = cli("run", "ieee13_live_ofo", "--duration", "1")
    _assert_clean_failure(result)
    assert "--live" in _flat(result.output)
    assert not (tmp_path / "results").exists(), "nothing is started or written"


def test_live_flag_needs_a_live_scenario(cli) -> None:
    result = cli("run", "ieee13_ofo_notap", "--live", "--duration", "1")
    _assert_clean_failure(result)
    assert "[sites.live]" in _flat(result.output)
    result = cli("run", "ieee13_ofo_notap", "--fakes", "--duration", "1")
    _assert_clean_failure(result)
    assert "--fakes only applies with --live" in _flat(result.output)


def test_validate_live_scenario_does_not_contact_servers(cli) -> None:
    result = cli("validate", "ieee13_live_ofo")
    assert result.exit_code == 0, result.output
    assert "live" in result.stdout


def test_run_live_against_a_running_fake_cluster(cli, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("zeus")
    from g2gsim.live.scenario import fake_cluster_for

    base = Scenario.from_toml(bundled_scenarios()["ieee13_live_ofo"])
    fakes = fake_cluster_for(base, tick_s=0.2).start()  # ephemeral ports
    try:
        path = _short_live_file(tmp_path, fakes.endpoints())
        result = cli(
            "run", str(path), "--live", "--duration", "3", "--json", "--no-plots", "--out", str(tmp_path / "o")
        )
    finally:
        fakes.stop()
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n_solves"] > 0 and metrics["mean_dc_power_kw"] > 0
    assert (tmp_path / "o" / "metrics.json").is_file()


def test_run_live_unreachable_server_is_a_clean_error(cli, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    path = _short_live_file(tmp_path)  # the preset's 127.0.0.1 ports, nothing listening
    result = cli("run", str(path), "--live", "--duration", "2", "--no-plots")
    _assert_clean_failure(result)
    assert "not reachable" in _flat(result.output)


def test_run_live_with_fakes_serves_the_scenario_endpoints(cli, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("zeus")
    path = _short_live_file(tmp_path)
    result = cli("run", str(path), "--live", "--fakes", "--duration", "2", "--json", "--no-plots")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["n_solves"] > 0


def test_run_power_budget_shows_budget_rows(cli) -> None:
    result = cli("run", "ieee13_power_budget", "--duration", "5", "--no-plots")
    assert result.exit_code == 0, result.output
    assert "time above power budget (s)" in result.stdout
    plain = cli("run", "ieee13_ofo_notap", "--duration", "1", "--no-plots")
    assert "power budget" not in plain.stdout


def test_compare_refuses_two_scenarios_of_one_name(cli, tmp_path: Path) -> None:
    text = bundled_scenarios()["ieee13_baseline_notap"].read_text()
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text.replace("source_pu = 1.0", "source_pu = 1.05"))
    assert "source_pu = 1.05" in (tmp_path / "b.toml").read_text()
    result = cli(
        "compare", str(tmp_path / "a.toml"), str(tmp_path / "b.toml"), "--duration", "1", "--out", str(tmp_path / "cmp")
    )
    _assert_clean_failure(result)
    assert result.exit_code == 2
    text = _flat(result.output)
    assert "a.toml" in text and "b.toml" in text and "'ieee13_baseline_notap'" in text and "distinct" in text
    assert not (tmp_path / "cmp").exists(), "nothing ran"


def test_run_interrupted_exits_130_and_points_at_the_chunks(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import g2gsim.scenarios.runner as runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_scenario", interrupted)
    result = cli("run", "ieee13_ofo_notap", "--duration", "1", "--no-plots")
    assert result.exit_code == 130
    assert "interrupted" in result.output and "chunks" in _flat(result.output)


# -- the plain functions behind the commands, and the old module paths -----------------------------
def test_results_table_rows_come_from_the_metrics_record() -> None:
    from g2gsim.cli.run import results_table
    from g2gsim.metrics import table_metrics

    metrics = {"violation_time_s": 1.25, "n_solves": 36006, "wall_s": None}
    table = results_table({"a": metrics})
    labels = list(table.columns[0].cells)
    assert labels == [info.label for info in table_metrics([metrics])]
    cells = dict(zip(labels, table.columns[1].cells, strict=True))
    assert cells["voltage violation time (s)"] == "1.2" and cells["power-flow solves"] == "36,006"
    assert cells["wall clock (s)"] == "-" and "time above power budget (s)" not in cells


def test_run_options_and_checks_are_plain_functions(tmp_path: Path) -> None:
    from g2gsim.cli.run import duplicate_name_problem, live_flag_problem, with_run_options
    from g2gsim.scenarios.model import ScenarioError

    base = Scenario.from_toml(bundled_scenarios()["ieee13_ofo_notap"])
    changed = with_run_options(base, duration=5, seed=3, data=tmp_path)
    assert (changed.horizon_s, changed.seed, changed.data) == (5, 3, str(tmp_path.resolve()))
    assert with_run_options(base) is base
    with pytest.raises(ScenarioError, match="horizon_s"):
        with_run_options(base, duration=-1)
    live = Scenario.from_toml(bundled_scenarios()["ieee13_live_ofo"])
    assert live_flag_problem(base, live=False, fakes=False) is None
    assert live_flag_problem(live, live=True, fakes=True) is None
    assert "run it with --live" in (live_flag_problem(live, live=False, fakes=False) or "")
    assert "[sites.live]" in (live_flag_problem(base, live=True, fakes=False) or "")
    assert live_flag_problem(base, live=False, fakes=True) == "--fakes only applies with --live"
    assert duplicate_name_problem(["a", "b"], [base, live]) is None
    assert "'a' and 'b' are both named" in (duplicate_name_problem(["a", "b"], [base, base]) or "")


def test_errors_are_one_line_however_long(cli) -> None:
    result = cli("validate", "nonexistent")
    _assert_clean_failure(result)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(NAMES[-1])


def test_old_command_modules_warn_and_forward() -> None:
    import importlib

    import g2gsim.cli.planning
    import g2gsim.live.scenario
    import g2gsim.plots

    moved = [
        ("g2gsim.planning_cli", "register", g2gsim.cli.planning.register),
        ("g2gsim.live.cli", "with_endpoints", g2gsim.live.scenario.with_endpoints),
        ("g2gsim.live.cli", "fake_cluster_for", g2gsim.live.scenario.fake_cluster_for),
        ("g2gsim.studies.studies", "plot_metric_heatmap", g2gsim.plots.plot_metric_heatmap),
        ("g2gsim.studies.studies", "plot_hosting_capacity", g2gsim.plots.plot_hosting_capacity),
    ]
    for module, name, target in moved:
        with pytest.warns(DeprecationWarning, match="the old path goes in the next release"):
            assert getattr(importlib.import_module(module), name) is target

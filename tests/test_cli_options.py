"""Options every scenario command shares: ``--set PATH=VALUE``, ``--retry-failed``, and what
``run`` and ``validate`` say about the horizon and the memory of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from g2gsim.cli import app
from g2gsim.cli.common import parse_sets


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str):
        result = runner.invoke(app, list(args))
        assert "Traceback" not in result.output
        return result

    return invoke


def _flat(text: str) -> str:
    return " ".join(text.split())


def _base_of(folder: Path) -> dict:
    """The base scenario a study recorded in its sweep.json."""
    return json.loads((folder / "sweep.json").read_text())["base"]


def test_set_values_are_toml_and_text_fields_stay_text() -> None:
    raw = {"sites": [{"bus": "671", "models": [{"replicas": 10}]}], "seed": 0}
    changes = parse_sets(["sites.0.bus=675", "sites.0.models.0.replicas=360", "seed=3", "grid.x=[1, 2]"], raw)
    assert changes == {"sites.0.bus": "675", "sites.0.models.0.replicas": 360, "seed": 3, "grid.x": [1, 2]}


def test_run_and_compare_take_set(cli) -> None:
    result = cli("run", "ieee13_baseline_notap", "--duration", "0.3", "--no-plots", "--json", "--set", "seed=7")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["seed"] == 7
    result = cli(
        "compare", "ieee13_baseline_notap", "ieee13_ofo_notap", "--duration", "0.3", "--json", "--set", "seed=4"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert {row["seed"] for row in rows.values()} == {4}


def test_set_errors_name_the_path_and_what_is_allowed(cli) -> None:
    result = cli("run", "ieee13_ofo_notap", "--set", "controllers.0.params.primal_step_size=x")
    assert result.exit_code == 2
    assert "controllers.0.params.primal_step_size" in result.output and "valid number" in result.output
    result = cli("run", "ieee13_ofo_notap", "--set", "sites.9.bus=671")
    assert result.exit_code == 2 and "sites has 1 item(s)" in _flat(result.output)
    result = cli("run", "ieee13_ofo_notap", "--set", "seed")
    assert result.exit_code == 2 and "give PATH=VALUE" in result.output


def test_validate_takes_set_and_prints_the_memory_and_the_horizon_warning(cli) -> None:
    result = cli("validate", "ieee13_ofo_tapchange", "--set", "horizon_s=300")
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "memory: a full run (300 s) needs about" in flat
    assert "ends before the first scheduled event" in flat and "1000 s" in flat
    result = cli("validate", "ieee13_ofo_notap", "--set", "horizon_s=1e9")
    assert result.exit_code == 2 and "over the limit" in _flat(result.output)
    result = cli("validate", "ieee13_ofo_notap", "--set", "sites.0.bus=999")
    assert result.exit_code == 1 and "three-phase buses: " in _flat(result.output)


def test_run_warns_when_the_horizon_misses_every_event(cli) -> None:
    result = cli("run", "ieee13_ofo_tapchange", "--duration", "1", "--no-plots")
    assert result.exit_code == 0, result.output
    assert "warning: scenario 'ieee13_ofo_tapchange': the horizon (1 s) ends before" in _flat(result.output)


@pytest.mark.parametrize(
    "command",
    [
        ["sensitivity", "ieee13_ofo_notap", "controllers.0.params.primal_step_size", "0.1"],
        ["site-sweep", "ieee13_baseline_notap", "--bus", "671"],
        ["ensemble", "ieee13_baseline_notap", "--n", "2"],
        ["hosting-capacity", "ieee13", "--bus", "671", "--max-gpus", "64", "--resolution", "64"],
    ],
    ids=["sensitivity", "site-sweep", "ensemble", "hosting-capacity"],
)
def test_every_study_command_takes_set(cli, tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "study"
    result = cli(*command, "--duration", "0.3", "--out", str(out), "--no-progress", "--set", "v_min=0.9")
    assert result.exit_code == 0, result.output
    assert _base_of(out)["v_min"] == 0.9


def test_the_sweep_command_takes_set_and_retries_failed_runs(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'name = "s"\nbase = "ieee13_baseline_notap"\n[overrides]\nhorizon_s = 0.3\n'
        '[axes]\n"sites.0.bus" = ["671", "999"]\n'
    )
    out = tmp_path / "out"
    result = cli("sweep", str(sweep), "--out", str(out), "--no-progress", "--set", "v_min=0.9")
    assert result.exit_code == 1  # bus 999 fails at run time
    assert json.loads((out / "sweep.json").read_text())["overrides"]["v_min"] == 0.9
    first = pd.read_parquet(out / "results.parquet").set_index("sites.0.bus")["worker_wall_s"]
    result = cli("sweep", str(sweep), "--out", str(out), "--no-progress", "--set", "v_min=0.9", "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped"] == 2
    result = cli(
        "sweep", str(sweep), "--out", str(out), "--no-progress", "--set", "v_min=0.9", "--json", "--retry-failed"
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped"] == 1
    again = pd.read_parquet(out / "results.parquet").set_index("sites.0.bus")["worker_wall_s"]
    assert again["671"] == first["671"] and again["999"] != first["999"]

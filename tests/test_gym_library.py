"""Scenario families, screened libraries with held-out splits, the evaluation (function and
CLI) and the example script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from g2gsim.cli import app
from g2gsim.gym import (
    G2GEnv,
    ProfileVariation,
    RampVariation,
    ScenarioFamily,
    ScenarioLibrary,
    Screening,
    TapVariation,
    build_library,
    evaluate,
)
from g2gsim.gym.evaluate import METRIC_COLUMNS
from g2gsim.scenarios import build_simulation
from g2gsim.scenarios.model import ScenarioError

ROOT = Path(__file__).resolve().parents[1]
REGULATORS = ("creg1a", "creg1b", "creg1c")


def _family(**changes) -> ScenarioFamily:
    fields = {
        "name": "ieee13-rl",
        "base": "ieee13_ofo_notap",
        "horizon_s": 60,
        "replicas": (0.6, 1.5),
        "initial_batches": (32, 128, 512),
        "pv": ProfileVariation(scale=(0.5, 2.0), profiles=(0, 1, 2)),
        "loads": ProfileVariation(scale=(1.0, 3.0)),
        "ramps": RampVariation(probability=0.5, start_s=(10, 30), duration_s=(5, 20)),
        "taps": TapVariation(regulators=REGULATORS, count=(0, 2), t_s=(10, 50), steps=(4, 14)),
    }
    return ScenarioFamily(**{**fields, **changes})


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> ScenarioLibrary:
    folder = tmp_path_factory.mktemp("library")
    return build_library(_family(), folder, 6, test_fraction=0.34, screening=Screening(min_violation_s=5))


# -- families ----------------------------------------------------------------------------------
def test_a_family_draws_the_same_member_for_the_same_seed_within_its_ranges() -> None:
    family = _family()
    members = family.generate(8)
    assert family.sample(5) == members[5] and members[5] != members[6]
    base = family.base_scenario()
    assert base.horizon_s == 60 and [c.type for c in base.controllers] == ["ofo"]
    for scenario in members:
        assert scenario.horizon_s == 60 and scenario.name.startswith("ieee13-rl-")
        site = scenario.sites[0]
        scale = site.models[0].replicas / base.sites[0].models[0].replicas
        assert 0.55 <= scale <= 1.5 and {m.initial_batch for m in site.models} <= {32, 128, 512}
        for model in site.models:
            assert len(model.ramps) <= 1 and all(10 <= r.t_start_s <= 30 for r in model.ramps)
        pv = scenario.grid.generators[0].profile
        assert pv.profile in (0, 1, 2) and 15.0 <= pv.peak_kw <= 60.0
        taps = [c for c in scenario.controllers if c.name == "family_taps"]
        for section in taps:
            assert 1 <= len(section.events) <= 2
            assert all(set(e.tap_steps) == set(REGULATORS) and 10 <= e.t_s <= 50 for e in section.events)
        build_simulation(scenario)  # every member builds (capacity holds)
    assert len({s.seed for s in members}) == 8


def test_a_family_round_trips_through_toml_and_checks_its_ranges(tmp_path) -> None:
    family = _family()
    path = tmp_path / "family.toml"
    family.to_toml(path)
    again = ScenarioFamily.from_toml(path)
    assert again == family and again.sample(2) == family.sample(2)
    with pytest.raises(ValueError, match="low end"):
        ScenarioFamily(name="x", base="ieee13_ofo_notap", replicas=(2.0, 1.0))
    with pytest.raises(ScenarioError, match="no site 'elsewhere'"):
        ScenarioFamily(name="x", base="ieee13_ofo_notap", site="elsewhere").sample(0)
    fixed = ScenarioFamily(name="x", base="ieee13_ofo_notap", seeds=False)
    assert fixed.sample(3).seed == fixed.base_scenario().seed


# -- libraries ---------------------------------------------------------------------------------
def test_a_library_keeps_screened_members_splits_and_saves_them(library: ScenarioLibrary) -> None:
    index = library.index
    assert len(library) + len(index["rejected"]) == 6 and len(library) >= 2
    for entry in library:
        assert entry.baseline["violation_time_s"] >= 5
        assert entry.ofo["integral_violation_pu_s"] <= 0.8 * entry.baseline["integral_violation_pu_s"]
        scenario = library.scenario(entry.name)
        assert scenario.seed == _family().sample(entry.seed).seed
        assert len(library.penalty(entry.name)) == 60 and len(library.penalty(entry.name, "baseline")) == 60
    assert all(r["reason"] for r in index["rejected"])
    splits = {e.split for e in library}
    assert splits == {"train", "test"}
    test = library.split("test")
    assert len(test) == round(0.34 * len(library)) and {e.split for e in test} == {"test"}
    again = ScenarioLibrary.load(library.folder)
    assert [e.name for e in again] == [e.name for e in library]
    assert set(library.table().columns) >= {"name", "split", "baseline.violation_time_s", "ofo.integral_violation_pu_s"}
    drawn = {library.sample(np.random.default_rng(k)).name for k in range(30)}
    assert drawn <= {e.name for e in library}
    with pytest.raises(LookupError, match="no 'validation' scenarios"):
        library.split("validation")


def test_an_environment_samples_its_episodes_from_a_library_or_a_family(library: ScenarioLibrary) -> None:
    env = G2GEnv(library.folder, reward={"relative_to_ofo": True})
    names = set()
    for seed in range(4):
        env.reset(seed=seed)
        names.add(env.scenario.name)
        assert env._ofo is not None and len(env._ofo) == 60  # the library's stored OFO penalty
    assert names <= {e.name for e in library.split("train")}
    family_env = G2GEnv(_family(), horizon_s=10)
    family_env.reset(seed=0)
    first = family_env.scenario.name
    family_env.reset(seed=1)
    assert family_env.scenario.name != first


# -- evaluation --------------------------------------------------------------------------------
def test_evaluate_compares_references_and_policies_on_held_out_scenarios(library: ScenarioLibrary, tmp_path) -> None:
    hold = lambda observation: np.ones(5, dtype=np.int64)  # noqa: E731

    class Predictor:
        def predict(self, observation, deterministic=True):
            return np.zeros(5, dtype=np.int64), None

    evaluation = evaluate(library, {"hold": hold, "lower": Predictor()})
    test = library.split("test")
    table = evaluation.table
    assert len(table) == 5 * len(test) and list(table.columns) == ["scenario", "controller", *METRIC_COLUMNS]
    summary = evaluation.summary()
    assert list(summary.index) == ["baseline", "rule_based", "ofo", "hold", "lower"]
    assert summary.loc["ofo", "integral_violation_pu_s"] < summary.loc["baseline", "integral_violation_pu_s"]
    assert summary.loc["lower", "integral_violation_pu_s"] < summary.loc["hold", "integral_violation_pu_s"]
    assert np.isnan(summary.loc["ofo", "return"]) and np.isfinite(summary.loc["hold", "return"])
    assert summary.loc["baseline", "batch_changes"] == 0 and summary.loc["ofo", "batch_changes"] > 0
    assert evaluation.plot(tmp_path / "eval.png").stat().st_size > 1000


def test_the_cli_builds_a_library_and_evaluates_a_policy_file(tmp_path) -> None:
    family = tmp_path / "family.toml"
    _family(horizon_s=30, initial_batches=(512,), replicas=(1.4, 1.5)).to_toml(family)
    runner = CliRunner()
    result = runner.invoke(
        app, ["rl", "library", str(family), str(tmp_path / "lib"), "--n", "3", "--min-violation-s", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "of 3 kept" in result.output
    policy = tmp_path / "policy.py"
    policy.write_text("import numpy as np\n\ndef lower(observation):\n    return np.zeros(5, dtype=int)\n")
    args = ["rl", "evaluate", str(tmp_path / "lib"), "--split", "train", "--policy", f"lower={policy}:lower"]
    result = runner.invoke(app, [*args, "--reference", "baseline", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "lower" in result.output and "baseline" in result.output
    frame = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert set(frame["controller"]) == {"baseline", "lower"} and (tmp_path / "eval" / "evaluation.png").is_file()
    bad = runner.invoke(app, ["rl", "evaluate", str(tmp_path / "lib"), "--policy", "nope"])
    assert bad.exit_code == 2 and "module:attribute" in bad.output


def test_the_example_runs_a_random_and_a_scripted_policy_for_60_simulated_seconds() -> None:
    script = ROOT / "examples" / "rl_policies.py"
    done = subprocess.run(
        [sys.executable, str(script), "--horizon-s", "60"], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("random: return") for line in lines)
    assert any(line.strip().startswith("scripted: return") for line in lines)

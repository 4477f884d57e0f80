"""A scenario's ``batch_limit``: the plan cuts every controller's feasible batches, errors name what is
wrong, and the power-budget planner takes the same bounds and corrects TTFT where a site reports it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from g2gsim.controllers.batching import FeasibleBatches
from g2gsim.controllers.budget import Budget, ScheduledBudget
from g2gsim.controllers.power_budget import PowerBudgetConfig, PowerBudgetController
from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.datacenter.config import DatacenterConfig, ModelDeployment
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.kernel import Simulation
from g2gsim.kernel.mailbox import Mailbox
from g2gsim.planning import ModelBounds, SloTargets
from g2gsim.scenarios import load_scenario, run_scenario
from g2gsim.scenarios.build import ScenarioContext, build_simulation
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.runner import RunFailed

DATA = open_data_source(None)
PRESET = load_scenario("ieee13_ofo_planned")
ALL_AT_8 = {f"sites.0.models.{i}.initial_batch": 8 for i in range(len(PRESET.sites[0].models))}
#: Controller sets that push batches up (tuned to reach the top of the feasible set within a minute).
CONTROLLERS: dict[str, list[dict[str, Any]]] = {
    "ofo": [
        {
            "type": "ofo",
            "name": "ofo",
            "site": "dc",
            "params": {"primal_step_size": 1.0, "w_throughput": 0.1, "sensitivity_update_interval": 0},
        }
    ],
    "rule_based": [{"type": "rule_based", "name": "rb", "site": "dc", "params": {"v_min": 0.8, "v_max": 0.9}}],
    "power_budget": [
        {"type": "budget", "name": "budget", "site": "dc", "events": [{"t_s": 0, "kw": 6000.0}]},
        {"type": "power_budget", "name": "pb", "site": "dc", "budget": "budget", "params": {"knobs": ["batch"]}},
    ],
}


def commanded_batches(run: Any) -> dict[str, int]:
    """The largest batch each model was commanded in a run."""
    commands = run.result.commands
    largest: dict[str, int] = {}
    for payload in commands[commands.kind == "SetBatchSize"].payload:
        for label, batch in payload["batch"].items():
            largest[label] = max(largest.get(label, 0), int(batch))
    return largest


# -- the preset -----------------------------------------------------------------------------------
def test_the_planned_preset_cuts_every_feasible_set_at_the_plan() -> None:
    built = build_simulation(PRESET)
    want = {"Llama-3.1-8B": 128, "Llama-3.1-70B": 128, "Llama-3.1-405B": 128, "Qwen3-30B-A3B": 256}
    want["Qwen3-235B-A22B"] = 64
    assert built.simulation.metadata["batch_limits"] == {"dc": want}
    specs = built.sites["dc"].specs
    assert {label: spec.feasible[-1] for label, spec in specs.items()} == want
    sets = FeasibleBatches.from_specs(specs)  # what OFO, rule-based and load shifting build
    assert {label: sizes[-1] for label, sizes in zip(sets.labels, sets.sizes, strict=True)} == want
    limits = ScenarioContext(PRESET, DATA).batch_limits(PRESET.sites[0])
    assert limits["Qwen3-235B-A22B"].plan is not None and limits["Qwen3-235B-A22B"].plan.binding == "memory"
    assert limits["Qwen3-30B-A3B"].plan is not None and limits["Qwen3-30B-A3B"].plan.binding == "itl"


def test_the_unplanned_preset_is_unchanged() -> None:
    built = build_simulation(load_scenario("ieee13_ofo_tapchange"))
    assert "batch_limits" not in built.simulation.metadata
    assert all(spec.feasible[-1] == 512 for spec in built.sites["dc"].specs.values())


def test_slo_fields_round_trip_through_a_file(tmp_path) -> None:
    changed = PRESET.with_overrides(
        **{"sites.0.models.0.input_tokens": 512, "sites.0.models.0.batch_limit": 64, **ALL_AT_8}
    )
    path = tmp_path / "planned.toml"
    changed.to_toml(path)
    again = Scenario.from_toml(path)
    assert again == changed
    entry = again.sites[0].models[0]
    slo = again.sites[0].slo_of(entry)
    assert (slo.batch_limit, slo.input_tokens, slo.output_tokens, slo.ttft_deadline_s) == (64, 512, 1024, 2.0)


# -- errors ---------------------------------------------------------------------------------------
def test_a_starting_batch_above_the_plan_names_the_sizes_allowed() -> None:
    bad = PRESET.with_overrides(**{"sites.0.models.4.initial_batch": 128})
    with pytest.raises(
        ScenarioError, match=r"initial_batch 128 is above the batch limit 64 \(planned; binding bound: "
    ):
        build_simulation(bad)


def test_incomplete_targets_and_impossible_limits_are_named() -> None:
    with pytest.raises(ScenarioError, match=r'sites.0.models.0 \(Llama-3.1-8B\): batch_limit = "plan" needs input_'):
        PRESET.with_overrides(**{"sites.0.slo": {"batch_limit": "plan"}})
    with pytest.raises(ScenarioError, match="batch_limit 4 is below every feasible batch size"):
        PRESET.with_overrides(**{"sites.0.slo": None, "sites.0.models.0.batch_limit": 4, **ALL_AT_8})
    with pytest.raises(ScenarioError, match='batch_limit must be a positive batch size or "plan"'):
        PRESET.with_overrides(**{"sites.0.slo.batch_limit": 0})
    tight = PRESET.with_overrides(**{"sites.0.slo.ttft_deadline_s": 0.001, **ALL_AT_8})
    with pytest.raises(ScenarioError, match=r"no feasible batch size .* meets every bound \(binding: ttft"):
        build_simulation(tight)


def test_a_planned_model_without_figures_is_an_error_naming_them() -> None:
    raw = PRESET.to_dict()
    raw["models"] = {
        "Llama-3.1-8B": {"model_id": "org/mystery-8b", "itl_deadline_s": 0.08}
    }  # the data, not the figures
    scenario = Scenario.from_dict(raw)
    with pytest.raises(
        ScenarioError, match=r"model 'Llama-3.1-8B' \(model_id 'org/mystery-8b'\): no architecture figures"
    ):
        build_simulation(scenario)


def test_a_scheduled_batch_above_the_limit_is_refused_by_the_site() -> None:
    schedule = [{"type": "batch_schedule", "name": "bs", "site": "dc"}]
    schedule[0]["events"] = [{"t_s": 1, "model": "Llama-3.1-8B", "batch": 256}]
    scenario = PRESET.with_overrides(horizon_s=3, controllers=schedule)
    with pytest.raises(RunFailed, match=r"batch 256 of 'Llama-3.1-8B' is not a known batch size; allowed: \[8, "):
        run_scenario(scenario, plots=False)


# -- no controller commands a batch above the plan ----------------------------------------------------
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(CONTROLLERS)),
    tokens_in=st.integers(128, 4096),
    tokens_out=st.integers(128, 2048),
    ttft=st.floats(1.0, 6.0),
)
def test_no_controller_commands_a_batch_above_the_planned_limit(kind, tokens_in, tokens_out, ttft) -> None:
    slo = {"batch_limit": "plan", "input_tokens": tokens_in, "output_tokens": tokens_out, "ttft_deadline_s": ttft}
    scenario = PRESET.with_overrides(horizon_s=40, controllers=CONTROLLERS[kind], **{"sites.0.slo": slo}, **ALL_AT_8)
    run = run_scenario(scenario, plots=False)
    limits = run.result.meta["batch_limits"]["dc"]
    commanded = commanded_batches(run)
    assert commanded, f"{kind} sent no batch command"
    assert all(batch <= limits[label] for label, batch in commanded.items()), (commanded, limits)
    state = run.result.tables["dc/state"]
    assert all(state[f"{label}.batch"].max() <= limit for label, limit in limits.items())
    assert any(commanded.get(label) == limit for label, limit in limits.items())  # it did push to the limit


def test_load_shifting_between_sites_stays_within_each_sites_limit() -> None:
    base = load_scenario("ieee123_loadshift")
    changes = {f"sites.{i}.slo": {"batch_limit": 32} for i in range(len(base.sites))}
    run = run_scenario(base.with_overrides(horizon_s=60, **changes), plots=False)
    assert run.result.meta["batch_limits"] == {s.name: {m.model: 32 for m in s.models} for s in base.sites}
    for site in base.sites:
        state = run.result.tables[f"{site.name}/state"]
        assert all(state[f"{m.model}.batch"].max() <= 32 for m in site.models)


# -- the power-budget planner takes the same bounds -----------------------------------------------------
def test_the_power_budget_controller_gets_the_scenarios_bounds() -> None:
    scenario = PRESET.with_overrides(controllers=CONTROLLERS["power_budget"], **ALL_AT_8)
    built = build_simulation(scenario)
    controller = next(c for c in built.simulation.components if isinstance(c, PowerBudgetController))
    assert set(controller.bounds) == set(PAPER_MODELS)
    bounds = controller.bounds["Llama-3.1-405B"]
    assert bounds.targets.ttft_deadline_s == 2.0 and bounds.memory_batch == 153


class _WithTtft:
    """A site state with a ``ttft_s`` per model (as a live site reports it)."""

    def __init__(self, state: Any, ttft_s: np.ndarray) -> None:
        self._state = state
        self.ttft_s = ttft_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


LABELS = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-30B-A3B")
TARGETS = SloTargets(input_tokens=4096, output_tokens=512, ttft_deadline_s=0.6)


def test_observed_ttft_corrects_the_plan(monkeypatch) -> None:
    bounds = {label: ModelBounds.of(PAPER_MODELS[label], TARGETS) for label in LABELS}
    factor = 1.6  # the servers are slower to first token than the model says
    publish, publish_stretch = Mailbox.publish, Mailbox.publish_stretch

    def ttft_added(box: Mailbox, value: Any) -> Any:
        if box.name != "dc.state":
            return value
        ttft = np.array(
            [
                factor * float(bounds[m].ttft_s(np.array(float(b)), np.array(float(itl))))
                for m, b, itl in zip(value.models, value.batch, value.itl_s, strict=True)
            ]
        )
        return _WithTtft(value, ttft)

    def with_ttft(box: Mailbox, tick: int, value: Any) -> None:
        publish(box, tick, ttft_added(box, value))

    def stretch_with_ttft(box: Mailbox, ticks: range, last: Any, rows: Any = None, values: Any = None) -> None:
        queued = None if values is None else (lambda: [ttft_added(box, v) for v in values()])
        publish_stretch(box, ticks, ttft_added(box, last), rows, queued)

    monkeypatch.setattr(Mailbox, "publish", with_ttft)
    monkeypatch.setattr(Mailbox, "publish_stretch", stretch_with_ttft)  # a quiet stretch published at once
    deployments = tuple(ModelDeployment(spec=PAPER_MODELS[m], initial_batch=8, replicas=20) for m in LABELS)
    config = DatacenterConfig(deployments=deployments, capacity_gpus=200)
    dc = OfflineDatacenter("dc", config, DATA)
    budget = ScheduledBudget("budget", "dc", Budget(5000).at(0))
    tuning = PowerBudgetConfig(knobs=("batch",), cooldown_s=10.0, drift_steps=2)
    ctl = PowerBudgetController("pb", "dc", "budget", tuning, period=1, bounds=bounds)
    result = Simulation([dc, budget, ctl], 60.0, seed=1).run()
    plans = result.events[result.events.topic == "budget_plan"]
    first, last = plans.payload.iloc[0], plans.payload.iloc[-1]
    assert first["batch"] == {"Llama-3.1-8B": 64, "Llama-3.1-70B": 64, "Qwen3-30B-A3B": 128}  # memory, then TTFT
    assert set(first["ttft_s"]) == set(LABELS)
    assert ctl.ttft_ratios["Llama-3.1-70B"] == pytest.approx(factor, rel=0.02)
    assert last["batch"]["Llama-3.1-70B"] == 8 and last["batch"]["Llama-3.1-8B"] == 64
    assert "drift" in [reason for _, reason in ctl.replan_reasons]
    table = result.tables["pb/budget_control"]
    assert table["ttft_ratio.Llama-3.1-70B"].iloc[-1] == pytest.approx(factor, rel=0.02)


def test_the_readme_slo_table_validates() -> None:
    import re
    import tomllib
    from pathlib import Path

    from g2gsim.scenarios.model import SloSection

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", readme, flags=re.S) if b.lstrip().startswith("[sites.slo]")]
    assert blocks, "the README shows a [sites.slo] table"
    section = SloSection.model_validate(tomllib.loads(blocks[0])["sites"]["slo"])
    assert section.batch_limit == "plan" and section.has_lengths and not section.limit_problems()

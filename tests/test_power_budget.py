"""Power budgets (issue 10): GPU caps in the datacenter, SLO batch planning, the exact
power-budget planner, the censored online correction, budget signals and closed loops."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from g2gsim.controllers.budget import (
    Budget,
    BudgetSchedule,
    ConstantBudget,
    GridOperator,
    ScheduledBudget,
    budget_from_csv,
)
from g2gsim.controllers.power_budget import (
    ModelPlanSpec,
    PlanInputs,
    PowerBudgetConfig,
    PowerBudgetController,
    RatioEstimator,
    model_options,
    plan_exact,
)
from g2gsim.controllers.proportional_curtailment import ProportionalCurtailment, proportional_caps
from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.datacenter.commands import SetPowerCap
from g2gsim.datacenter.config import DatacenterConfig, ModelDeployment
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.kernel import Simulation
from g2gsim.kernel.component import Controller
from g2gsim.metrics import budget_metrics
from g2gsim.planning import largest_batch_under, logistic_batch_limit, plan_batches

DATA = open_data_source(None)
LABELS = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-30B-A3B")
FITS = {label: DATA.logistic_fits(PAPER_MODELS[label]) for label in PAPER_MODELS}
GPU = GpuPowerCaps()


def small_site(replicas=(40, 10, 20), batch=128, **extra) -> DatacenterConfig:
    deployments = tuple(
        ModelDeployment(spec=PAPER_MODELS[label], initial_batch=batch, replicas=n) for label, n in zip(LABELS, replicas)
    )
    gpus = sum(n * PAPER_MODELS[label].gpus_per_replica for label, n in zip(LABELS, replicas))
    return DatacenterConfig(deployments=deployments, capacity_gpus=gpus + 16, **extra)


class Sender(Controller):
    """Sends given commands at given times."""

    def __init__(self, name: str, script: dict[float, list]) -> None:
        super().__init__(name, Fraction(1, 10))
        self.script = script

    def control(self, tick):
        return self.script.get(round(self.ctx.seconds(tick), 6), [])


# -- GPU power caps in the trace-driven site --------------------------------------------------
def test_power_cap_limits_power_slows_itl_and_is_reported() -> None:
    cap = 333.0  # rounds down to 325 W
    dc = OfflineDatacenter("dc", small_site(), DATA)
    send = Sender(
        "send",
        {
            1.0: [SetPowerCap(cap_w={"Llama-3.1-8B": cap, "Qwen3-30B-A3B": 900.0})],
            2.0: [SetPowerCap(cap_w={"Llama-3.1-8B": None})],
        },
    )
    result = Simulation([dc, send], 3.0, seed=1).run()
    frame = result.tables["dc/state"]
    before = frame[frame.time_s < 1.0]
    capped = frame[(frame.time_s > 1.05) & (frame.time_s < 2.0)]
    after = frame[frame.time_s > 2.05]
    gpus_8b = 40 * 1
    assert (capped["Llama-3.1-8B.power_w"] <= 325.0 * gpus_8b * 1.0 + 1e-6).all()
    assert capped["Llama-3.1-8B.power_w"].mean() < 0.6 * before["Llama-3.1-8B.power_w"].mean()
    assert (capped["Llama-3.1-8B.cap_w"] == 325.0).all() and (capped["Qwen3-30B-A3B.cap_w"] == 700.0).all()
    assert before["Llama-3.1-8B.cap_w"].isna().all() and after["Llama-3.1-8B.cap_w"].isna().all()
    # ITL grows by floor / cap (floor = mean draw at batch 128, ~660 W): about 2x
    ratio = capped["Llama-3.1-8B.itl_s"].mean() / before["Llama-3.1-8B.itl_s"].mean()
    assert 1.7 < ratio < 2.4
    assert after["Llama-3.1-8B.itl_s"].mean() == pytest.approx(before["Llama-3.1-8B.itl_s"].mean(), rel=0.15)
    assert dc.power_caps["Llama-3.1-8B"] is None and dc.power_caps["Qwen3-30B-A3B"] == 700.0


def test_power_cap_grid_and_errors() -> None:
    caps = GpuPowerCaps()
    assert caps.quantise(349.9) == 325.0 and caps.quantise(350) == 350.0
    assert caps.quantise(5000) == 700.0 and caps.quantise(10) == 200.0
    assert caps.levels()[0] == 200.0 and caps.levels()[-1] == 700.0 and len(caps.levels()) == 21
    with pytest.raises(ValueError):
        caps.quantise(float("nan"))
    dc = OfflineDatacenter("dc", small_site(), DATA)
    send = Sender("send", {0.5: [SetPowerCap(cap_w={"nope": 300.0})]})
    with pytest.raises(Exception, match="nope"):
        Simulation([dc, send], 1.0).run()


# -- SLO-bounded batch planning ---------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(PAPER_MODELS))
def test_closed_form_limit_matches_brute_force(label: str) -> None:
    fit = FITS[label].latency
    for deadline in (0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 1.0):
        brute = [b for b in range(8, 513) if fit.eval(b) <= deadline]
        want = max(brute) if brute and brute[0] == 8 else (None if not brute else max(brute))
        got = logistic_batch_limit(fit, deadline, 8, 512)
        if fit.eval(8) > deadline:
            assert got is None
        else:
            assert got == want


@given(st.integers(1, 300), st.integers(1, 400), st.lists(st.integers(1, 1000), max_size=30))
def test_black_box_search_is_exact_and_only_trusts_evaluated_points(lo, width, extra) -> None:
    hi = lo + width
    threshold = (lo + hi) // 2 + (extra[0] % width if extra else 0) - width // 2
    calls: list[int] = []

    def latency(b: int) -> float:
        calls.append(b)
        return 1.0 if b > threshold else 0.5

    got = largest_batch_under(latency, 0.75, lo, hi)
    brute = [b for b in range(lo, hi + 1) if b <= threshold]
    assert got == (max(brute) if brute else None)
    assert got is None or got in calls
    assert all(lo <= b <= hi for b in calls)  # never extrapolates
    assert len(calls) <= 2 * math.ceil(math.log2(width + 2)) + 2
    cands = sorted(set(extra) | {lo})
    got_c = largest_batch_under(latency, 0.75, lo, hi, candidates=cands)
    ok = [b for b in cands if lo <= b <= hi and b <= threshold]
    assert got_c == (max(ok) if ok and min(b for b in cands if lo <= b <= hi) <= threshold else None)


def test_plan_batches_table_and_cli() -> None:
    plans = {p.model: p for p in plan_batches(PAPER_MODELS, FITS)}
    for label, plan in plans.items():
        spec = PAPER_MODELS[label]
        assert plan.max_batch in spec.feasible_batch_sizes
        assert FITS[label].latency.eval(plan.max_batch) <= spec.itl_deadline_s
        bigger = [b for b in spec.feasible_batch_sizes if b > plan.max_batch]
        assert all(FITS[label].latency.eval(b) > spec.itl_deadline_s for b in bigger)
        assert plan.limit_batch >= plan.max_batch
    import typer
    from typer.testing import CliRunner

    from g2gsim.cli.planning import register

    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command keeps plan-batch a named subcommand
        pass

    out = CliRunner().invoke(app, ["plan-batch", "--json"])
    assert out.exit_code == 0, out.output
    assert "Llama-3.1-405B" in out.output and "max_batch" in out.output


# -- the exact planner ------------------------------------------------------------------------
def inputs(
    budget_kw,
    replicas,
    ratios=(1.0, 1.0, 1.0),
    itl=(1.0, 1.0, 1.0),
    knobs=("batch", "replicas", "caps"),
    uncontrolled=50.0,
    caps=(200.0, 300.0, 400.0, 500.0, 600.0, math.inf),
) -> PlanInputs:
    models = tuple(
        ModelPlanSpec(lb, PAPER_MODELS[lb].gpus_per_replica, PAPER_MODELS[lb].itl_deadline_s, FITS[lb]) for lb in LABELS
    )
    return PlanInputs(
        models=models,
        available=tuple(replicas),
        batches=tuple(PAPER_MODELS[lb].feasible_batch_sizes if "batch" in knobs else (128,) for lb in LABELS),
        standdown=tuple((0.0, 0.25, 0.5) if "replicas" in knobs else (0.0,) for _ in LABELS),
        caps_w=tuple(caps if "caps" in knobs else (math.inf,) for _ in LABELS),
        power_ratio=tuple(ratios),
        itl_ratio=tuple(itl),
        uncontrolled_kw=uncontrolled,
        budget_kw=budget_kw,
        gpu_power=GPU,
    )


def check_plan(inp: PlanInputs, plan) -> None:
    """Recompute the plan's power and ITL from the model and check constraints."""
    total = inp.uncontrolled_kw
    for spec, rp, rl in zip(inp.models, inp.power_ratio, inp.itl_ratio):
        b, n, cap = plan.batch[spec.label], plan.replicas[spec.label], plan.cap_w[spec.label]
        x = math.log2(b)
        draw = rp * spec.fits.power.eval_x(x) / spec.gpus_per_replica
        c = math.inf if cap is None else cap
        total += n * spec.gpus_per_replica * min(draw, c) / 1e3
        slow = max(1.0, draw / c) if math.isfinite(c) else 1.0
        itl = rl * spec.fits.latency.eval_x(x) * slow
        if spec.label not in plan.infeasible_models:
            assert itl <= spec.deadline_s * (1 + 1e-9)
    assert total == pytest.approx(plan.power_kw, rel=1e-9)
    if plan.fits_budget:
        assert plan.power_kw <= inp.budget_kw + 1e-6
    else:
        assert inp.budget_kw < plan.band_kw[0] + 1e-6  # nothing fits: the least-power plan
        assert plan.power_kw == pytest.approx(plan.band_kw[0])


ratio = st.floats(0.6, 1.8)
knob_sets = st.sampled_from(
    [("batch", "replicas", "caps"), ("caps",), ("replicas", "caps"), ("batch",), ("batch", "caps")]
)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(20.0, 200.0),
    st.floats(0.0, 150.0),
    st.tuples(st.integers(1, 60), st.integers(1, 20), st.integers(1, 30)),
    st.tuples(ratio, ratio, ratio),
    st.tuples(st.floats(0.7, 1.6), st.floats(0.7, 1.6), st.floats(0.7, 1.6)),
    knob_sets,
)
def test_plan_never_exceeds_budget_keeps_deadlines_and_is_monotone(budget, more, replicas, rp, rl, knobs) -> None:
    low = inputs(budget, replicas, rp, rl, knobs)
    high = inputs(budget + more, replicas, rp, rl, knobs)
    p_low, p_high = plan_exact(low), plan_exact(high)
    check_plan(low, p_low)
    check_plan(high, p_high)
    assert p_high.value >= p_low.value - 1e-6 * max(1.0, abs(p_low.value))
    assert p_low.band_kw == pytest.approx(p_high.band_kw)


@settings(max_examples=15, deadline=None)
@given(st.floats(30.0, 120.0), st.tuples(st.integers(1, 30), st.integers(1, 10)), st.tuples(ratio, ratio))
def test_plan_is_the_exact_optimum(budget, replicas, rp) -> None:
    """Brute force over every combination of two models' options equals the DP."""
    inp = inputs(budget, (*replicas, 1), (*rp, 1.0), caps=(250.0, 450.0, math.inf))
    inp = PlanInputs(
        **{
            **inp.__dict__,
            "models": inp.models[:2],
            "available": inp.available[:2],
            "batches": inp.batches[:2],
            "standdown": inp.standdown[:2],
            "caps_w": inp.caps_w[:2],
            "power_ratio": inp.power_ratio[:2],
            "itl_ratio": inp.itl_ratio[:2],
        }
    )
    opts = [
        model_options(m, n, b, s, c, r, q, GPU)
        for m, n, b, s, c, r, q in zip(
            inp.models, inp.available, inp.batches, inp.standdown, inp.caps_w, inp.power_ratio, inp.itl_ratio
        )
    ]
    best = -math.inf
    for i, j in itertools.product(range(opts[0].value.size), range(opts[1].value.size)):
        if not (opts[0].feasible[i] and opts[1].feasible[j]):
            continue
        if inp.uncontrolled_kw + opts[0].power_kw[i] + opts[1].power_kw[j] <= inp.budget_kw:
            best = max(best, opts[0].value[i] + opts[1].value[j])
    plan = plan_exact(inp)
    if best > -math.inf:
        assert plan.fits_budget and plan.value == pytest.approx(best, rel=1e-9)
    else:
        assert not plan.fits_budget


def test_unconstrained_plan_uses_no_caps_and_full_fleet() -> None:
    plan = plan_exact(inputs(1e6, (40, 10, 20)))
    assert all(c is None for c in plan.cap_w.values())
    assert plan.replicas == dict(zip(LABELS, (40, 10, 20)))


# -- the censored correction ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.floats(1.1, 1.9), st.lists(st.floats(0.5, 0.95), min_size=5, max_size=12), st.integers(60, 120))
def test_censored_estimator_learns_under_prediction_naive_does_not(truth, cap_fractions, steps) -> None:
    """Truth above prediction; most samples are taken at a cap below the true draw."""
    predicted = 100.0
    censored_est, naive_est = RatioEstimator(), RatioEstimator(naive=True)
    for k in range(steps):
        uncapped = k % 3 == 1  # every third sample the model runs below its cap
        cap = math.inf if uncapped else cap_fractions[k % len(cap_fractions)] * truth * predicted
        observed = min(truth * predicted, cap)
        for est in (censored_est, naive_est):
            est.update(observed, predicted, censored=not uncapped)
    # end on a capped sample
    cap = cap_fractions[0] * truth * predicted
    for est in (censored_est, naive_est):
        est.update(min(truth * predicted, cap), predicted, censored=True)
    assert censored_est.value == pytest.approx(truth, rel=2e-3)
    assert naive_est.value < truth * 0.99


def test_estimator_clips_and_smooths() -> None:
    est = RatioEstimator()
    est.update(130.0, 100.0)
    assert est.value == pytest.approx(0.7 + 0.3 * 1.3)
    for _ in range(50):
        est.update(500.0, 100.0)
    assert est.value == 2.0
    est.update(10.0, 100.0, censored=True)  # a low lower bound says nothing
    assert est.value == 2.0


# -- budget signals ---------------------------------------------------------------------------
def test_budget_schedule_csv_and_errors(tmp_path: Path) -> None:
    sched = Budget(5000).at(0) | Budget(3500).at(1200)
    assert isinstance(sched, BudgetSchedule) and [float(t) for t in sched.times] == [0.0, 1200.0]
    with pytest.raises(ValueError, match="same time"):
        _ = sched | Budget(1).at(1200)
    with pytest.raises(ValueError):
        Budget(-1)
    csv = tmp_path / "b.csv"
    csv.write_text("t_s,budget_kw\n0,100\n2.5,80\n")
    loaded = budget_from_csv(csv)
    assert [(float(t), b.kw) for t, b in loaded] == [(0.0, 100.0), (2.5, 80.0)]
    (tmp_path / "bad.csv").write_text("t,kw\n0,1\n")
    with pytest.raises(ValueError, match="t_s and budget_kw"):
        budget_from_csv(tmp_path / "bad.csv")


def test_budget_metrics_grace() -> None:
    import pandas as pd

    t = np.arange(0, 20, 0.5)
    power = np.where(t < 12, 120.0, 90.0) * 1e3 / 3
    state = pd.DataFrame({"time_s": t, "power_a_w": power, "power_b_w": power, "power_c_w": power})
    budget = pd.DataFrame({"time_s": [0.0, 10.0], "budget_kw": [200.0, 100.0]})
    m = budget_metrics(state, budget)
    # over budget from 10 to 12 s, but 10..15 s is grace -> nothing counted
    assert m["budget_violation_s"] == 0.0
    budget = pd.DataFrame({"time_s": [0.0, 5.0], "budget_kw": [200.0, 100.0]})
    m = budget_metrics(state, budget)
    assert m["budget_violation_s"] == pytest.approx(2.0)  # 10 .. 12 s, at 0.5 s steps
    assert m["budget_excess_kwh"] == pytest.approx(20.0 * 2.0 / 3600)


def test_grid_operator_curtails_on_low_voltage_and_releases_after_hold() -> None:
    from g2gsim.testing import ScriptedGrid, three_phase

    def voltages(k: int) -> np.ndarray:  # 1 s grid steps: low voltage from 10 s to 20 s
        return np.full(3, 0.93 if 10 <= k < 20 else 1.0)

    grid = ScriptedGrid("grid", three_phase(["671"]), voltages, sites={"dc": "671"})
    dc = OfflineDatacenter("dc", small_site(), DATA)
    operator = GridOperator("op", "dc", "grid", normal_kw=100.0, curtail_kw=40.0, v_trigger=0.95, hold_s=5.0)
    result = Simulation([dc, grid, operator], 40.0).run()
    assert operator.history == [(0.0, 100.0), (10.0, 40.0), (25.0, 100.0)]
    assert result.tables["op/budget"]["reason"].tolist() == ["normal", "curtailment", "release"]
    with pytest.raises(ValueError, match="v_trigger"):
        GridOperator("op", "dc", "grid", normal_kw=1.0, curtail_kw=1.0)


# -- closed loops on the trace-driven site ------------------------------------------------------
def test_tracks_budget_steps_within_grace_and_reacts_at_once() -> None:
    config = small_site((400, 100, 200))
    dc = OfflineDatacenter("dc", config, DATA)
    budget = ScheduledBudget("budget", "dc", Budget(600).at(0) | Budget(350).at(Fraction(303, 10)) | Budget(600).at(70))
    ctl = PowerBudgetController("pb", "dc", "budget", PowerBudgetConfig(cooldown_s=20), period=5)
    result = Simulation([dc, budget, ctl], 100.0, seed=3).run()
    state = result.tables["dc/state"]
    m = budget_metrics(state, result.tables["budget/budget"])
    assert m["budget_violation_s"] == 0.0 and m["budget_excess_kwh"] == 0.0
    plans = result.events[result.events.topic == "budget_plan"]
    # the drop at 30.3 s is planned at 30.3 s, not at the next 5 s poll (35 s)
    assert 30.3 in plans.time_s.round(6).tolist() and 70.0 in plans.time_s.round(6).tolist()
    total = state[["power_a_w", "power_b_w", "power_c_w"]].sum(axis=1) / 1e3
    assert (total[(state.time_s >= 30.5) & (state.time_s < 70)] <= 350.0).all()
    low = state[(state.time_s > 40) & (state.time_s < 70)]
    for label in LABELS:  # the plan keeps deadlines
        assert (low[f"{label}.itl_s"] <= PAPER_MODELS[label].itl_deadline_s * 1.1).mean() > 0.95
    assert total[(state.time_s > 80)].mean() > total[(state.time_s > 40) & (state.time_s < 70)].mean() + 100
    band = result.tables["pb/budget_control"]
    assert (band.flex_low_kw <= band.flex_high_kw).all()
    assert ctl.replans <= 6  # no chattering


def test_naive_curtailment_meets_budget_but_ignores_deadlines() -> None:
    dc = OfflineDatacenter("dc", small_site((400, 100, 200)), DATA)
    budget = ConstantBudget("budget", "dc", 400.0)
    naive = ProportionalCurtailment("naive", "dc", "budget", period=1)
    result = Simulation([dc, budget, naive], 30.0, seed=3).run()
    state = result.tables["dc/state"]
    assert budget_metrics(state, result.tables["budget/budget"])["budget_violation_s"] <= 2.0
    assert any(c.endswith(".cap_w") for c in state.columns)


# -- with the grid: OFO and budget control together -------------------------------------------
opendss = pytest.importorskip("g2gsim.grid.opendss")


def test_ofo_and_budget_control_do_not_oscillate() -> None:
    from g2gsim.scenarios.model import Scenario
    from g2gsim.scenarios.runner import run_scenario

    base = Scenario.from_toml(Path(__file__).resolve().parent.parent / "processes" / "ieee13_power_budget.toml")
    raw = base.to_dict()
    for c in raw["controllers"]:
        if c["type"] == "budget":
            c["events"] = [{"t_s": 0, "kw": 5000.0}, {"t_s": 60, "kw": 3500.0}, {"t_s": 150, "kw": 5000.0}]
    raw["horizon_s"] = 200
    with_budget = Scenario.from_dict(raw)
    ofo_only = Scenario.from_dict(
        {**raw, "controllers": [c for c in raw["controllers"] if c["type"] != "power_budget"]}
    )
    runs = {name: run_scenario(s, plots=False) for name, s in (("both", with_budget), ("ofo", ofo_only))}
    both = runs["both"]
    assert both.metrics["budget_violation_s"] == 0.0
    assert runs["ofo"].metrics["budget_violation_s"] > 50

    def batch_changes(run) -> int:
        state = run.result.table("dc/state")
        cols = [c for c in state.columns if c.endswith(".batch")]
        return int((state[cols].diff().abs().sum(axis=1) > 0).sum())

    assert batch_changes(both) <= batch_changes(runs["ofo"]) + 30
    plans = both.result.events_of("budget_plan")
    assert len(plans) <= 4  # initial, two budget steps, at most one drift re-plan
    caps = both.result.events_of("power_caps")
    assert len(caps) <= 2 * len(plans)


def test_ramp_limit_moves_planned_power_gradually() -> None:
    dc = OfflineDatacenter("dc", small_site((400, 100, 200)), DATA)
    budget = ScheduledBudget("budget", "dc", Budget(600).at(0) | Budget(350).at(20))
    ctl = PowerBudgetController("pb", "dc", "budget", PowerBudgetConfig(ramp_kw_per_s=20.0), period=1)
    result = Simulation([dc, budget, ctl], 45.0, seed=2).run()
    plans = result.events_of("budget_plan")
    plans = plans[plans.time_s >= 20]

    payload = list(plans.payload)
    targets = np.array([p["target_kw"] for p in payload])
    times = plans.time_s.to_numpy()
    # the target the planner works to falls at exactly the ramp rate ...
    assert np.all(np.diff(targets) >= -20.0 * np.diff(times) - 1e-6)
    assert targets[-1] == 350.0
    # ... and each discrete plan sits just under its target (within one cap/replica step)
    planned = np.array([p["planned_kw"] for p in payload])
    assert np.all(planned <= targets + 1e-6) and np.all(planned[:-1] >= targets[:-1] * 0.97 - 15.0)
    table = result.tables["pb/budget_control"]
    assert table[table.time_s == 21].planned_kw.iloc[0] > 500.0  # not a jump to 350


def test_budget_sections_validate_and_build(tmp_path: Path) -> None:
    from g2gsim.controllers.budget import BudgetSection
    from g2gsim.scenarios.build import build_controller
    from g2gsim.scenarios.model import Scenario, ScenarioError

    with pytest.raises(ValueError, match="exactly one"):
        BudgetSection(name="b", site="dc", kw=1.0, profile="x.csv")
    base = Scenario.from_toml(Path(__file__).resolve().parent.parent / "processes" / "ieee13_power_budget.toml")
    (tmp_path / "p.csv").write_text("t_s,budget_kw\n0,5000\n600,4000\n")
    built = build_controller(BudgetSection(name="b", site="dc", profile=str(tmp_path / "p.csv")), base)
    assert isinstance(built, ScheduledBudget) and [b.kw for _, b in built.schedule] == [5000.0, 4000.0]
    assert isinstance(build_controller(BudgetSection(name="b", site="dc", kw=10.0), base), ConstantBudget)
    with pytest.raises(ScenarioError, match="profile"):
        build_controller(BudgetSection(name="b", site="dc", profile=str(tmp_path / "none.csv")), base)


def test_site_gpu_power_settings_come_from_the_scenario_file(tmp_path: Path) -> None:
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.model import Scenario, ScenarioError

    path = Path(__file__).resolve().parent.parent / "processes" / "ieee13_power_budget.toml"
    raw = Scenario.from_toml(path).to_dict()
    raw["sites"][0]["gpu_power"] = {
        "rated_w": 600.0,
        "step_w": 50.0,
        "min_cap_w": 250.0,
        "floor_w": {"Llama-3.1-8B": 300.0},
    }
    scenario = Scenario.from_dict(raw)
    round_trip = Scenario.from_toml(scenario.to_toml(tmp_path / "s.toml") and tmp_path / "s.toml")
    assert round_trip.sites[0].gpu_power == scenario.sites[0].gpu_power
    site = build_simulation(scenario, check_only=True).sites["dc"]
    assert site.config.gpu_power.rated_w == 600.0
    assert site.config.gpu_power.quantise(349.0) == 300.0 and site.config.gpu_power.quantise(900.0) == 600.0
    raw["sites"][0]["gpu_power"] = {"rated_w": 300.0, "min_cap_w": 400.0}
    with pytest.raises(ScenarioError, match="min_cap_w"):
        Scenario.from_dict(raw)


# -- invariants of the naive baseline and of the grid operator -------------------------------------
_draws = st.lists(st.floats(50.0, 700.0), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(draws=_draws, gpus=st.lists(st.integers(0, 4000), min_size=5, max_size=5), share=st.floats(0.0, 1.5))
def test_proportional_caps_are_on_the_grid_and_fit_the_allowance(draws, gpus, share) -> None:

    draw = np.array(draws)
    n = np.array(gpus[: len(draws)], dtype=float)
    uncapped_kw = float(np.sum(draw * n)) / 1e3
    allowed = share * uncapped_kw
    f, caps = proportional_caps(draw, n, allowed, GPU)
    if uncapped_kw <= 0 or share >= 1.0:
        assert caps == [None] * len(draws)
        return
    levels = set(GPU.levels())
    for cap, d in zip(caps, draw, strict=True):
        assert cap in levels and GPU.min_cap_w <= cap <= GPU.rated_w
        assert cap <= max(f * d, GPU.min_cap_w) + 1e-9  # rounded down, never above f x draw
    if all(f * d >= GPU.min_cap_w for d in draw):  # no cap clamped up to the minimum
        drawn_kw = float(np.sum(np.minimum(np.array(caps), draw) * n)) / 1e3
        assert drawn_kw <= allowed + 1e-6


@settings(max_examples=100, deadline=None)
@given(draws=_draws, gpus=st.integers(1, 4000), shares=st.tuples(st.floats(0.05, 1.2), st.floats(0.05, 1.2)))
def test_proportional_caps_never_rise_when_the_allowance_falls(draws, gpus, shares) -> None:

    draw = np.array(draws)
    n = np.full(len(draws), float(gpus))
    uncapped_kw = float(np.sum(draw * n)) / 1e3
    low, high = sorted(shares)
    _, caps_low = proportional_caps(draw, n, low * uncapped_kw, GPU)
    _, caps_high = proportional_caps(draw, n, high * uncapped_kw, GPU)
    for a, b in zip(caps_low, caps_high, strict=True):
        assert (math.inf if a is None else a) <= (math.inf if b is None else b)


@settings(max_examples=200, deadline=None)
@given(
    hold=st.floats(0.0, 30.0),
    observations=st.lists(st.tuples(st.floats(0.01, 10.0), st.booleans()), min_size=1, max_size=60),
)
def test_grid_operator_episodes_alternate_and_hold_before_release(hold, observations) -> None:
    from g2gsim.controllers.budget import CurtailmentEpisodes

    episodes = CurtailmentEpisodes(hold)
    now, changes, clear_from = 0.0, [], None
    for gap, stressed in observations:
        now += gap
        change = episodes.observe(now, stressed)
        if stressed:
            assert change in (None, "curtailment") and episodes.curtailing
            clear_from = None
        elif change is None and episodes.curtailing:
            clear_from = now if clear_from is None else clear_from
        if change == "release":
            start = now if clear_from is None else clear_from
            assert now - start >= hold - 1e-9, "released before the condition was clear for hold_s"
            clear_from = None
        if change is not None:
            changes.append(change)
        if not stressed and not episodes.curtailing:
            assert change in (None, "release")
    # episodes alternate, starting with a curtailment
    assert changes == ["curtailment", "release"] * (len(changes) // 2) + ["curtailment"] * (len(changes) % 2)


def test_budget_csv_rows_with_missing_values_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("t_s,budget_kw\n0,5000\n\n600\n")
    with pytest.raises(ValueError, match=r"short.csv, line 4: needs a value for both t_s and budget_kw"):
        budget_from_csv(path)
    (tmp_path / "empty.csv").write_text("t_s,budget_kw\n")
    with pytest.raises(ValueError, match="no rows after the header"):
        budget_from_csv(tmp_path / "empty.csv")


def test_flat_latency_fit_gives_the_upper_bound_without_overflow() -> None:
    from mlenergy.data.modeling import LogisticModel

    fit = LogisticModel(L=1.0, x0=0.0, k=0.01, b0=0.0)  # deadline just under the asymptote
    assert logistic_batch_limit(fit, 0.999999, 1, 512) == 512


def test_power_budget_params_are_checked() -> None:
    with pytest.raises(ValueError, match="knobs must not repeat"):
        PowerBudgetConfig(knobs=("caps", "caps"))
    with pytest.raises(ValueError, match="cap_levels_w must be positive"):
        PowerBudgetConfig(cap_levels_w=(0.0, -100.0))


def test_power_budget_weights_must_name_site_models() -> None:
    site = OfflineDatacenter("dc", small_site(), DATA, period="1")
    source = ConstantBudget("b", "dc", 1000.0)
    controller = PowerBudgetController("pb", "dc", "b", PowerBudgetConfig(weights={"Llama-3.1-8b": 2.0}), period=1)
    with pytest.raises(ValueError, match=r"params.weights names \['Llama-3.1-8b'\]"):
        Simulation([site, source, controller], 2).run()


def test_live_site_refuses_controllers_that_send_power_caps() -> None:
    import g2gsim.live  # noqa: F401  (registers the live site kind)
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.library import load_scenario
    from g2gsim.scenarios.model import Scenario, ScenarioError

    raw = load_scenario("ieee13_live_ofo").to_dict()
    budget = {"type": "budget", "name": "b", "site": "dc", "kw": 4000.0}
    naive = {"type": "proportional_curtailment", "name": "naive", "site": "dc", "budget": "b"}
    with pytest.raises(ScenarioError, match="controllers.naive: proportional_curtailment sets GPU power caps"):
        build_simulation(Scenario.from_dict({**raw, "controllers": [budget, naive]}), check_only=True)
    planner = {"type": "power_budget", "name": "pb", "site": "dc", "budget": "b"}
    with pytest.raises(ScenarioError, match=r"controllers.pb.params.knobs: \['batch', 'replicas', 'caps'\]"):
        build_simulation(Scenario.from_dict({**raw, "controllers": [budget, planner]}), check_only=True)
    planner["params"] = {"knobs": ["batch", "replicas"]}
    build_simulation(Scenario.from_dict({**raw, "controllers": [budget, planner]}), check_only=True)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # seconds since the previous observation
            st.one_of(st.sampled_from([0.0, -0.0, math.nan, 5.0]), st.floats(-50, 50, allow_nan=False)),
        ),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([0.0, 10.0, 60.0]),
)
@example([(0, -0.0), (0, 0.0)], 10.0)  # equal maxima: the oldest, sign and all
@example([(0, math.nan), (1, 3.0), (20, 1.0)], 10.0)  # NaN oldest, then gone from the window
@example([(0, 7.0), (5, 2.0), (6, 2.0), (10, 1.0)], 10.0)  # the maximum leaves, the next one stays
def test_the_uncontrolled_load_window_gives_the_maximum_a_scan_of_the_window_gives(observations, window_s) -> None:
    """The running maximum is ``max`` over the window at every step: the oldest of equal
    maxima (0.0 and -0.0 included), NaN when the oldest value is NaN, values leaving the window."""
    from collections import deque

    ctl = PowerBudgetController("pb", "dc", "budget", PowerBudgetConfig(uncontrolled_window_s=window_s))
    ctl._uncontrolled, ctl._uncontrolled_peaks = deque(), deque()
    seen: list[tuple[float, float]] = []
    now = 0.0
    for gap, value in observations:
        now += gap
        seen.append((now, value))
        expected = max(v for t, v in seen if t >= now - window_s)
        got = ctl._uncontrolled_kw(now, value)
        assert (math.isnan(got) and math.isnan(expected)) or (
            got == expected and math.copysign(1.0, got) == math.copysign(1.0, expected)
        )

"""OFO batch-size controller (SPEC 5.2): properties on random voltages, fits, sets and states,
plus a scalar reference implementation of the SPEC equations it must match step by step."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlenergy.data.modeling import LogisticModel
from pydantic import ValidationError

from g2gsim.controllers import OFOBatchController, OFOConfig
from g2gsim.controllers.batching import nearest_batch
from g2gsim.kernel import ComponentError
from g2gsim.testing import (
    FakeSite,
    FakeSpec,
    Fits,
    Probe,
    Scripted,
    ScriptedGrid,
    default_fits,
    run_components,
    three_phase,
)

SIZE_POOL = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


# -- strategies -----------------------------------------------------------------------------
@st.composite
def logistic(draw, increasing: bool = False) -> LogisticModel:
    amplitude = draw(st.floats(1.0, 5000.0) if increasing else st.floats(-5000.0, 5000.0))
    return LogisticModel(
        L=amplitude,
        x0=draw(st.floats(0.0, 10.0)),
        k=draw(st.floats(0.2, 4.0)),
        b0=draw(st.floats(0.0, 1000.0)),
    )


@dataclass
class Case:
    specs: list[FakeSpec]
    fits: dict[str, Fits]
    replicas: dict[str, int]
    batch: dict[str, int]
    share: np.ndarray
    itl: list[np.ndarray]  # per step, per model (sorted labels)
    voltages: list[np.ndarray]  # per step
    buses: list[str]
    h: np.ndarray
    config: OFOConfig

    @property
    def labels(self) -> list[str]:
        return sorted(s.model_label for s in self.specs)

    @property
    def steps(self) -> int:
        return len(self.voltages)


@st.composite
def cases(
    draw,
    *,
    v_range: tuple[float, float] = (0.85, 1.15),
    h_sign: str = "any",
    increasing_power: bool = False,
    itl_ok: bool = False,
    config: dict | None = None,
) -> Case:
    n = draw(st.integers(1, 3))
    labels = [f"m{i}" for i in range(n)]
    specs, fits, replicas, batch = [], {}, {}, {}
    for label in labels:
        sizes = tuple(sorted(draw(st.lists(st.sampled_from(SIZE_POOL), min_size=1, max_size=6, unique=True))))
        deadline = draw(st.floats(0.02, 0.2))
        specs.append(FakeSpec(label, sizes, deadline, draw(st.sampled_from([1, 2, 4, 8]))))
        fits[label] = Fits(draw(logistic(increasing_power)), draw(logistic()), draw(logistic()))
        replicas[label] = draw(st.integers(0, 200))
        batch[label] = draw(st.sampled_from(sizes))
    share = np.array([draw(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3)) for _ in labels])
    steps = draw(st.integers(1, 6))
    n_buses = draw(st.integers(1, 4))
    buses = [f"b{i}" for i in range(n_buses)]
    n_v = 3 * n_buses
    volts = [np.array(draw(st.lists(st.floats(*v_range), min_size=n_v, max_size=n_v))) for _ in range(steps)]
    deadlines = np.array([s.itl_deadline_s for s in sorted(specs, key=lambda s: s.model_label)])
    itl = []
    for _ in range(steps):
        if itl_ok:
            row = deadlines * np.array(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)))
        else:
            row = np.array(draw(st.lists(st.one_of(st.floats(0.0, 0.4), st.just(math.nan)), min_size=n, max_size=n)))
        itl.append(row)
    bounds = {"any": (-1e-4, 1e-4), "negative": (-1e-4, -1e-7)}[h_sign]
    h = np.array(draw(st.lists(st.floats(*bounds), min_size=3 * n_v, max_size=3 * n_v))).reshape(n_v, 3)
    params = {
        "primal_step_size": draw(st.floats(0.01, 0.5)),
        "w_throughput": draw(st.floats(0.0, 0.5)),
        "w_switch": draw(st.floats(0.0, 2.0)),
        "voltage_dual_step_size": draw(st.floats(0.1, 5.0)),
        "latency_dual_step_size": draw(st.floats(0.1, 5.0)),
        "union_feasible_sets": draw(st.booleans()),
        **(config or {}),
    }
    return Case(specs, fits, replicas, batch, share, itl, volts, buses, h, OFOConfig(**params))


def simulate(case: Case, *, via_source: bool = False):
    dc = FakeSite(
        "dc",
        case.specs,
        replicas=case.replicas,
        batch=case.batch,
        itl=Scripted(case.itl),
        phase_share=case.share,
        fits=case.fits,
    )
    grid = ScriptedGrid("grid", three_phase(case.buses), Scripted(case.voltages), sites={"dc": case.buses[0]}, h=case.h)
    ofo = OFOBatchController("ofo", "dc", "grid", case.config, fits=None if via_source else case.fits)
    probe = Probe(ofo, lambda c: (c.log_batch, c.latency_duals, c.voltage_duals))
    result = run_components([dc, grid, ofo, probe], case.steps)
    return dc, grid, ofo, probe, result


# -- a scalar reference of SPEC 5.2 -----------------------------------------------------------
def reference(case: Case) -> list[tuple[dict[str, float], dict[str, int]]]:
    """SPEC 5.2 one model at a time with LogisticModel's own methods: (x, batch) per step."""
    cfg = case.config
    specs = {s.model_label: s for s in case.specs}
    labels = case.labels
    union = tuple(sorted({b for s in case.specs for b in s.feasible_batch_sizes}))
    sets = {m: union if cfg.union_feasible_sets else specs[m].feasible_batch_sizes for m in labels}
    lo = {m: math.log2(sets[m][0]) for m in labels}
    hi = {m: math.log2(sets[m][-1]) for m in labels}
    x = {m: min(max(math.log2(case.batch[m]), lo[m]), hi[m]) for m in labels}
    x_prev = dict(x)
    mu = {m: 0.0 for m in labels}
    lam_u = np.zeros(case.h.shape[0])
    lam_o = np.zeros(case.h.shape[0])
    out = []
    for k in range(case.steps):
        v = case.voltages[k]
        lam_u = np.maximum(lam_u + cfg.voltage_dual_step_size * (cfg.v_min - v), 0.0)
        lam_o = np.maximum(lam_o + cfg.voltage_dual_step_size * (v - cfg.v_max), 0.0)
        eta = lam_o - lam_u
        batch = {}
        for i, m in enumerate(labels):
            itl = case.itl[k][i]
            if case.replicas[m] > 0 and math.isfinite(itl):
                mu[m] = max(mu[m] + cfg.latency_dual_step_size * (itl - specs[m].itl_deadline_s), 0.0)
            f = case.fits[m]
            share = case.share[i]
            e = share / share.sum() if share.sum() > 0 else np.full(3, 1 / 3)
            g_v = float(eta @ (case.h @ e))
            w = case.replicas[m]
            r_max = f.throughput.eval_x(hi[m])
            r_max = r_max if math.isfinite(r_max) and r_max > 0 else 1.0
            d_p = w * f.power.deriv_wrt_x(x[m]) / 1000.0
            d_r = w * f.throughput.deriv_wrt_x(x[m]) / r_max
            grad = (
                -cfg.w_throughput * d_r
                + cfg.voltage_gradient_scale * g_v * d_p
                + mu[m] * f.latency.deriv_wrt_x(x[m])
                + cfg.w_switch * (x[m] - x_prev[m])
            )
            new = min(max(x[m] - cfg.primal_step_size * grad, lo[m]), hi[m])
            x_prev[m], x[m] = x[m], new
            batch[m] = nearest_batch(sets[m], new)
        out.append((dict(x), batch))
    return out


def _near_midpoint(value: float, sizes: tuple[int, ...]) -> bool:
    target = 2.0**value
    return any(abs(target - (a + b) / 2) < 1e-6 * target for a, b in itertools.pairwise(sizes))


@given(cases())
def test_follows_the_spec_equations_step_by_step(case):
    dc, _, _, probe, _ = simulate(case)
    commands = [b for _, b in dc.batch_commands()]
    union = tuple(sorted({b for s in case.specs for b in s.feasible_batch_sizes}))
    specs = {s.model_label: s for s in case.specs}
    assert len(commands) == len(probe.seen) == case.steps
    for k, ((x_ref, batch_ref), (_, (x, _, _)), batch) in enumerate(
        zip(reference(case), probe.seen, commands, strict=True)
    ):
        for m in case.labels:
            # identical equations; only floating-point rounding may differ (vectorised vs scalar)
            assert x[m] == pytest.approx(x_ref[m], rel=1e-9, abs=1e-9), (k, m)
            sizes = union if case.config.union_feasible_sets else specs[m].feasible_batch_sizes
            assert batch[m] == batch_ref[m] or _near_midpoint(x[m], sizes), (k, m)


# -- invariants ---------------------------------------------------------------------------
@given(cases())
def test_batches_are_feasible_and_x_stays_in_bounds(case):
    dc, _, _, probe, _ = simulate(case)
    specs = {s.model_label: s for s in case.specs}
    union = {b for s in case.specs for b in s.feasible_batch_sizes}
    commands = dc.batch_commands()
    assert [t for t, _ in commands] == list(range(case.steps))
    for _, batch in commands:
        for m, b in batch.items():
            allowed = union if case.config.union_feasible_sets else set(specs[m].feasible_batch_sizes)
            assert b in allowed
    for _, (x, _, _) in probe.seen:
        for m, value in x.items():
            sizes = sorted(union) if case.config.union_feasible_sets else specs[m].feasible_batch_sizes
            assert math.log2(sizes[0]) <= value <= math.log2(sizes[-1])


@given(cases())
def test_duals_are_never_negative_and_latency_dual_grows_iff_late(case):
    _, _, _, probe, _ = simulate(case)
    deadlines = {s.model_label: s.itl_deadline_s for s in case.specs}
    previous = {m: 0.0 for m in case.labels}
    for k, (_, (_, mu, duals)) in enumerate(probe.seen):
        under, over = duals
        assert np.all(under >= 0) and np.all(over >= 0)
        for i, m in enumerate(case.labels):
            assert mu[m] >= 0
            itl = case.itl[k][i]
            measured = case.replicas[m] > 0 and math.isfinite(itl)
            grew = mu[m] > previous[m]
            assert grew == (measured and itl > deadlines[m]), (k, m, itl, mu[m], previous[m])
            if not measured:
                assert mu[m] == previous[m]
        previous = mu


@given(cases(v_range=(0.9501, 1.0499)))
def test_voltage_duals_never_grow_inside_the_band(case):
    _, _, _, probe, _ = simulate(case)
    previous = None
    for _, (_, _, (under, over)) in probe.seen:
        assert np.all(under == 0) and np.all(over == 0)  # they start at 0 and cannot grow
        if previous is not None:
            assert np.all(under <= previous[0]) and np.all(over <= previous[1])
        previous = (under, over)


DIRECTION = {"w_throughput": 0.0, "w_switch": 0.0}


@given(cases(v_range=(0.80, 0.9499), h_sign="negative", increasing_power=True, itl_ok=True, config=DIRECTION))
def test_never_raises_a_batch_under_undervoltage(case):
    """Every bus under v_min, dV/dP < 0, increasing power fits, mu = 0 (ITL within deadline),
    no throughput reward and no switching term: undervoltage only ever lowers or holds power."""
    dc, *_ = simulate(case)
    last = dict(case.batch)
    for _, batch in dc.batch_commands():
        for m, b in batch.items():
            assert b <= last[m]
        last = batch


@given(cases(v_range=(1.0501, 1.2), h_sign="negative", increasing_power=True, itl_ok=True, config=DIRECTION))
def test_never_lowers_a_batch_under_overvoltage(case):
    dc, *_ = simulate(case)
    last = dict(case.batch)
    for _, batch in dc.batch_commands():
        for m, b in batch.items():
            assert b >= last[m]
        last = batch


@given(cases())
def test_fits_from_the_data_source_give_the_same_commands(case):
    direct, *_ = simulate(case)
    via, _, _ofo, _, _ = simulate(case, via_source=True)
    assert direct.batch_commands() == via.batch_commands()
    assert via.data.calls == len(case.specs)  # once per model per run


@given(cases())
def test_reset_then_rerun_gives_identical_commands(case):
    dc = FakeSite(
        "dc",
        case.specs,
        replicas=case.replicas,
        batch=case.batch,
        itl=Scripted(case.itl),
        phase_share=case.share,
        fits=case.fits,
    )
    grid = ScriptedGrid("grid", three_phase(case.buses), Scripted(case.voltages), sites={"dc": case.buses[0]}, h=case.h)
    ofo = OFOBatchController("ofo", "dc", "grid", case.config)
    first = run_components([dc, grid, ofo], case.steps)
    second = run_components([dc, grid, ofo], case.steps)
    assert first.commands.equals(second.commands)
    assert first.events.equals(second.events)
    assert first.table("ofo/ofo").equals(second.table("ofo/ofo"))


# -- sensitivity, errors, records -------------------------------------------------------------
def _simple(config: OFOConfig | None = None, steps: int = 5, **dc_kwargs):
    specs = [FakeSpec("a"), FakeSpec("b", gpus_per_replica=4)]
    dc = FakeSite("dc", specs, replicas={"a": 10, "b": 5}, **dc_kwargs)
    grid = ScriptedGrid("grid", three_phase(["x", "y"]), lambda k: np.full(6, 0.94), sites={"dc": "x"})
    ofo = OFOBatchController("ofo", "dc", "grid", config)
    return dc, grid, ofo, run_components([dc, grid, ofo], steps)


@pytest.mark.parametrize(("interval", "calls"), [(0, 1), (1, 7), (3, 3)])
def test_sensitivity_is_estimated_once_or_every_n_steps(interval, calls):
    _, grid, _ofo, result = _simple(OFOConfig(sensitivity_update_interval=interval), steps=7)
    assert grid.sensitivity_calls == calls
    assert result.events_of("ofo_sensitivity").shape[0] == calls


def test_step_event_and_table_carry_batches_and_duals():
    _dc, _, _, result = _simple(steps=3)
    events = result.events_of("ofo_step")
    assert len(events) == 3
    payload = events["payload"].iloc[-1]
    assert set(payload["batch"]) == {"a", "b"}
    assert set(payload["latency_dual"]) == {"a", "b"}
    assert payload["voltage_dual_under_max"] > 0
    table = result.table("ofo/ofo")
    assert list(table["time_s"]) == [0.0, 1.0, 2.0]
    assert {"batch.a", "x.b", "mu.a", "lambda_under_max"} <= set(table.columns)
    batches = result.commands[result.commands["kind"] == "SetBatchSize"]
    assert len(batches) == 3 and all(t == "dc" for t in batches["target"])
    request = result.commands[result.commands["kind"] == "SensitivityRequest"]
    assert request["target"].tolist() == ["grid"] and request["sent_s"].tolist() == [0.0]


def test_missing_model_in_the_state_is_an_error_naming_it():
    with pytest.raises(ComponentError, match=r"'b'"):
        _simple(report=("a",))


def test_missing_fits_are_an_error_naming_the_model():
    specs = [FakeSpec("a"), FakeSpec("b")]
    dc = FakeSite("dc", specs, replicas={"a": 1, "b": 1})
    grid = ScriptedGrid("grid", three_phase(["x"]), lambda k: np.ones(3), sites={"dc": "x"})
    ofo = OFOBatchController("ofo", "dc", "grid", fits={"a": default_fits()})
    with pytest.raises(KeyError, match="'b'"):
        run_components([dc, grid, ofo], 2)


def test_site_must_be_attached_to_the_grid():
    dc = FakeSite("dc", [FakeSpec("a")], replicas={"a": 1})
    grid = ScriptedGrid("grid", three_phase(["x"]), lambda k: np.ones(3), sites={})
    with pytest.raises(LookupError, match="not attached"):
        run_components([dc, grid, OFOBatchController("ofo", "dc", "grid")], 2)


def test_config_validation():
    assert OFOConfig().primal_step_size == 0.05 and OFOConfig().w_throughput == 0.1
    assert OFOConfig().voltage_dual_step_size == 0.5 and OFOConfig().sensitivity_perturbation_kw == 100.0
    with pytest.raises(ValidationError, match="v_min"):
        OFOConfig(v_min=1.1, v_max=1.0)
    with pytest.raises(ValidationError):
        OFOConfig(primal_step_size=0)
    with pytest.raises(ValidationError):
        OFOConfig(unknown_knob=1)
    with pytest.raises(ValidationError):
        OFOConfig(sensitivity_update_interval=-1)
    with pytest.raises(ValidationError):
        OFOConfig().primal_step_size = 1.0  # frozen


def test_dependencies_name_the_site_and_grid():
    from g2gsim.datacenter.base import Datacenter
    from g2gsim.grid.base import Grid

    assert OFOBatchController("o", "dc", "g").dependencies() == {"dc": Datacenter, "g": Grid}


def test_undervoltage_lowers_the_largest_power_model_first():
    """With a persistent undervoltage the duals accumulate and batches come down."""
    dc, _, _, _ = _simple(OFOConfig(voltage_dual_step_size=5.0, w_throughput=0.0), steps=20)
    final = dc.batch_commands()[-1][1]
    assert final["a"] < 128 and final["b"] < 128


def test_replicas_zero_leave_the_latency_dual_alone():
    _, _, ofo, _ = _simple(itl=lambda k, b: np.array([1.0, 1.0]), steps=3)
    assert ofo.latency_duals["a"] > 0
    case_specs = [FakeSpec("a")]
    dc3 = FakeSite("dc", case_specs, replicas={"a": 0}, itl=lambda k, b: np.array([1.0]))
    grid = ScriptedGrid("grid", three_phase(["x"]), lambda k: np.ones(3), sites={"dc": "x"})
    ofo3 = OFOBatchController("ofo", "dc", "grid")
    run_components([dc3, grid, ofo3], 3)
    assert ofo3.latency_duals == {"a": 0.0}

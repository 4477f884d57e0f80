"""Live datacenter (SPEC 3) against the shipped fakes: real-time kernel, closed loop, faults,
and no thread or socket left behind. Wall-clock tolerances are generous (shared CI cores)."""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
import tomllib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("zeus")
pytest.importorskip("prometheus_client")

from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.kernel.component import Controller, DatacenterComponent
from g2gsim.kernel.simulation import ComponentError, Simulation
from g2gsim.live.config import LiveStartupError
from g2gsim.live.fakes import FakeCluster
from g2gsim.live.scenario import fake_cluster_for, with_endpoints
from g2gsim.live.vllm import parse_metrics
from g2gsim.scenarios.build import build_simulation
from g2gsim.scenarios.library import bundled_scenarios, load_scenario
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.runner import RunFailed, run_scenario

MODEL = "Llama-3.1-8B"
PRESET = "ieee13_live_ofo"


# -- leak checks ------------------------------------------------------------------------------
def _sockets() -> int:
    try:
        import psutil

        return len(psutil.Process().net_connections(kind="inet"))
    except ImportError:  # pragma: no cover - psutil is optional
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:")) if fds.is_dir() else 0


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """After the test, every thread it started has ended and its sockets are closed."""
    threads_before = set(threading.enumerate())
    sockets_before = _sockets()
    yield
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not extra and _sockets() <= sockets_before:
            break
        time.sleep(0.1)
    extra = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert extra == [], f"threads left behind: {extra}"
    assert _sockets() <= sockets_before, "sockets left open"


# -- helpers ----------------------------------------------------------------------------------
def _scenario(horizon_s: float, *, initial_batch: int = 8, ofo: bool = False, **live: Any) -> Scenario:
    raw = copy.deepcopy(load_scenario(PRESET).to_dict())
    raw["horizon_s"] = horizon_s
    if not ofo:
        raw["controllers"] = []
    raw["sites"][0]["models"][0]["initial_batch"] = initial_batch
    options = {"buffer_s": 2.0, "warmup_timeout_s": 30.0, "first_reading_timeout_s": 10.0, **live}
    raw["sites"][0]["live"].update(options)
    return Scenario.from_dict(raw)


def _fakes(scenario: Scenario, power_scale: float = 1.3) -> FakeCluster:
    return fake_cluster_for(scenario, power_scale=power_scale, tick_s=0.2).start()


class _Fault(Controller):
    """Injects a fault at a simulated time (and optionally sends a command)."""

    def __init__(self, at_s: float, action: Any) -> None:
        super().__init__("fault", None)
        self.at_s = at_s
        self.action = action

    def times(self) -> list:
        from fractions import Fraction

        return [Fraction(str(self.at_s))]

    def run(self):
        ctx = self.ctx
        yield ctx.at_tick(ctx.clock.ticks(self.times()[0]))
        for command in self.action() or ():
            ctx.send(command)

    def control(self, tick: int):  # pragma: no cover - event-driven
        return ()


def _run_with_fault(scenario: Scenario, fault: _Fault) -> Any:
    built = build_simulation(scenario)
    simulation = Simulation(
        [*built.simulation.components, fault], scenario.horizon_s, seed=scenario.seed, realtime_factor=1.0
    )
    return simulation.run()


def _events(result: Any, topic: str) -> list[dict[str, Any]]:
    frame = result.events
    return list(frame[frame["topic"] == topic]["payload"])


# -- scenario and kernel (no network) -----------------------------------------------------------
def test_live_preset_validates_round_trips_and_is_marked_live(tmp_path: Path) -> None:
    scenario = load_scenario(PRESET)
    assert scenario.is_live and scenario.sites[0].live is not None
    scenario.to_toml(tmp_path / "s.toml")
    assert Scenario.from_toml(tmp_path / "s.toml") == scenario
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert not any(load_scenario(n).is_live for n in bundled_scenarios() if n != PRESET)
    built = build_simulation(scenario)  # builds without connecting
    assert built.simulation.realtime_factor == 1.0
    assert type(built.sites["dc"]).__name__ == "LiveDatacenter"


def test_live_site_needs_one_server_per_model() -> None:
    raw = load_scenario(PRESET).to_dict()
    raw["sites"][0]["live"]["servers"][0]["model"] = "Llama-3.1-70B"
    with pytest.raises(ValueError, match="one \\[\\[sites.live.servers\\]\\] per model"):
        Scenario.from_dict(raw)


@pytest.mark.parametrize("zeusd", ["http://gpu-node:4938", "gpu-node", "gpu-node:port", ":4938"])
def test_live_zeusd_endpoint_must_be_host_and_port(zeusd: str) -> None:
    raw = load_scenario(PRESET).to_dict()
    raw["sites"][0]["live"]["servers"][0]["zeusd"] = zeusd
    with pytest.raises(ValueError, match="zeusd must be host:port"):
        Scenario.from_dict(raw)


def test_parse_metrics_uses_prometheus_text() -> None:
    text = (
        "# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m"} 7.0\n'
        "# HELP vllm:num_preemptions x\n# TYPE vllm:num_preemptions counter\n"
        'vllm:num_preemptions_total{model_name="m"} 3.0\n'
    )
    assert parse_metrics(text) == {"running": 7.0, "preemptions": 3.0}


class _Ticker(DatacenterComponent):
    def __init__(self, slow_at: int) -> None:
        super().__init__("ticker", 0.1)
        self.slow_at = slow_at

    def step(self, tick: int) -> None:
        if tick == self.slow_at:
            time.sleep(0.5)


def test_realtime_kernel_reports_lag_and_default_path_is_unchanged() -> None:
    start = time.monotonic()
    result = Simulation([_Ticker(slow_at=3)], 1.5, realtime_factor=1.0).run()
    wall = time.monotonic() - start
    assert wall >= 1.3  # wall-clock paced
    realtime = result.meta["realtime"]
    assert realtime["lag_events"] >= 1 and realtime["late_ticks"] >= 1 and realtime["max_lag_s"] > 0.1
    lag = result.events[result.events["topic"] == "realtime_lag"]
    assert len(lag) >= 1 and lag["source"].iloc[0] == "kernel"
    fast = Simulation([_Ticker(slow_at=-1)], 1.5).run()
    assert "realtime" not in fast.meta and len(fast.events) == 0


# -- against the fakes ----------------------------------------------------------------------------
def test_closed_loop_ofo_lowers_the_batch_under_undervoltage(no_leaks: None) -> None:
    scenario = _scenario(20, initial_batch=32, ofo=True)
    fakes = _fakes(scenario, power_scale=1.3)
    try:
        run = run_scenario(with_endpoints(scenario, fakes.endpoints()), plots=False)
        server = fakes.vllm[MODEL]
        set_calls = list(server.set_calls)
    finally:
        fakes.stop()
    result = run.result
    state = result.tables["dc/state"]
    assert len(state) == 200
    assert state[f"{MODEL}.replicas"].iloc[0] >= 4500
    assert math.isfinite(state[f"{MODEL}.itl_s"].iloc[-1]) and state[f"{MODEL}.itl_s"].iloc[-1] > 0
    assert state["power_a_w"].min() > 1e6  # augmented to the simulated fleet
    ofo = result.tables["ofo/ofo"]
    assert ofo["lambda_under_max"].max() > 0, "the fake's power should undervolt the site"
    assert ofo[f"batch.{MODEL}"].min() < 32
    # The command reached the server and the site reports what the server accepted.
    assert set_calls[0] == (32, 0.0) and any(batch < 32 for batch, _ in set_calls)
    assert state[f"{MODEL}.batch"].iloc[-1] < 32
    assert state[f"{MODEL}.running"].iloc[-1] <= state[f"{MODEL}.batch"].iloc[-1]
    assert any(e["batch"] < 32 for e in _events(result, "batch_set"))
    assert result.meta["realtime"]["ticks"] == 200
    assert run.metrics["worst_vmin"] < 0.95


def test_vllm_down_at_start_is_a_clear_error(no_leaks: None) -> None:
    scenario = _scenario(3)
    fakes = _fakes(scenario)
    try:
        endpoints = fakes.endpoints()
        fakes.kill(MODEL)
        live = with_endpoints(scenario, endpoints, request_timeout_s=2.0)
        with pytest.raises(RunFailed) as info:
            run_scenario(live, plots=False)
    finally:
        fakes.stop()
    assert isinstance(info.value.__cause__, LiveStartupError)
    message = str(info.value)
    assert MODEL in message and endpoints[MODEL]["url"] in message and "not reachable" in message


def test_zeusd_down_at_start_is_a_clear_error(no_leaks: None) -> None:
    scenario = _scenario(3)
    fakes = _fakes(scenario)
    try:
        endpoints = fakes.endpoints()
        fakes.run(fakes.zeusd.stop)
        with pytest.raises(RunFailed, match="zeusd") as info:
            run_scenario(with_endpoints(scenario, endpoints), plots=False)
    finally:
        fakes.stop()
    assert isinstance(info.value.__cause__, LiveStartupError)


@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_vllm_dies_mid_run(policy: str, no_leaks: None) -> None:
    scenario = _scenario(5, on_server_failure=policy, health_interval_s=0.3, request_timeout_s=1.0)
    fakes = _fakes(scenario)
    try:
        live = with_endpoints(scenario, fakes.endpoints())
        fault = _Fault(1.5, lambda: fakes.kill(MODEL))
        if policy == "stop":
            with pytest.raises(ComponentError, match="on_server_failure = 'stop'") as info:
                _run_with_fault(live, fault)
            assert "server(s) down" in str(info.value) and MODEL in str(info.value)
            return
        result = _run_with_fault(live, fault)
    finally:
        fakes.stop()
    down = _events(result, "server_down")
    assert down and down[0]["model"] == MODEL and down[0]["policy"] == "continue"
    state = result.tables["dc/state"]
    assert len(state) == 50  # the run went on to the horizon
    last = state[f"{MODEL}.itl_s"].iloc[-1]
    assert math.isfinite(last) and last > 0  # last values kept
    assert result.summary["dc"]["request_errors"][MODEL] > 0


def test_power_stream_drop_is_a_stale_data_event(no_leaks: None) -> None:
    scenario = _scenario(5, stale_after_s=0.6)
    fakes = _fakes(scenario)
    try:
        live = with_endpoints(scenario, fakes.endpoints())
        result = _run_with_fault(live, _Fault(1.0, fakes.zeusd.drop_stream))
    finally:
        fakes.stop()
    stale = _events(result, "power_stale")
    assert stale and stale[0]["zeusd"] == fakes.zeusd.endpoint
    state = result.tables["dc/state"]
    assert len(state) == 50
    assert state["power_age_s"].iloc[-1] > 2.0  # readings stopped ...
    assert state["power_a_w"].iloc[-1] > 0  # ... and the site holds the last values


def test_refused_batch_call_keeps_the_old_value(no_leaks: None) -> None:
    scenario = _scenario(4, health_interval_s=5.0)
    fakes = _fakes(scenario)
    server = fakes.vllm[MODEL]

    def refuse_then_command():
        server.reject_batch = True  # the server answers 503 and keeps its batch
        return [SetBatchSize(batch={MODEL: 16}, target="dc")]

    try:
        live = with_endpoints(scenario, fakes.endpoints())
        result = _run_with_fault(live, _Fault(1.0, refuse_then_command))
        kept = server.max_num_seqs
    finally:
        server.reject_batch = False
        fakes.stop()
    failed = _events(result, "batch_set_failed")
    assert failed and failed[0]["batch"] == 16 and failed[0]["kept"] == 8 and "503" in failed[0]["reason"]
    assert kept == 8 and (result.tables["dc/state"][f"{MODEL}.batch"] == 8).all()
    assert result.summary["dc"]["batch_set_failures"] == 1


def test_unanswered_batch_call_is_retried_and_reported_unconfirmed(no_leaks: None) -> None:
    scenario = _scenario(5, request_timeout_s=0.4, health_interval_s=5.0)
    fakes = _fakes(scenario)
    server = fakes.vllm[MODEL]

    def slow_then_command():
        server.delay_s = 1.0  # answers come after the timeout; the server still applies them
        return [SetBatchSize(batch={MODEL: 16}, target="dc")]

    try:
        live = with_endpoints(scenario, fakes.endpoints())
        result = _run_with_fault(live, _Fault(1.0, slow_then_command))
        calls = list(server.set_calls)
    finally:
        server.delay_s = 0.0
        fakes.stop()
    unconfirmed = _events(result, "batch_set_unconfirmed")
    assert unconfirmed and unconfirmed[0]["batch"] == 16 and unconfirmed[0]["attempts"] == 3
    assert "0.4 s" in unconfirmed[0]["reason"] and unconfirmed[0]["reported"] == 8
    assert calls.count((16, 0.0)) >= 1  # the server got it although no answer came back
    assert not _events(result, "batch_set_failed")


def test_batch_calls_never_overtake_each_other(no_leaks: None) -> None:
    """A slow call to 16 followed by a command back to 8: the server ends at 8, as commanded."""
    scenario = _scenario(4, request_timeout_s=2.0, health_interval_s=5.0)
    fakes = _fakes(scenario)
    server = fakes.vllm[MODEL]

    class _TwoCommands(_Fault):
        def run(self):
            ctx = self.ctx
            yield ctx.at_tick(ctx.clock.ticks(Fraction(1)))
            server.delay_s = 0.4
            ctx.send(SetBatchSize(batch={MODEL: 16}, target="dc"))
            yield ctx.at_tick(ctx.clock.ticks(Fraction(11, 10)))
            ctx.send(SetBatchSize(batch={MODEL: 8}, target="dc"))

    try:
        live = with_endpoints(scenario, fakes.endpoints())
        result = _run_with_fault(live, _TwoCommands(1.0, lambda: ()))
        final = server.max_num_seqs
        calls = list(server.set_calls)
    finally:
        server.delay_s = 0.0
        fakes.stop()
    assert calls[-1] == (8, 0.0) and final == 8
    assert result.tables["dc/state"][f"{MODEL}.batch"].iloc[-1] == 8


def test_warm_up_ends_when_the_buffer_is_full_even_if_buffer_s_is_not_whole_samples(no_leaks: None) -> None:
    scenario = _scenario(1, buffer_s=0.25, warmup_timeout_s=8.0)  # 0.25 s holds 2 samples of 0.1 s
    fakes = _fakes(scenario)
    try:
        run = run_scenario(with_endpoints(scenario, fakes.endpoints()), plots=False)
    finally:
        fakes.stop()
    assert len(run.result.tables["dc/state"]) == 10


def test_every_live_site_option_reaches_the_live_datacenter() -> None:
    """The [sites.live] table is the live site's own configuration model, passed as is."""
    from g2gsim.live.config import LiveSiteConfig
    from g2gsim.scenarios.model import SiteSection

    assert SiteSection.model_fields["live"].annotation == LiveSiteConfig | None
    scenario = _scenario(1)
    site = build_simulation(scenario, check_only=True).sites["dc"]
    assert site.live is scenario.sites[0].live


def test_live_site_shares_the_replica_shift_checks(no_leaks: None) -> None:
    """ShiftReplicas on a live site: the trace-driven site's checks and refusal reasons."""
    from g2gsim.datacenter.commands import ShiftReplicas

    scenario = _scenario(3, buffer_s=1.0)
    fakes = _fakes(scenario)
    try:
        live = with_endpoints(scenario, fakes.endpoints())
        shifts = [
            ShiftReplicas(model=MODEL, delta=-100_000, target="dc"),
            ShiftReplicas(model=MODEL, delta=100_000, target="dc"),
            ShiftReplicas(model=MODEL, delta=-10, target="dc"),
        ]
        result = _run_with_fault(live, _Fault(1.0, lambda: shifts))
    finally:
        fakes.stop()
    refused = [e["reason"] for e in _events(result, "shift_refused")]
    assert "would have" in refused[0] and "capacity 7200 GPUs" in refused[1]
    assert _events(result, "replicas_shifted")[0]["delta"] == -10
    assert result.summary["dc"]["shifts_refused"] == 2


# -- what a live run records (measured against augmented power, TTFT, Prometheus) ---------------
def test_live_tables_carry_measured_and_augmented_power(tmp_path: Path, no_leaks: None) -> None:
    """Every column of the live state; augmented power per model = factor x measured power
    (averaged over the stagger window, the power buffer) within the spread of the server
    amplitudes, the augmentation noise and the stagger's sampling of the buffer."""
    from g2gsim.live.state import PROMETHEUS_FIELDS
    from g2gsim.live.tables import MODEL_COLUMNS
    from g2gsim.plots import plot_live_power, write_figure

    scenario = _scenario(10, buffer_s=1.0)
    fakes = _fakes(scenario)
    try:
        run = run_scenario(with_endpoints(scenario, fakes.endpoints()), plots=False)
    finally:
        fakes.stop()
    state = run.result.tables["dc/state"]
    for name in MODEL_COLUMNS:
        assert f"{MODEL}.{name}" in state
    for phase in "abc":
        assert (state[f"measured_power_{phase}_w"] > 0).all()
    measured = state[f"{MODEL}.measured_power_w"]
    assert (measured > 100).all() and np.allclose(state["measured_power_a_w"] * 3, measured)
    factor = state[f"{MODEL}.augmentation_factor"]
    assert (factor == state[f"{MODEL}.replicas"]).all()  # one real GPU = one real replica of the 8B
    for name in PROMETHEUS_FIELDS:
        assert state[f"{MODEL}.{name}"].notna().all()
    # the batch limit (8) is reached in the last second and never exceeded; a scrape may fall
    # between a request finishing and the load generator's next one, so not every row shows 8.
    running = state[f"{MODEL}.running"]
    assert running.iloc[-10:].max() == 8 and running.max() <= 8, running.tail(10).tolist()
    assert 0 < state[f"{MODEL}.kv_cache_usage"].iloc[-1] <= 1
    ttft = state[f"{MODEL}.ttft_s"].iloc[-1]
    assert 0 < ttft < 5 and ttft > state[f"{MODEL}.itl_s"].iloc[-1]
    assert not state[f"{MODEL}.server_down"].any() and not state[f"{MODEL}.power_stale"].any()

    window = 10  # buffer_s / period: the stagger window
    expected = measured.rolling(window).mean() * factor
    ratio = (state[f"{MODEL}.power_w"] / expected).iloc[2 * window :]
    # amplitudes in [0.98, 1.02] (mean 1) and 0.5 % noise average out over 4500 servers;
    # what is left is the stagger drawing each server's sample from a 10-sample window.
    assert abs(ratio.mean() - 1.0) < 0.005, ratio.describe()
    assert (ratio.sub(1.0).abs() < 0.02).mean() > 0.95, ratio.describe()

    gpus = run.result.tables["dc/gpu_power"]
    assert list(gpus.columns) == ["time_s", f"{MODEL}.{fakes.zeusd.endpoint}.gpu0_w"]
    samples = run.result.tables["dc/itl_samples"]
    assert set(samples.columns) == {"time_s", "model", "batch", "itl_s", "tokens"}
    assert len(samples) > 50 and (samples["batch"] == 8).all() and (samples["itl_s"] > 0).all()
    assert run.result.summary["dc"]["stale_s_by_server"] == {MODEL: 0.0}
    figure = write_figure(plot_live_power(run.result, "dc"), tmp_path / "live_power.png")
    assert figure.stat().st_size > 10_000


def test_ttft_is_nan_where_a_site_does_not_measure_it() -> None:
    from g2gsim.datacenter.state import DatacenterState

    state = DatacenterState(
        site="s", time_s=0.0, models=("m",), power_w=np.zeros(3), model_power_w=np.zeros(1), batch=np.ones(1),
        replicas=np.ones(1), itl_s=np.ones(1), phase_share=np.ones((1, 3)) / 3,
    )  # fmt: skip
    assert math.isnan(state.ttft_of("m"))


# -- several meters per server, request fields ---------------------------------------------------
def test_live_server_metering_forms_are_validated() -> None:
    raw = load_scenario(PRESET).to_dict()
    server = raw["sites"][0]["live"]["servers"][0]
    both = {**server, "gpu_endpoints": [{"host": "a", "gpu_indices": [0]}]}
    neither = {k: v for k, v in server.items() if k not in ("zeusd", "gpu_ids")}
    for bad, match in [
        (both, "either zeusd \\+ gpu_ids or gpu_endpoints"),
        (neither, "needs its GPUs' power meters"),
        ({**neither, "gpu_endpoints": [{"host": "a", "gpu_indices": [0, 0]}]}, "distinct"),
        ({**server, "request_extra_body": {"stream": False}}, "may not set \\['stream'\\]"),
    ]:
        raw["sites"][0]["live"]["servers"][0] = bad
        with pytest.raises(ValueError, match=match):
            Scenario.from_dict(raw)
    two = {
        **neither,
        "gpu_endpoints": [{"host": "n1", "gpu_indices": [0]}, {"host": "n2", "port": 5000, "gpu_indices": [1]}],
    }
    raw["sites"][0]["live"]["servers"][0] = {**two, "request_extra_body": {"chat_template_kwargs": {"x": True}}}
    scenario = Scenario.from_dict(raw)
    live = scenario.sites[0].live
    assert live is not None and live.servers[0].gpus == [("n1:4938", 0), ("n2:5000", 1)]
    assert Scenario.from_dict(tomllib.loads(scenario.to_toml())) == scenario


def _two_meter_scenario(horizon_s: float) -> Scenario:
    """The live preset serving Qwen3-30B-A3B (2 GPUs per replica), each GPU on its own zeusd."""
    raw = copy.deepcopy(load_scenario(PRESET).to_dict())
    raw["horizon_s"] = horizon_s
    raw["controllers"] = []
    raw["sites"][0]["models"] = [{"model": "Qwen3-30B-A3B", "replicas": 2000, "initial_batch": 8}]
    server = {
        "model": "Qwen3-30B-A3B",
        "url": "http://127.0.0.1:18001",
        "served_model_name": "Qwen/Qwen3-30B-A3B-Thinking-2507",
        "gpu_endpoints": [
            {"host": "127.0.0.1", "port": 14938, "gpu_indices": [0]},
            {"host": "127.0.0.1", "port": 14939, "gpu_indices": [0]},
        ],
        "request_extra_body": {"chat_template_kwargs": {"enable_thinking": False}, "temperature": 0.0},
    }
    raw["sites"][0]["live"].update(servers=[server], buffer_s=1.0, warmup_timeout_s=30.0)
    return Scenario.from_dict(raw)


def test_a_model_metered_by_two_zeusd_endpoints(no_leaks: None) -> None:
    """A tensor-parallel replica across two nodes: its two GPUs' power is summed from two daemons,
    and every request carries the server's request_extra_body."""
    from g2gsim.live.scenario import fake_cluster_ports

    scenario = _two_meter_scenario(3)
    vllm_ports, zeusd_ports = fake_cluster_ports(scenario)
    assert vllm_ports == {"Qwen3-30B-A3B": 18001} and zeusd_ports == [14938, 14939]
    fakes = _fakes(scenario)
    try:
        assert len(fakes.zeusds) == 2
        endpoints = fakes.endpoints()["Qwen3-30B-A3B"]
        assert [e["gpu_indices"] for e in endpoints["gpu_endpoints"]] == [[0], [0]]
        run = run_scenario(with_endpoints(scenario, fakes.endpoints()), plots=False)
        bodies = list(fakes.vllm["Qwen3-30B-A3B"].bodies)
    finally:
        fakes.stop()
    gpus = run.result.tables["dc/gpu_power"].drop(columns="time_s")
    assert gpus.shape[1] == 2 and (gpus > 50).all().all()  # both daemons streamed
    state = run.result.tables["dc/state"]
    label = "Qwen3-30B-A3B"
    assert np.allclose(state[f"{label}.measured_power_w"], gpus.sum(axis=1))
    assert (state[f"{label}.augmentation_factor"] == state[f"{label}.replicas"]).all()  # 2 GPUs = 1 replica
    assert run.result.summary["dc"]["real_gpus_by_model"] == {label: 2}
    assert bodies and all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
    assert all(b["temperature"] == 0.0 and b["stream"] is True for b in bodies)
    assert all(b["stream_options"]["continuous_usage_stats"] for b in bodies)


# -- stale data: meters reconnected with backoff, servers that die -------------------------------
def test_lost_meter_is_reconnected_with_backoff(no_leaks: None) -> None:
    scenario = _scenario(7, stale_after_s=0.5, reconnect_initial_s=0.3, reconnect_max_s=2.0)
    fakes = _fakes(scenario)

    class _DropAndRestore(_Fault):
        def run(self):
            ctx = self.ctx
            yield ctx.at_tick(ctx.clock.ticks(Fraction(1)))
            fakes.zeusd.drop_stream()
            yield ctx.at_tick(ctx.clock.ticks(Fraction(7, 2)))
            fakes.zeusd.restore_stream()

    try:
        result = _run_with_fault(with_endpoints(scenario, fakes.endpoints()), _DropAndRestore(1.0, lambda: ()))
    finally:
        fakes.stop()
    tries = _events(result, "power_reconnect")
    assert len(tries) >= 2 and [t["attempt"] for t in tries] == list(range(1, len(tries) + 1))
    delays = [t["next_delay_s"] for t in tries]
    assert delays == sorted(delays) and delays[0] == 0.6 and max(delays) <= 2.0  # doubling, capped
    restored = _events(result, "power_restored")
    assert restored and restored[-1]["zeusd"] == fakes.zeusd.endpoint
    state = result.tables["dc/state"]
    stale = state[f"{MODEL}.power_stale"]
    assert stale.any() and not stale.iloc[-5:].any()  # stale while dropped, fresh again at the end
    seconds = result.summary["dc"]["power_stale_s_by_server"][MODEL]
    assert 1.5 <= seconds <= 5.5 and result.summary["dc"]["meter_reconnects"][fakes.zeusd.endpoint] == len(tries)


def test_dead_server_under_continue_is_reported_with_stale_seconds(no_leaks: None) -> None:
    from g2gsim.live.scenario import live_notes, stale_seconds

    scenario = _scenario(5, health_interval_s=0.3, request_timeout_s=1.0)
    fakes = _fakes(scenario)
    try:
        live = with_endpoints(scenario, fakes.endpoints())
        result = _run_with_fault(live, _Fault(1.5, lambda: fakes.kill(MODEL)))
    finally:
        fakes.stop()
    down = result.tables["dc/state"][f"{MODEL}.server_down"]
    assert down.iloc[-1] and not down.iloc[0]
    stale = stale_seconds(live, result)
    assert 2.0 <= stale[f"dc/{MODEL}"] <= 3.6
    (note,) = live_notes(live, result)
    assert f"dc/{MODEL}" in note and "still down at the end" in note and "'continue'" in note


# -- record and replay --------------------------------------------------------------------------
def test_live_run_replayed_offline_from_its_recording(tmp_path: Path, no_leaks: None) -> None:
    """A live run on the fakes writes a v0.2 cache of what it measured; the scenario rerun
    offline from it gives the same site power within the live trace's own noise, and
    `g2gsim replay` prints both runs."""
    from typer.testing import CliRunner

    from g2gsim.cli import app
    from g2gsim.data import open_data_source
    from g2gsim.live.replay import compare_power, replay
    from g2gsim.live.scenario import run_live
    from g2gsim.scenarios.build import model_catalogue

    scenario = _scenario(15, buffer_s=1.0)
    fakes = _fakes(scenario)
    try:
        run = run_live(with_endpoints(scenario, fakes.endpoints()), out=tmp_path / "run")
    finally:
        fakes.stop()
    assert run.metrics["stale_s_by_server"] == {f"dc/{MODEL}": 0.0}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stale_s_by_server"] == {f"dc/{MODEL}": 0.0}
    recording = tmp_path / "run" / "recording"
    info = json.loads((recording / "recording.json").read_text())["sites"]["dc"][MODEL]
    assert info["measured_batches"]["8"]["power_samples"] == 150 and 8 not in info["filled_batches"]
    source = open_data_source(recording)  # an OpenG2G v0.2 cache, as any data folder
    spec = scenario.sites[0].models[0].spec(model_catalogue(scenario))
    trace = source.trace(spec, 8)
    assert trace.t_s.size == 150 and trace.power_w.mean() == pytest.approx(
        info["measured_batches"]["8"]["mean_replica_power_w"]
    )
    assert source.itl_fit(spec, 8) is not None and set(spec.feasible_batch_sizes) <= set(source.batch_sizes(spec))

    comparison = replay(tmp_path / "run", out=tmp_path / "replay")
    live_state = run.result.tables["dc/state"]
    power = comparison.power["dc"]
    assert power == compare_power(live_state, comparison.replay.result.tables["dc/state"])
    # the same mean, and step by step closer than the noise the scenario adds to each server
    noise = scenario.sites[0].noise_fraction
    assert abs(power["mean_diff_fraction"]) < noise / 2, power
    assert power["mean_abs_diff_fraction"] < noise, power
    live_itl = comparison.live_metrics["mean_itl_s_by_model"][MODEL]
    assert abs(comparison.replay_metrics["mean_itl_s_by_model"][MODEL] / live_itl - 1) < 0.15

    result = CliRunner().invoke(app, ["replay", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "live" in result.stdout and "replay" in result.stdout and "|live - replay|" in result.stdout
    assert (tmp_path / "run" / "replay" / "metrics.json").is_file()


def test_replay_of_a_folder_without_recording_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from g2gsim.cli import app

    result = CliRunner().invoke(app, ["replay", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a recorded live run" in result.output and "Traceback" not in result.output


def test_run_live_says_at_the_end_which_server_died(tmp_path: Path, no_leaks: None) -> None:
    """`g2gsim run --live` with on_server_failure = "continue": a server that dies mid-run is
    named on the console at the end, and its stale seconds are in the metrics."""
    from typer.testing import CliRunner

    from g2gsim.cli import app

    scenario = _scenario(5, buffer_s=1.0, health_interval_s=0.3, request_timeout_s=1.0)
    fakes = _fakes(scenario)
    server = fakes.vllm[MODEL]
    killed = threading.Event()

    def kill_once_running() -> None:  # after warm-up (saturated + 1 s of buffer) and 1.5 s of run
        # saturation must hold for a while first: a server flickers below 8 running between a
        # finished request and the next one, more so on a loaded machine, and a kill during the
        # warm-up would end the run before it starts
        deadline = time.monotonic() + 60
        held = 0
        while held < 10 and time.monotonic() < deadline:
            held = held + 1 if len(server.running) >= 8 else 0
            time.sleep(0.05)
        time.sleep(2.5)
        fakes.kill(MODEL)
        killed.set()

    path = tmp_path / "live.toml"
    with_endpoints(scenario, fakes.endpoints()).to_toml(path)
    killer = threading.Thread(target=kill_once_running, name="test-killer")
    try:
        killer.start()
        result = CliRunner().invoke(
            app, ["run", str(path), "--live", "--json", "--no-plots", "--out", str(tmp_path / "o")]
        )
        killer.join(30)
    finally:
        fakes.stop()
    assert killed.is_set() and result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.5 <= metrics["stale_s_by_server"][f"dc/{MODEL}"] < 5.0  # down after the start, until the end
    assert f"warning: live server dc/{MODEL}" in result.output and "still down at the end" in result.output


def test_fakes_on_a_taken_port_are_a_clear_error(tmp_path: Path, no_leaks: None) -> None:
    import socket

    from typer.testing import CliRunner

    from g2gsim.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        scenario = with_endpoints(_scenario(2), {MODEL: {"zeusd": f"127.0.0.1:{port}", "gpu_ids": [0]}})
        scenario.to_toml(tmp_path / "live.toml")
        result = CliRunner().invoke(app, ["run", str(tmp_path / "live.toml"), "--live", "--fakes", "--no-plots"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot serve the fake cluster" in result.output and str(port) in result.output

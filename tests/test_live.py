"""Live datacenter (SPEC 3) against the shipped fakes: real-time kernel, closed loop, faults,
and no thread or socket left behind. Wall-clock tolerances are generous (shared CI cores)."""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

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

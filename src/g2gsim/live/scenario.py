"""Live scenarios from Python: re-point one at other endpoints, serve fakes for it, run it.

:func:`run_live` is what ``g2gsim run --live`` (and ``g2gsim live-run``) call; with
``with_fakes`` it starts a fake cluster on the scenario's own endpoints for the run. With an
output folder it also writes the run's recording (:mod:`g2gsim.live.replay`), which
``g2gsim replay`` reruns offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from g2gsim.scenarios.model import Scenario

if TYPE_CHECKING:
    from g2gsim.kernel.results import RunResult
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.scenarios.runner import ScenarioRun

__all__ = [
    "DEFAULT_POWER_SCALE",
    "fake_cluster_for",
    "fake_cluster_ports",
    "live_notes",
    "run_live",
    "stale_seconds",
    "start_fakes",
    "with_endpoints",
]

#: Multiplier of the fake servers' GPU power (the fitted curves, scaled to stress the feeder).
DEFAULT_POWER_SCALE = 1.3

_ENDPOINT_KEYS = ("url", "served_model_name", "zeusd", "gpu_ids", "gpu_endpoints")
_METER_KEYS = ("zeusd", "gpu_ids", "gpu_endpoints")


def with_endpoints(scenario: Scenario, endpoints: dict[str, dict[str, Any]], **live_options: Any) -> Scenario:
    """A copy of a live scenario whose servers point at `endpoints` (as from
    :meth:`FakeCluster.endpoints`), with live options (``buffer_s``, ...) overridden.

    An entry that names meters (``zeusd`` + ``gpu_ids``, or ``gpu_endpoints``) replaces the
    server's meters in whichever form it had."""
    raw = scenario.to_dict()
    for site in raw["sites"]:
        live = site.get("live")
        if live is None:
            continue
        live.update(live_options)
        for server in live["servers"]:
            found = endpoints.get(server["model"])
            if found is None:
                continue
            if any(key in found for key in _METER_KEYS):
                for key in _METER_KEYS:
                    server.pop(key, None)
            server.update({k: v for k, v in found.items() if k in _ENDPOINT_KEYS})
    return Scenario.from_dict(raw, source=f"{scenario.name} (endpoints)")


def _meter_numbers(scenario: Scenario) -> dict[str, int]:
    """Each zeusd ``host:port`` of the scenario's live servers, numbered in sorted order."""
    endpoints = sorted(
        {endpoint for site in scenario.sites if site.live for s in site.live.servers for endpoint, _ in s.gpus}
    )
    return {endpoint: number for number, endpoint in enumerate(endpoints)}


def fake_cluster_for(
    scenario: Scenario, *, power_scale: float = DEFAULT_POWER_SCALE, tick_s: float = 0.1
) -> FakeCluster:
    """A (not yet started) fake cluster serving the models of the scenario's live sites, with
    one fake zeusd per zeusd endpoint the scenario names, metering the GPUs it names there
    (needs the live extra)."""
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.live.replay import scenario_data
    from g2gsim.scenarios.build import model_catalogue

    catalogue = model_catalogue(scenario)
    numbers = _meter_numbers(scenario)
    specs: dict[str, Any] = {}
    batches: dict[str, int] = {}
    meters: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for site in scenario.sites:
        if site.live is None:
            continue
        for entry in site.models:
            specs[entry.model] = entry.spec(catalogue)
            batches[entry.model] = entry.initial_batch
            server = site.live.server(entry.model)
            meters[entry.model] = [(numbers[m.endpoint], m.gpu_indices) for m in server.meters]
    if not specs:
        raise ValueError(f"scenario {scenario.name!r} has no live site")
    return FakeCluster(
        specs, scenario_data(scenario), initial_batch=batches, power_scale=power_scale, tick_s=tick_s, meters=meters
    )


def fake_cluster_ports(scenario: Scenario) -> tuple[dict[str, int], list[int]]:
    """The vLLM port per model and the port of each zeusd (in :func:`fake_cluster_for`'s
    order) named in a scenario's live sites, where the fakes serve them (on 127.0.0.1)."""
    vllm: dict[str, int] = {}
    for site in scenario.sites:
        if site.live is None:
            continue
        for server in site.live.servers:
            vllm[server.model] = urlparse(server.url).port or 80
    zeusd = [int(endpoint.rpartition(":")[2]) for endpoint in _meter_numbers(scenario)]
    if len(set(zeusd)) != len(zeusd):
        raise ValueError(
            f"the fake cluster serves every zeusd on 127.0.0.1: the scenario's zeusd endpoints "
            f"{list(_meter_numbers(scenario))} need distinct ports"
        )
    return vllm, zeusd


def start_fakes(scenario: Scenario, *, power_scale: float = DEFAULT_POWER_SCALE) -> FakeCluster:
    """A running fake cluster on the scenario's own 127.0.0.1 endpoints; a port already in use
    is a :class:`~g2gsim.live.config.LiveStartupError` naming the ports."""
    from g2gsim.live.config import LiveStartupError

    vllm_ports, zeusd_ports = fake_cluster_ports(scenario)
    try:
        return fake_cluster_for(scenario, power_scale=power_scale).start(vllm_ports, zeusd_ports=zeusd_ports)
    except OSError as exc:
        raise LiveStartupError(
            f"cannot serve the fake cluster of scenario {scenario.name!r} on 127.0.0.1 (vLLM ports {vllm_ports}, "
            f"zeusd ports {zeusd_ports}): {exc.strerror or exc}; stop what uses them or change the scenario's ports"
        ) from None


def stale_seconds(scenario: Scenario, result: RunResult) -> dict[str, float]:
    """Seconds of stale data per live server ("site/model"): the server down or one of its
    meters stale (the metric ``stale_s_by_server``)."""
    stale: dict[str, float] = {}
    for site in scenario.sites:
        if site.live is None:
            continue
        facts = result.summary.get(site.name, {})
        for label, seconds in facts.get("stale_s_by_server", {}).items():
            stale[f"{site.name}/{label}"] = float(seconds)
    return stale


def live_notes(scenario: Scenario, result: RunResult) -> list[str]:
    """One line per live server whose data went stale during the run (for the console)."""
    notes = []
    for site in scenario.sites:
        if site.live is None:
            continue
        facts = result.summary.get(site.name, {})
        down_at_end = set(facts.get("servers_down_at_end", []))
        down_s = facts.get("server_down_s_by_server", {})
        power_s = facts.get("power_stale_s_by_server", {})
        for label, seconds in facts.get("stale_s_by_server", {}).items():
            if seconds <= 0:
                continue
            parts = [f"live server {site.name}/{label}: {seconds:g} s of stale data"]
            if down_s.get(label, 0) > 0:
                ending = ", still down at the end" if label in down_at_end else ""
                parts.append(f"server down {down_s[label]:g} s{ending}")
            if power_s.get(label, 0) > 0:
                parts.append(f"power meter stale {power_s[label]:g} s")
            policy = site.live.on_server_failure
            notes.append("; ".join(parts) + f" (on_server_failure = {policy!r}: the last values were kept)")
    return notes


def run_live(
    scenario_path: str | Path | Scenario,
    *,
    duration: float | None = None,
    out: str | Path | None = None,
    plots: bool = False,
    with_fakes: bool = False,
    power_scale: float = DEFAULT_POWER_SCALE,
) -> ScenarioRun:
    """Run a live scenario on the real-time kernel; returns the :class:`ScenarioRun`.

    With `with_fakes`, a fake cluster is started on the scenario's endpoints for the run.
    The metrics gain ``stale_s_by_server``; with `out`, the recording of what the servers
    measured is written to ``out/recording`` (see :mod:`g2gsim.live.replay`). Ctrl-C stops
    the run; every thread and connection is released either way.
    """
    from g2gsim.live.replay import RECORDING_FOLDER, write_recording
    from g2gsim.scenarios.library import load_scenario
    from g2gsim.scenarios.runner import run_scenario

    scenario = scenario_path if isinstance(scenario_path, Scenario) else load_scenario(str(scenario_path))
    if not scenario.is_live:
        raise ValueError(f"scenario {scenario.name!r} has no live site ([sites.live]); use `g2gsim run`")
    if duration is not None:
        scenario = scenario.with_overrides(horizon_s=duration)
    fakes = None
    if with_fakes:
        fakes = start_fakes(scenario, power_scale=power_scale)
    try:
        run = run_scenario(scenario, out=out, plots=plots)
    finally:
        if fakes is not None:
            fakes.stop()
    run.metrics["stale_s_by_server"] = stale_seconds(scenario, run.result)
    if out is not None:
        folder = Path(out)
        (folder / "metrics.json").write_text(json.dumps(run.metrics, indent=2, sort_keys=True))
        run.files.append(write_recording(scenario, run.result.tables, folder / RECORDING_FOLDER))
    return run

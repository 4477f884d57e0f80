"""Live scenarios from Python: re-point one at other endpoints, serve fakes for it, run it.

:func:`run_live` is what ``g2gsim run --live`` (and ``g2gsim live-run``) call; with
``with_fakes`` it starts a fake cluster on the scenario's own endpoints for the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from g2gsim.scenarios.model import Scenario

if TYPE_CHECKING:
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.scenarios.runner import ScenarioRun

#: Multiplier of the fake servers' GPU power (the fitted curves, scaled to stress the feeder).
DEFAULT_POWER_SCALE = 1.3


def with_endpoints(scenario: Scenario, endpoints: dict[str, dict[str, Any]], **live_options: Any) -> Scenario:
    """A copy of a live scenario whose servers point at `endpoints` (as from
    :meth:`FakeCluster.endpoints`), with live options (``buffer_s``, ...) overridden."""
    raw = scenario.to_dict()
    for site in raw["sites"]:
        live = site.get("live")
        if live is None:
            continue
        live.update(live_options)
        for server in live["servers"]:
            found = endpoints.get(server["model"])
            if found is not None:
                server.update({k: v for k, v in found.items() if k in ("url", "served_model_name", "zeusd", "gpu_ids")})
    return Scenario.from_dict(raw, source=f"{scenario.name} (endpoints)")


def fake_cluster_for(
    scenario: Scenario, *, power_scale: float = DEFAULT_POWER_SCALE, tick_s: float = 0.1
) -> FakeCluster:
    """A (not yet started) fake cluster serving the models of the scenario's live sites (needs the live extra)."""
    from g2gsim.data import open_data_source
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.scenarios.build import model_catalogue

    catalogue = model_catalogue(scenario)
    specs: dict[str, Any] = {}
    batches: dict[str, int] = {}
    for site in scenario.sites:
        if site.live is None:
            continue
        for entry in site.models:
            specs[entry.model] = entry.spec(catalogue)
            batches[entry.model] = entry.initial_batch
    if not specs:
        raise ValueError(f"scenario {scenario.name!r} has no live site")
    data = open_data_source(None if scenario.data in (None, "bundled") else Path(scenario.data))
    return FakeCluster(specs, data, initial_batch=batches, power_scale=power_scale, tick_s=tick_s)


def fake_cluster_ports(scenario: Scenario) -> tuple[dict[str, int], int]:
    """The vLLM port per model and the zeusd port named in a scenario's live sites, where
    :func:`fake_cluster_for` serves them (on 127.0.0.1)."""
    vllm: dict[str, int] = {}
    zeusd: set[int] = set()
    for site in scenario.sites:
        if site.live is None:
            continue
        for server in site.live.servers:
            vllm[server.model] = urlparse(server.url).port or 80
            zeusd.add(int(server.zeusd.rpartition(":")[2]))
    if len(zeusd) > 1:
        raise ValueError(f"the fake cluster serves one zeusd; the scenario names ports {sorted(zeusd)}")
    return vllm, (zeusd.pop() if zeusd else 0)


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
    Ctrl-C stops the run; every thread and connection is released either way.
    """
    from g2gsim.scenarios.library import load_scenario
    from g2gsim.scenarios.runner import run_scenario

    scenario = scenario_path if isinstance(scenario_path, Scenario) else load_scenario(str(scenario_path))
    if not scenario.is_live:
        raise ValueError(f"scenario {scenario.name!r} has no live site ([sites.live]); use `g2gsim run`")
    if duration is not None:
        scenario = scenario.with_overrides(horizon_s=duration)
    fakes = None
    if with_fakes:
        vllm_ports, zeusd_port = fake_cluster_ports(scenario)
        fakes = fake_cluster_for(scenario, power_scale=power_scale).start(vllm_ports, zeusd_port)
    try:
        return run_scenario(scenario, out=out, plots=plots)
    finally:
        if fakes is not None:
            fakes.stop()

"""Command-line entry points of the live path: ``fake-cluster`` and ``live-run``.

Add them to the main app with :func:`register` (``g2gsim.cli`` does not import this module by
itself, so the CLI works without the ``live`` extra). :func:`run_live` is the Python entry
point behind ``g2gsim live-run`` (and ``g2gsim run --live``).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from g2gsim.scenarios.model import Scenario

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


def fake_cluster_for(scenario: Scenario, *, power_scale: float = DEFAULT_POWER_SCALE, tick_s: float = 0.1) -> Any:
    """A (not yet started) fake cluster serving the models of the scenario's live sites."""
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
            specs[entry.model] = catalogue[entry.model]
            batches[entry.model] = entry.initial_batch
    if not specs:
        raise ValueError(f"scenario {scenario.name!r} has no live site")
    data = open_data_source(None if scenario.data in (None, "bundled") else Path(scenario.data))
    return FakeCluster(specs, data, initial_batch=batches, power_scale=power_scale, tick_s=tick_s)


def _ports(scenario: Scenario) -> tuple[dict[str, int], int]:
    """The vLLM port per model and the zeusd port named in a scenario's live sites (127.0.0.1)."""
    from urllib.parse import urlparse

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
) -> Any:
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
        vllm_ports, zeusd_port = _ports(scenario)
        fakes = fake_cluster_for(scenario, power_scale=power_scale).start(vllm_ports, zeusd_port)
    try:
        return run_scenario(scenario, out=out, plots=plots)
    finally:
        if fakes is not None:
            fakes.stop()


def register(app: typer.Typer) -> None:
    """Add ``fake-cluster`` and ``live-run`` to a Typer app."""

    @app.command("fake-cluster")
    def fake_cluster(
        scenario: Annotated[
            str, typer.Argument(help="live scenario whose endpoints the fakes serve")
        ] = "ieee13_live_ofo",
        power_scale: Annotated[float, typer.Option(help="multiplier of the fake GPU power")] = DEFAULT_POWER_SCALE,
    ) -> None:
        """Serve fake vLLM and zeusd servers on the scenario's 127.0.0.1 endpoints until Ctrl-C."""
        from g2gsim.scenarios.library import load_scenario

        loaded = load_scenario(scenario)
        vllm_ports, zeusd_port = _ports(loaded)
        fakes = fake_cluster_for(loaded, power_scale=power_scale).start(vllm_ports, zeusd_port)
        done = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            typer.echo(json.dumps(fakes.endpoints(), indent=2))
            typer.echo("fake cluster running; Ctrl-C to stop")
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            fakes.stop()
            typer.echo("fake cluster stopped")

    @app.command("live-run")
    def live_run(
        scenario: Annotated[str, typer.Argument(help="a live scenario file or bundled name")],
        duration: Annotated[float | None, typer.Option(help="override the horizon, seconds")] = None,
        out: Annotated[Path | None, typer.Option(help="folder for results")] = None,
        plots: Annotated[bool, typer.Option(help="write PNG plots")] = False,
        fakes: Annotated[bool, typer.Option(help="start a fake cluster on the scenario's endpoints")] = False,
        power_scale: Annotated[float, typer.Option(help="fake GPU power multiplier")] = DEFAULT_POWER_SCALE,
    ) -> None:
        """Run a live scenario in wall-clock time against its vLLM and zeusd endpoints."""
        from g2gsim.scenarios.model import ScenarioError
        from g2gsim.scenarios.runner import RunFailed

        try:
            outcome = run_live(
                scenario, duration=duration, out=out, plots=plots, with_fakes=fakes, power_scale=power_scale
            )
        except KeyboardInterrupt:
            typer.echo("interrupted; live connections closed", err=True)
            raise typer.Exit(130) from None
        except (RunFailed, ScenarioError, ValueError, RuntimeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(outcome.metrics, sort_keys=True, default=str))

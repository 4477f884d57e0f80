"""The live path of the command line: ``run --live``, ``fake-cluster`` and ``live-run``.

The work is done by :mod:`g2gsim.live.scenario`; the fake servers need the ``live`` extra,
imported only when a fake cluster starts.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from g2gsim.cli.common import fail, load_or_fail
from g2gsim.live.scenario import DEFAULT_POWER_SCALE, fake_cluster_for, fake_cluster_ports, run_live
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.runner import RunFailed

if TYPE_CHECKING:
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.scenarios.runner import ScenarioRun


def run_live_scenario(scenario: Scenario, folder: Path, *, plots: bool, fakes: bool) -> ScenarioRun:
    """``g2gsim run --live``: the scenario in wall-clock time (on fakes served at its endpoints with `fakes`)."""
    return run_live(scenario, out=folder, plots=plots, with_fakes=fakes)


def start_fake_cluster(scenario: Scenario, power_scale: float = DEFAULT_POWER_SCALE) -> FakeCluster:
    """A running fake cluster on the scenario's own 127.0.0.1 endpoints."""
    vllm_ports, zeusd_port = fake_cluster_ports(scenario)
    return fake_cluster_for(scenario, power_scale=power_scale).start(vllm_ports, zeusd_port)


def serve_until_stopped(fakes: FakeCluster) -> None:
    """Print the endpoints and serve until Ctrl-C or SIGTERM; the cluster is stopped either way."""
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


def fake_cluster(
    scenario: Annotated[str, typer.Argument(help="live scenario whose endpoints the fakes serve")] = "ieee13_live_ofo",
    power_scale: Annotated[float, typer.Option(help="multiplier of the fake GPU power")] = DEFAULT_POWER_SCALE,
) -> None:
    """Serve fake vLLM and zeusd servers on the scenario's 127.0.0.1 endpoints until Ctrl-C."""
    loaded = load_or_fail(scenario)
    try:
        fakes = start_fake_cluster(loaded, power_scale)
    except OSError as exc:  # a port in use, or one this user may not bind
        vllm_ports, zeusd_port = fake_cluster_ports(loaded)
        ports = ", ".join(str(p) for p in [*vllm_ports.values(), zeusd_port])
        fail(
            f"fake cluster of {loaded.name!r}: cannot serve on 127.0.0.1 port(s) {ports}: {exc.strerror or exc} "
            "(is a fake cluster or another server already running there?)",
            1,
        )
    serve_until_stopped(fakes)


def live_run(
    scenario: Annotated[str, typer.Argument(help="a live scenario file or bundled name")],
    duration: Annotated[float | None, typer.Option(help="override the horizon, seconds")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for results")] = None,
    plots: Annotated[bool, typer.Option(help="write PNG plots")] = False,
    fakes: Annotated[bool, typer.Option(help="start a fake cluster on the scenario's endpoints")] = False,
    power_scale: Annotated[float, typer.Option(help="fake GPU power multiplier")] = DEFAULT_POWER_SCALE,
) -> None:
    """Run a live scenario in wall-clock time against its vLLM and zeusd endpoints."""
    try:
        outcome = run_live(scenario, duration=duration, out=out, plots=plots, with_fakes=fakes, power_scale=power_scale)
    except KeyboardInterrupt:
        typer.echo("interrupted; live connections closed", err=True)
        raise typer.Exit(130) from None
    except (RunFailed, ScenarioError, ValueError, RuntimeError) as exc:
        fail(str(exc), 1)
    typer.echo(json.dumps(outcome.metrics, sort_keys=True, default=str))


def register(app: typer.Typer) -> None:
    """Add ``fake-cluster`` and ``live-run`` to a Typer app."""
    app.command("fake-cluster")(fake_cluster)
    app.command("live-run")(live_run)

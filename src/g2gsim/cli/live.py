"""The live path of the command line: ``run --live``, ``fake-cluster``, ``live-run`` and ``replay``.

The work is done by :mod:`g2gsim.live.scenario` and :mod:`g2gsim.live.replay`; the fake
servers need the ``live`` extra, imported only when a fake cluster starts.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from g2gsim.cli.common import console, fail, load_or_fail, plain, stdout
from g2gsim.cli.run import results_table
from g2gsim.live.scenario import DEFAULT_POWER_SCALE, live_notes, run_live, start_fakes
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.runner import RunFailed

if TYPE_CHECKING:
    from g2gsim.live.fakes import FakeCluster
    from g2gsim.live.replay import ReplayComparison
    from g2gsim.scenarios.runner import ScenarioRun


def run_live_scenario(scenario: Scenario, folder: Path, *, plots: bool, fakes: bool) -> ScenarioRun:
    """``g2gsim run --live``: the scenario in wall-clock time (on fakes served at its endpoints with `fakes`);
    servers whose data went stale are named on stderr."""
    outcome = run_live(scenario, out=folder, plots=plots, with_fakes=fakes)
    warn_stale(outcome)
    return outcome


def warn_stale(outcome: ScenarioRun) -> None:
    """Say on stderr which live servers were down or had stale meters during the run."""
    for note in live_notes(outcome.scenario, outcome.result):
        console.print(f"[bold yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True, emoji=False)


def start_fake_cluster(scenario: Scenario, power_scale: float = DEFAULT_POWER_SCALE) -> FakeCluster:
    """A running fake cluster on the scenario's own 127.0.0.1 endpoints (exits 1 when a port is taken)."""
    from g2gsim.live.config import LiveStartupError

    try:
        return start_fakes(scenario, power_scale=power_scale)
    except (LiveStartupError, ValueError) as exc:
        fail(str(exc), 1)


#: Rows of the power comparison of a replay: key of :func:`g2gsim.live.replay.compare_power`, label, format.
POWER_ROWS = (
    ("live_mean_kw", "site power, mean (kW)", "{:,.1f}"),
    ("mean_abs_diff_kw", "|live - replay| power, mean (kW)", "{:,.2f}"),
    ("max_abs_diff_kw", "|live - replay| power, max (kW)", "{:,.2f}"),
    ("mean_abs_diff_fraction", "|live - replay| / live mean power", "{:.4f}"),
)


def replay_table(comparison: ReplayComparison) -> Table:
    """The live run's metrics beside its replay's, then each live site's power comparison."""
    table = results_table({"live": comparison.live_metrics, "replay": comparison.replay_metrics})
    table.title = "g2gsim live run and its offline replay"
    for site, power in comparison.power.items():
        table.add_section()
        table.add_row(f"[bold]{site}[/]: site power per step", "", "")
        table.add_row("site power, mean (kW)", f"{power['live_mean_kw']:,.1f}", f"{power['replay_mean_kw']:,.1f}")
        for key, label, fmt in POWER_ROWS[1:]:
            table.add_row(label, "", fmt.format(power[key]))
    return table


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
    serve_until_stopped(start_fake_cluster(load_or_fail(scenario), power_scale))


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
    warn_stale(outcome)
    typer.echo(json.dumps(outcome.metrics, sort_keys=True, default=str))


def replay(
    run_dir: Annotated[Path, typer.Argument(help="a live run's --out folder (with its recording/)")],
    out: Annotated[Path | None, typer.Option(help="folder for the replay's results (default RUN_DIR/replay)")] = None,
    plots: Annotated[bool, typer.Option(help="write PNG plots of the replay")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print both runs' metrics as one JSON line")] = False,
) -> None:
    """Rerun a recorded live run offline from its recording and print the two runs side by side."""
    from g2gsim.live.replay import replay as replay_run

    try:
        comparison = replay_run(run_dir, out=out, plots=plots)
    except (FileNotFoundError, ScenarioError, ValueError) as exc:
        fail(str(exc))
    except (RunFailed, RuntimeError, LookupError, OSError) as exc:
        fail(str(exc), 1)
    (console if json_output else stdout).print(replay_table(comparison))
    if json_output:
        rows = {"live": comparison.live_metrics, "replay": comparison.replay_metrics, "power": comparison.power}
        print(json.dumps(plain(rows), sort_keys=True, default=str))


def register(app: typer.Typer) -> None:
    """Add ``fake-cluster``, ``live-run`` and ``replay`` to a Typer app."""
    app.command("fake-cluster")(fake_cluster)
    app.command("live-run")(live_run)
    app.command("replay")(replay)

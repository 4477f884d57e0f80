"""``g2gsim run``, ``compare``, ``list`` and ``validate``: one scenario, several, the presets, a check."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from g2gsim.cli.common import console, fail, load_or_fail, stdout
from g2gsim.metrics import RunMetrics, table_metrics
from g2gsim.scenarios import runner
from g2gsim.scenarios.build import build_simulation
from g2gsim.scenarios.library import bundled_scenarios
from g2gsim.scenarios.model import Scenario, ScenarioError

#: What `validate` catches from building and a first step: the scenario is wrong, not g2gsim.
CHECK_ERRORS = (ScenarioError, runner.RunFailed, ValueError, LookupError, FileNotFoundError, ImportError)


# -- plain functions ------------------------------------------------------------------------
def with_run_options(
    scenario: Scenario, duration: float | None = None, seed: int | None = None, data: Path | None = None
) -> Scenario:
    """The scenario with ``--duration``, ``--seed`` and ``--data`` applied (raises ScenarioError)."""
    changes: dict[str, Any] = {}
    if duration is not None:
        changes["horizon_s"] = duration
    if seed is not None:
        changes["seed"] = seed
    if data is not None:
        changes["data"] = str(data.resolve())
    return scenario.with_overrides(**changes) if changes else scenario


def live_flag_problem(scenario: Scenario, live: bool, fakes: bool) -> str | None:
    """Why ``--live`` / ``--fakes`` do not fit the scenario (None when they do)."""
    if scenario.is_live and not live:
        return (
            f"scenario {scenario.name!r} has live sites: it drives real vLLM/zeusd servers in wall-clock time; "
            "run it with --live (add --fakes to serve fake ones on its endpoints)"
        )
    if live and not scenario.is_live:
        return f"--live needs a scenario with a [sites.live] section; {scenario.name!r} has none"
    if fakes and not live:
        return "--fakes only applies with --live"
    return None


def duplicate_name_problem(given: Sequence[str], scenarios: Sequence[Scenario]) -> str | None:
    """Why `compare` cannot put these scenarios side by side (None when every name is distinct)."""
    seen: dict[str, str] = {}
    for name, scenario in zip(given, scenarios, strict=True):
        if scenario.name in seen:
            return (
                f"scenarios {seen[scenario.name]!r} and {name!r} are both named {scenario.name!r}; the table's "
                "columns and the --out folders are named after the scenario: give each scenario a distinct `name`"
            )
        seen[scenario.name] = name
    return None


def check_scenario(scenario: Scenario) -> None:
    """Build the scenario and, unless it is live, run the first step of every component.

    The first step catches what the schema cannot: a feeder that does not compile, an unknown
    bus or regulator, a controller whose peers are missing. Live sites are built but their
    servers are not contacted.
    """
    build_simulation(scenario, check_only=True)
    if scenario.is_live:
        return
    first_steps = max(float(scenario.grid.period_s), *(float(c.period_s or 0) for c in scenario.controllers), 0.1)
    runner.run_scenario(scenario.with_overrides(horizon_s=first_steps), plots=False)


def bundled_descriptions() -> dict[str, str]:
    """Bundled scenario name -> its description (or why its file is invalid, in red)."""
    descriptions = {}
    for name, path in bundled_scenarios().items():
        try:
            descriptions[name] = Scenario.from_toml(path).description
        except ScenarioError as exc:
            descriptions[name] = f"[red]invalid: {exc}[/]"
    return descriptions


def results_table(rows: Mapping[str, Mapping[str, Any]]) -> Table:
    """The metrics of one or several runs (a column each), as listed in :data:`g2gsim.metrics.METRICS`."""
    table = Table(title="g2gsim results", show_lines=False)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for info in table_metrics(rows.values()):
        table.add_row(info.label, *(info.format(metrics.get(info.key)) for metrics in rows.values()))
    return table


# -- commands -------------------------------------------------------------------------------
def run(
    scenario: Annotated[str, typer.Argument(help="a scenario file or the name of a bundled one")],
    duration: Annotated[float | None, typer.Option(help="override the horizon, seconds")] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario seed")] = None,
    data: Annotated[Path | None, typer.Option(help="OpenG2G cache (v0.1/v0.2) or ML.ENERGY folder")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for results and plots")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the metrics as one JSON line")] = False,
    plots: Annotated[bool, typer.Option(help="write PNG plots")] = True,
    chunk_s: Annotated[float, typer.Option(help="stream results to disk every this many simulated s")] = 300.0,
    live: Annotated[bool, typer.Option(help="run a live scenario in wall-clock time against its servers")] = False,
    fakes: Annotated[bool, typer.Option(help="with --live: serve fake vLLM/zeusd on the scenario's endpoints")] = False,
) -> None:
    """Run one scenario: progress bar, metrics table, Parquet results and plots."""
    loaded = _with_run_options(load_or_fail(scenario), duration, seed, data)
    folder = out if out is not None else Path("results") / loaded.name
    problem = live_flag_problem(loaded, live, fakes)
    if problem:
        fail(problem)
    try:
        if live:
            from g2gsim.cli.live import run_live_scenario

            outcome = run_live_scenario(loaded, folder, plots=plots, fakes=fakes)
        else:
            outcome = runner.run_scenario(loaded, out=folder, plots=plots, progress=not json_output, chunk_s=chunk_s)
    except (ScenarioError, RuntimeError) as exc:  # RunFailed is a RuntimeError
        fail(str(exc), code=1)
    except KeyboardInterrupt:
        fail(f"interrupted; what was computed so far is in {folder / 'chunks'}", code=130)
    except ImportError as exc:
        fail(f"{exc}: live runs need the live extra (pip install 'g2gsim[live]')", code=1)
    _show_run(loaded.name, outcome.metrics, folder, json_output)


def _show_run(name: str, metrics: RunMetrics, folder: Path, json_output: bool) -> None:
    # The table goes to stdout, unless --json reserves stdout for the machine-readable line.
    report = console if json_output else stdout
    report.print(results_table({name: metrics}))
    report.print(f"data: {metrics['data_source']}")
    report.print(f"results written to {folder.resolve()}")
    if json_output:
        print(json.dumps(metrics, sort_keys=True))


def compare(
    scenarios: Annotated[list[str], typer.Argument(help="scenario files or bundled names")],
    duration: Annotated[float | None, typer.Option(help="override every horizon, seconds")] = None,
    seed: Annotated[int | None, typer.Option(help="override every seed")] = None,
    data: Annotated[Path | None, typer.Option(help="data folder for every scenario")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for each run's results")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print all metrics as one JSON line")] = False,
) -> None:
    """Run several scenarios and print one table (each scenario needs its own ``name``)."""
    # Every scenario is loaded and checked before anything runs.
    loaded = [_with_run_options(load_or_fail(name), duration, seed, data) for name in scenarios]
    problem = duplicate_name_problem(scenarios, loaded)
    if problem:
        fail(problem)
    rows: dict[str, RunMetrics] = {}
    for scenario in loaded:
        folder = None if out is None else out / scenario.name
        try:
            rows[scenario.name] = runner.run_scenario(
                scenario, out=folder, plots=False, progress=not json_output
            ).metrics
        except (runner.RunFailed, ScenarioError) as exc:
            fail(str(exc), code=1)
    (console if json_output else stdout).print(results_table(rows))
    if json_output:
        print(json.dumps(rows, sort_keys=True))


def list_scenarios() -> None:
    """List the bundled scenarios."""
    table = Table(title="bundled scenarios")
    table.add_column("name")
    table.add_column("description")
    for name, description in bundled_descriptions().items():
        table.add_row(name, description)
    stdout.print(table)


def validate(file: Annotated[str, typer.Argument(help="scenario file or bundled name")]) -> None:
    """Check a scenario file: schema, names, periods and a first step of every component.

    The first step catches what the schema cannot: a feeder that does not compile, an unknown
    bus or regulator, a controller whose peers are missing.
    """
    loaded = load_or_fail(file)
    try:
        check_scenario(loaded)
    except CHECK_ERRORS as exc:
        fail(f"{file}: {exc}", code=1)
    if loaded.is_live:
        stdout.print(
            f"[green]ok[/]: {loaded.name} (live: schema and build checked; its servers are "
            "contacted when a run starts, `g2gsim run --live --fakes` tries it on fakes)"
        )
    else:
        stdout.print(
            f"[green]ok[/]: {loaded.name} ({len(loaded.sites)} site(s), {len(loaded.controllers)} controller(s))"
        )


def _with_run_options(scenario: Scenario, duration: float | None, seed: int | None, data: Path | None) -> Scenario:
    try:
        return with_run_options(scenario, duration, seed, data)
    except ScenarioError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``list``, ``compare`` and ``validate`` to a Typer app."""
    app.command()(run)
    app.command("list")(list_scenarios)
    app.command()(compare)
    app.command()(validate)

"""The ``g2gsim`` command line: run, compare, list and validate scenarios."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from g2gsim.scenarios.library import bundled_scenarios, resolve_scenario
from g2gsim.scenarios.model import Scenario, ScenarioError

app = typer.Typer(
    name="g2gsim",
    help="Co-simulate LLM-serving datacenters and distribution grids (SimPy + OpenDSS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
stdout = Console()

METRIC_ROWS = (
    ("violation_time_s", "voltage violation time (s)", "{:.1f}"),
    ("integral_violation_pu_s", "violation integral (pu*s)", "{:.4f}"),
    ("worst_vmin", "worst vmin (pu)", "{:.4f}"),
    ("worst_vmax", "worst vmax (pu)", "{:.4f}"),
    ("mean_throughput_tps", "mean throughput (tokens/s)", "{:,.0f}"),
    ("itl_deadline_fraction", "ITL deadline misses (fraction)", "{:.4f}"),
    ("mean_dc_power_kw", "mean datacenter power (kW)", "{:,.1f}"),
    ("peak_dc_power_kw", "peak datacenter power (kW)", "{:,.1f}"),
    ("n_solves", "power-flow solves", "{:,d}"),
    ("wall_s", "wall clock (s)", "{:.2f}"),
)
#: Rows shown only when some run has them (scenarios with a power budget).
OPTIONAL_METRIC_ROWS = (
    ("budget_violation_s", "time above power budget (s)", "{:.1f}"),
    ("budget_excess_kwh", "energy above power budget (kWh)", "{:.2f}"),
)


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _load(scenario: str) -> Scenario:
    try:
        return Scenario.from_toml(resolve_scenario(scenario))
    except (ScenarioError, FileNotFoundError) as exc:
        _fail(str(exc))
        raise  # unreachable; keeps type checkers happy


def _apply_overrides(scenario: Scenario, duration: float | None, seed: int | None, data: Path | None) -> Scenario:
    changes: dict[str, Any] = {}
    if duration is not None:
        changes["horizon_s"] = duration
    if seed is not None:
        changes["seed"] = seed
    if data is not None:
        changes["data"] = str(data.resolve())
    if not changes:
        return scenario
    try:
        return scenario.with_overrides(**changes)
    except ScenarioError as exc:
        _fail(str(exc))
        raise  # unreachable; keeps type checkers happy


def _metrics_table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="g2gsim results", show_lines=False)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    optional = [row for row in OPTIONAL_METRIC_ROWS if any(row[0] in metrics for metrics in rows.values())]
    for key, label, fmt in (*METRIC_ROWS, *optional):
        cells = []
        for metrics in rows.values():
            value = metrics.get(key)
            cells.append("-" if value is None else fmt.format(value))
        table.add_row(label, *cells)
    return table


@app.command()
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
    from g2gsim.scenarios.runner import RunFailed, run_scenario

    loaded = _apply_overrides(_load(scenario), duration, seed, data)
    folder = out if out is not None else Path("results") / loaded.name
    if loaded.is_live != live:
        _fail(
            f"scenario {loaded.name!r} has live sites: it drives real vLLM/zeusd servers in wall-clock time; "
            "run it with --live (add --fakes to serve fake ones on its endpoints)"
            if loaded.is_live
            else f"--live needs a scenario with a [sites.live] section; {loaded.name!r} has none"
        )
    if fakes and not live:
        _fail("--fakes only applies with --live")
    try:
        if live:
            from g2gsim.live.cli import run_live

            outcome = run_live(loaded, out=folder, plots=plots, with_fakes=fakes)
        else:
            outcome = run_scenario(loaded, out=folder, plots=plots, progress=not json_output, chunk_s=chunk_s)
    except (RunFailed, ScenarioError, RuntimeError) as exc:
        _fail(str(exc), code=1)
        return
    except KeyboardInterrupt:
        _fail(f"interrupted; what was computed so far is in {folder / 'chunks'}", code=130)
        return
    except ImportError as exc:
        _fail(f"{exc}: live runs need the live extra (pip install 'g2gsim[live]')", code=1)
        return
    # The table goes to stdout, unless --json reserves stdout for the machine-readable line.
    report = console if json_output else stdout
    report.print(_metrics_table({loaded.name: outcome.metrics}))
    report.print(f"data: {outcome.metrics['data_source']}")
    report.print(f"results written to {folder.resolve()}")
    if json_output:
        print(json.dumps(outcome.metrics, sort_keys=True))


@app.command("list")
def list_scenarios() -> None:
    """List the bundled scenarios."""
    table = Table(title="bundled scenarios")
    table.add_column("name")
    table.add_column("description")
    for name, path in bundled_scenarios().items():
        try:
            description = Scenario.from_toml(path).description
        except ScenarioError as exc:
            description = f"[red]invalid: {exc}[/]"
        table.add_row(name, description)
    stdout.print(table)


@app.command()
def compare(
    scenarios: Annotated[list[str], typer.Argument(help="scenario files or bundled names")],
    duration: Annotated[float | None, typer.Option(help="override every horizon, seconds")] = None,
    seed: Annotated[int | None, typer.Option(help="override every seed")] = None,
    data: Annotated[Path | None, typer.Option(help="data folder for every scenario")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for each run's results")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print all metrics as one JSON line")] = False,
) -> None:
    """Run several scenarios and print one table (each scenario needs its own ``name``)."""
    from g2gsim.scenarios.runner import RunFailed, run_scenario

    given: dict[str, str] = {}
    for name in scenarios:  # every scenario is loaded and checked before anything runs
        loaded = _load(name)
        if loaded.name in given:
            _fail(
                f"scenarios {given[loaded.name]!r} and {name!r} are both named {loaded.name!r}; the table's columns "
                "and the --out folders are named after the scenario: give each scenario a distinct `name`"
            )
        given[loaded.name] = name
    rows: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        loaded = _apply_overrides(_load(name), duration, seed, data)
        folder = None if out is None else out / loaded.name
        try:
            rows[loaded.name] = run_scenario(loaded, out=folder, plots=False, progress=not json_output).metrics
        except (RunFailed, ScenarioError) as exc:
            _fail(str(exc), code=1)
    (console if json_output else stdout).print(_metrics_table(rows))
    if json_output:
        print(json.dumps(rows, sort_keys=True))


@app.command()
def validate(file: Annotated[str, typer.Argument(help="scenario file or bundled name")]) -> None:
    """Check a scenario file: schema, names, periods and a first step of every component.

    The first step catches what the schema cannot: a feeder that does not compile, an unknown
    bus or regulator, a controller whose peers are missing.
    """
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.runner import RunFailed, run_scenario

    loaded = _load(file)
    if loaded.is_live:
        try:
            build_simulation(loaded, check_only=True)
        except (ScenarioError, ValueError, LookupError, FileNotFoundError, ImportError) as exc:
            _fail(f"{file}: {exc}", code=1)
        stdout.print(
            f"[green]ok[/]: {loaded.name} (live: schema and build checked; its servers are "
            "contacted when a run starts, `g2gsim run --live --fakes` tries it on fakes)"
        )
        return
    try:
        build_simulation(loaded, check_only=True)
        first_steps = max(float(loaded.grid.period_s), *(float(c.period_s or 0) for c in loaded.controllers), 0.1)
        run_scenario(loaded.with_overrides(horizon_s=first_steps), plots=False)
    except (ScenarioError, RunFailed, ValueError, LookupError, FileNotFoundError) as exc:
        _fail(f"{file}: {exc}", code=1)
    stdout.print(f"[green]ok[/]: {loaded.name} ({len(loaded.sites)} site(s), {len(loaded.controllers)} controller(s))")


def _register_extensions() -> None:
    """Commands that live in their own modules (imported lazily where they need extras)."""
    from g2gsim.live.cli import register as register_live
    from g2gsim.planning_cli import register as register_planning
    from g2gsim.studies.cli import register as register_studies

    register_studies(app)
    register_planning(app)
    register_live(app)


_register_extensions()


def main() -> None:
    """Entry point of the ``g2gsim`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

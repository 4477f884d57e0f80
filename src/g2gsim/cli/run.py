"""``g2gsim run``, ``compare``, ``list`` and ``validate``: one scenario, several, the presets, a check."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from g2gsim.cli.common import (
    FeederDirs,
    MemoryLimit,
    Sets,
    check_memory_limit,
    console,
    fail,
    load_or_fail,
    stdout,
    trust_feeder_dirs,
    warn,
)
from g2gsim.metrics import RunMetrics, table_metrics
from g2gsim.scenarios import runner
from g2gsim.scenarios.build import build_simulation
from g2gsim.scenarios.checks import HorizonWarning, MemoryEstimate, MemoryLimitError, check_memory, horizon_note
from g2gsim.scenarios.library import bundled_scenarios
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.outputs import OutputFolderError

#: Options of `run` and `compare`.
Seed = Annotated[int | None, typer.Option(help="override the scenario seed (0 or more)")]

#: What `validate` catches from building and a first step: the scenario is wrong, not g2gsim.
CHECK_ERRORS = (ScenarioError, runner.RunFailed, ValueError, LookupError, FileNotFoundError, ImportError)


# -- plain functions ------------------------------------------------------------------------
def with_run_options(
    scenario: Scenario, duration: float | None = None, seed: int | None = None, data: Path | None = None
) -> Scenario:
    """The scenario with ``--duration``, ``--seed`` and ``--data`` applied (a ScenarioError names the option)."""
    if seed is not None and seed < 0:
        raise ScenarioError(f"--seed {seed}: must be 0 or more")
    options = {
        "horizon_s": ("--duration", duration),
        "seed": ("--seed", seed),
        "data": ("--data", None if data is None else str(data.resolve())),
    }
    for path, (option, value) in options.items():
        if value is not None:
            scenario = scenario.with_changes({path: value}, what=f"{option} {value}")
    return scenario


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


@dataclass(frozen=True)
class ScenarioCheck:
    """What `validate` found: the memory the full run needs, and a note on its horizon (or None)."""

    memory: MemoryEstimate
    horizon_note: str | None


def check_scenario(scenario: Scenario, memory_limit: str | None = None) -> ScenarioCheck:
    """Build the scenario, check the memory of its full horizon and, unless it is live, run the
    first step of every component.

    The first step catches what the schema cannot: a feeder that does not compile, an unknown
    bus or regulator, a controller whose peers are missing. Live sites are built but their
    servers are not contacted. Raises MemoryLimitError (a ScenarioError) beyond the limit.
    """
    built = build_simulation(scenario, check_only=True)
    memory = check_memory(built, memory_limit)
    if not scenario.is_live:
        first_steps = max(float(scenario.grid.period_s), *(float(c.period_s or 0) for c in scenario.controllers), 0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HorizonWarning)  # the first steps end before any event, by design
            runner.run_scenario(scenario.with_overrides(horizon_s=first_steps), plots=False)
    return ScenarioCheck(memory, horizon_note(scenario))


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
    seed: Seed = None,
    data: Annotated[Path | None, typer.Option(help="OpenG2G cache (v0.1/v0.2) or ML.ENERGY folder")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for results and plots")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the metrics as one JSON line")] = False,
    plots: Annotated[bool, typer.Option(help="write PNG plots")] = True,
    chunk_s: Annotated[float, typer.Option(help="stream results to disk every this many simulated s")] = 300.0,
    live: Annotated[bool, typer.Option(help="run a live scenario in wall-clock time against its servers")] = False,
    fakes: Annotated[bool, typer.Option(help="with --live: serve fake vLLM/zeusd on the scenario's endpoints")] = False,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    memory_limit: MemoryLimit = None,
) -> None:
    """Run one scenario: progress bar, metrics table, Parquet results and plots."""
    trust_feeder_dirs(feeder_dir)
    check_memory_limit(memory_limit)
    loaded = _with_run_options(load_or_fail(scenario, sets), duration, seed, data)
    folder = out if out is not None else Path("results") / loaded.name
    problem = live_flag_problem(loaded, live, fakes)
    if problem:
        fail(problem)
    if not (chunk_s > 0 and chunk_s < float("inf")):
        fail(f"--chunk-s {chunk_s:g}: must be a positive number of simulated seconds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HorizonWarning)  # shown with the table (ScenarioRun.notes)
        outcome = _run_one(
            loaded,
            folder,
            source=scenario,
            plots=plots,
            progress=not json_output,
            chunk_s=chunk_s,
            live=live,
            fakes=fakes,
            memory_limit=memory_limit,
        )
    _show_run(loaded.name, outcome, folder, json_output)


def _run_one(
    scenario: Scenario, folder: Path, *, source: str, live: bool, fakes: bool, **options: Any
) -> runner.ScenarioRun:
    """One run (live or simulated), every failure a one-line error naming the scenario file:
    2 for bad input, 1 for a failed run."""
    where = file_prefix(source)
    try:
        if live:
            from g2gsim.cli.live import run_live_scenario

            return run_live_scenario(scenario, folder, plots=options["plots"], fakes=fakes)
        return runner.run_scenario(scenario, out=folder, **options)
    except OutputFolderError as exc:
        fail(str(exc))
    except (ScenarioError, ValueError, LookupError) as exc:  # found before the run started: bad input
        fail(f"{where}{exc}")
    except RuntimeError as exc:  # RunFailed: the run itself failed
        fail(f"{where}{exc}", code=1)
    except KeyboardInterrupt:
        fail(f"interrupted; what was computed so far is in {folder / 'chunks'}", code=130)
    except ImportError as exc:
        fail(f"{exc}: live runs need the live extra (pip install 'g2gsim[live]')", code=1)
    except OSError as exc:
        fail(f"--out {folder}: {exc.strerror or exc} ({exc.filename or folder})", code=1)


def _show_run(name: str, outcome: runner.ScenarioRun, folder: Path, json_output: bool) -> None:
    # The table goes to stdout, unless --json reserves stdout for the machine-readable line.
    report = console if json_output else stdout
    metrics = outcome.metrics
    report.print(results_table({name: metrics}))
    report.print(f"data: {metrics['data_source']}")
    for note in outcome.notes:
        warn(note)
    report.print(f"results written to {folder.resolve()}")
    if json_output:
        print(json.dumps(metrics, sort_keys=True))


def compare(
    scenarios: Annotated[list[str], typer.Argument(help="scenario files or bundled names")],
    duration: Annotated[float | None, typer.Option(help="override every horizon, seconds")] = None,
    seed: Seed = None,
    data: Annotated[Path | None, typer.Option(help="data folder for every scenario")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for each run's results")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print all metrics as one JSON line")] = False,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    memory_limit: MemoryLimit = None,
) -> None:
    """Run several scenarios and print one table (each scenario needs its own ``name``)."""
    trust_feeder_dirs(feeder_dir)
    check_memory_limit(memory_limit)
    # Every scenario is loaded and checked before anything runs.
    loaded = [_with_run_options(load_or_fail(name, sets), duration, seed, data) for name in scenarios]
    problem = duplicate_name_problem(scenarios, loaded)
    if problem:
        fail(problem)
    rows: dict[str, RunMetrics] = {}
    notes: list[str] = []
    for given, scenario in zip(scenarios, loaded, strict=True):
        folder = None if out is None else out / scenario.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HorizonWarning)
            outcome = _compare_one(scenario, folder, not json_output, memory_limit, file_prefix(given))
        rows[scenario.name] = outcome.metrics
        notes += outcome.notes
    (console if json_output else stdout).print(results_table(rows))
    for note in notes:
        warn(note)
    if json_output:
        print(json.dumps(rows, sort_keys=True))


def _compare_one(
    scenario: Scenario, folder: Path | None, progress: bool, memory_limit: str | None, where: str
) -> runner.ScenarioRun:
    try:
        return runner.run_scenario(scenario, out=folder, plots=False, progress=progress, memory_limit=memory_limit)
    except OutputFolderError as exc:
        fail(str(exc))
    except ScenarioError as exc:
        fail(f"{where}{exc}")
    except runner.RunFailed as exc:
        fail(f"{where}{exc}", code=1)


def file_prefix(given: str) -> str:
    """``"path: "`` when the scenario was given as a file (a bundled name is in the message already)."""
    return f"{given}: " if Path(given).is_file() else ""


def list_scenarios() -> None:
    """List the bundled scenarios."""
    table = Table(title="bundled scenarios")
    table.add_column("name")
    table.add_column("description")
    for name, description in bundled_descriptions().items():
        table.add_row(name, description)
    stdout.print(table)


def validate(
    file: Annotated[str, typer.Argument(help="scenario file or bundled name")],
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    memory_limit: MemoryLimit = None,
) -> None:
    """Check a scenario file: schema, names, periods, the memory of a full run and a first step
    of every component.

    The first step catches what the schema cannot: a feeder that does not compile, an unknown
    bus or regulator, a controller whose peers are missing.
    """
    trust_feeder_dirs(feeder_dir)
    check_memory_limit(memory_limit)
    loaded = load_or_fail(file, sets)
    try:
        check = check_scenario(loaded, memory_limit)
    except MemoryLimitError as exc:
        fail(f"{file}: {exc}")
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
    stdout.print(f"memory: a full run ({float(loaded.horizon_s):g} s) needs {check.memory.describe()}", soft_wrap=True)
    if check.horizon_note:
        warn(check.horizon_note)


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

"""Command-line study commands: ``sweep``, ``sensitivity``, ``site-sweep``, ``hosting-capacity``, ``ensemble``.

- ``g2gsim sweep FILE``: the runs of a sweep file (TOML), with a heat-map of two axes;
- ``g2gsim sensitivity SCENARIO PARAM VALUES...``: metrics against one scenario field
  (any dotted path, e.g. ``controllers.0.params.primal_step_size``), with a line plot;
- ``g2gsim site-sweep SCENARIO``: a site moved to every three-phase bus, ranked by a metric,
  with a bar chart and a feeder map;
- ``g2gsim hosting-capacity FEEDER``: the largest site per bus, by bisection on its size;
- ``g2gsim ensemble SCENARIO``: one run per seed, mean and confidence interval of each metric.

Every command writes its runs (``results.parquet``, one JSON row per run in ``runs/``) into
one output folder and resumes into it (finished runs are skipped); a folder may hold other
studies' runs too (``results.parquet`` has them all), but each command reports, plots and
counts its own runs only. They share the executor options ``--workers N`` /
``--scheduler ADDR``, ``--out``, ``--progress/--no-progress`` and ``--json``. Exit codes:
2 for bad input (the message names the option, the value and what is allowed), 1 when runs
failed (outputs are still written; hosting-capacity counts a failed run as infeasible and
still exits 1) or the executor cannot be reached, 3 when the executor lost runs (run again
with the same ``--out`` to resume).

The main CLI registers them with ``register(app)``; they can also be mounted on any
``typer.Typer()`` (the tests do).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import pandas as pd

    from g2gsim.scenarios import Scenario

#: Metrics shown in the study tables, with their column headings (every metric is in the CSV / Parquet outputs).
HEADLINE_METRICS = {
    "violation_time_s": "violation s",
    "integral_violation_pu_s": "violation pu*s",
    "worst_vmin": "vmin pu",
    "worst_vmax": "vmax pu",
    "mean_throughput_tps": "tokens/s",
    "itl_deadline_fraction": "ITL misses",
    "mean_dc_power_kw": "mean kW",
    "peak_dc_power_kw": "peak kW",
}
#: Column headings of the study tables.
HEADINGS = {**HEADLINE_METRICS, "n_ok": "ok"}
#: Metric columns of the sensitivity and site tables (besides the chosen metric), narrow enough for 80 columns.
TABLE_METRICS = ("violation_time_s", "worst_vmin", "mean_throughput_tps", "mean_dc_power_kw")
_MISSING = object()

# Options shared by the study commands (module level: typer resolves annotations in these globals).
Workers = Annotated[int | None, typer.Option(help="local worker processes (default: serial)")]
Scheduler = Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")]
Duration = Annotated[float | None, typer.Option(help="simulated seconds per run (default: the scenario's horizon)")]
Progress = Annotated[bool, typer.Option(help="progress bar with ETA")]
Linearized = Annotated[
    bool, typer.Option(help="screen with the linearised grid (coarse; full power flow is the default)")
]
JsonOutput = Annotated[bool, typer.Option("--json", help="print the counts and the summary as one JSON line")]


def _executor(workers: int | None, scheduler: str | None) -> tuple[Any, int | None]:
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers N or --scheduler ADDR, not both")
    if scheduler is not None:
        return scheduler, None
    return None, workers


def _summary(table: Any, params: list[str], metrics: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    columns = [c for c in ("run_id", "status", *params, *metrics) if c in table.columns]
    view = Table(title=f"{len(table)} run(s)" + (" (first 50)" if len(table) > 50 else ""))
    for c in columns:
        view.add_column(c)
    for _, row in table.head(50).iterrows():
        view.add_row(*[_fmt(row[c]) for c in columns])
    console.print(view)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit (2: bad input, 1: runs failed, 3: runs lost)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_base(scenario: str, duration: float | None) -> Scenario:
    """The scenario (bundled name or file), with ``--duration`` as its horizon; exits 2 when invalid."""
    from g2gsim.scenarios import ScenarioError, load_scenario

    try:
        base = load_scenario(scenario)
    except (ScenarioError, FileNotFoundError) as exc:
        _fail(str(exc))
    if base.is_live:
        _fail(f"scenario {base.name!r} has live sites; studies run simulated scenarios only")
    if duration is not None:
        if not (math.isfinite(duration) and duration > 0):
            _fail(f"--duration {duration:g}: must be a positive number of simulated seconds")
        try:
            base = base.with_overrides(horizon_s=duration)
        except ScenarioError as exc:
            _fail(f"--duration {duration:g}: {exc}")
    return base


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """Seeds from ``"0-9"``, ``"0,3,7"`` or ``"0-4,10,12-13"`` (ranges inclusive); exits 2 when malformed."""
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if match is None:
            _fail(
                f"{option} {text!r}: {item!r} is not a seed or a range; use non-negative integers "
                "like '0-9', '0,3,7' or '0-4,10'"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            _fail(f"{option} {text!r}: the range {item!r} is empty (it needs low <= high, e.g. '{high}-{low}')")
        seeds.extend(range(low, high + 1))
    return list(dict.fromkeys(seeds))


def _current_value(raw: Any, path: str) -> Any:
    """The value at a dotted path of a plain scenario mapping (``_MISSING`` when absent)."""
    node = raw
    for part in path.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def parse_values(tokens: Sequence[str], current: Any = _MISSING) -> list[Any]:
    """Command-line values of a parameter: each token is one value or a comma-separated list.

    A value is read as JSON (numbers, true/false, lists, tables) unless the parameter's present
    value is text (a bus name stays ``"671"``, not 671); what does not parse is kept as text.
    Exits 2 on an empty value.
    """
    values: list[Any] = []
    for token in tokens:
        stripped = token.strip()
        items = [stripped] if stripped[:1] in ("[", "{") else stripped.split(",")
        for item in items:
            item = item.strip()
            if not item:
                _fail(f"VALUES {token!r}: empty value; give values like 0.05 0.1 0.2 or 0.05,0.1,0.2")
            if isinstance(current, str):
                values.append(item)
                continue
            if item.lower() in ("true", "false"):
                values.append(item.lower() == "true")
                continue
            try:
                values.append(json.loads(item))
            except json.JSONDecodeError:
                values.append(item)
    return list({json.dumps(v, sort_keys=True): v for v in values}.values())


def _study_buses(base: Scenario, bus: Sequence[str] | None) -> list[str]:
    """The ``--bus`` values (repeated or comma-separated), each a three-phase bus of the
    scenario's feeder, or every candidate bus when none is given; exits 2 otherwise."""
    from g2gsim.studies.studies import candidate_buses, feeder_topology

    topology = feeder_topology(base.grid.feeder)
    candidates = candidate_buses(base)
    requested = list(dict.fromkeys(b.strip().lower() for item in bus or [] for b in item.split(",") if b.strip()))
    three_phase = set(topology.three_phase_buses())
    wrong = [b for b in requested if b not in three_phase]
    if wrong:
        kind = "no bus" if wrong[0] not in topology.buses else "not a three-phase bus"
        _fail(f"--bus {wrong[0]!r}: {kind} of feeder {base.grid.feeder!r}; three-phase buses: {', '.join(candidates)}")
    buses = requested or candidates
    if not buses:
        _fail(f"feeder {base.grid.feeder!r} has no candidate three-phase bus; give --bus")
    return buses


def _check_site(base: Scenario, site: int) -> None:
    """``--site`` must index one of the scenario's sites; exits 2 otherwise."""
    if not 0 <= site < len(base.sites):
        _fail(f"--site {site}: scenario {base.name!r} has {len(base.sites)} site(s); use 0..{len(base.sites) - 1}")


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        _fail(f"--workers {workers}: must be 1 or more (leave it out to run serially)")


@contextmanager
def _running(scheduler: str | None) -> Iterator[None]:
    """Run a study: scenario errors and a bad ``--scheduler`` address exit 2, executor errors exit 1;
    lost-run and shared-folder warnings are left to the caller (its counts, its own rows)."""
    from g2gsim.scenarios import ScenarioError
    from g2gsim.studies.sweep import ExecutorError, SweepError, SweepFolderWarning

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lost by the executor")
            warnings.simplefilter("ignore", SweepFolderWarning)
            yield
    except ExecutorError as exc:
        if scheduler is None:
            _fail(str(exc))
        _fail(f"--scheduler {scheduler!r}: not a scheduler address; give one like tcp://host:8786")
    except (SweepError, ScenarioError) as exc:
        _fail(str(exc))
    except ImportError as exc:
        _fail(f"{exc} (--scheduler needs the dask extra: pip install 'g2gsim[dask]')", 1)
    except OSError as exc:
        where = f"--scheduler {scheduler}: " if scheduler else ""
        _fail(f"{where}{exc}", 1)


def _study_rows(sweep: Any, out: Path) -> pd.DataFrame:
    """This study's rows of the output folder (it may hold other studies' runs)."""
    from g2gsim.studies.studies import study_runs
    from g2gsim.studies.sweep import load_results

    return study_runs(sweep, load_results(out, write=False))


def _counts(runs: pd.DataFrame, expected: int, out: Path) -> dict[str, Any]:
    n_ok = int((runs["status"] == "ok").sum()) if "status" in runs else 0
    return {
        "out": str(out),
        "total": expected,
        "ok": n_ok,
        "failed": len(runs) - n_ok,
        "lost": expected - len(runs),
        "results": str(out / "results.parquet"),
    }


def _report_failures(runs: pd.DataFrame, counts: dict[str, Any], label: str | None) -> None:
    if counts["failed"]:
        for _, row in runs[runs["status"] == "failed"].head(5).iterrows():
            where = f" ({label}={_fmt(row.get(label))})" if label else ""
            typer.echo(f"failed {row['run_id']}{where}: {row['error']}", err=True)


def _check_metric(runs: pd.DataFrame, metric: str, counts: dict[str, Any], label: str, json_output: bool) -> None:
    """Exit 1 when no run finished (after the JSON line with --json), 2 when `metric` is not one of the runs' metrics."""
    if counts["ok"] == 0:
        if json_output:
            typer.echo(json.dumps(_plain(counts)))
        _report_failures(runs, counts, label)
        if counts["lost"]:
            _fail(f"the executor lost {counts['lost']} run(s); run again with --out {counts['out']} to resume", 3)
        _fail(f"all {counts['failed']} run(s) failed; the errors are in {counts['results']} (column 'error')", 1)
    from g2gsim.studies.studies import NOT_METRICS

    if metric not in runs.select_dtypes("number").columns or metric in NOT_METRICS or metric == label:
        known = sorted(c for c in runs.select_dtypes("number").columns if c not in NOT_METRICS and c != label)
        _fail(f"--metric {metric!r}: not a metric of these runs; metrics: {', '.join(known)}")


def _finish(
    runs: pd.DataFrame, counts: dict[str, Any], label: str | None, json_output: bool, extra: dict[str, Any]
) -> None:
    """Print the JSON line (with --json), the failures, and exit 1 (failed runs) or 3 (lost runs)."""
    if json_output:
        typer.echo(json.dumps(_plain({**counts, **extra})))
    else:
        typer.echo(
            " ".join(f"{k}={v}" for k, v in counts.items() if k != "results")
            + "".join(f" {k}={v}" for k, v in extra.items() if k != "summary")
        )
    _report_failures(runs, counts, label)
    if counts["lost"]:
        _fail(f"the executor lost {counts['lost']} run(s); run again with --out {counts['out']} to resume", 3)
    if counts["failed"]:
        _fail(f"{counts['failed']} of {counts['total']} run(s) failed; outputs were written to {counts['out']}", 1)


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _print_table(frame: pd.DataFrame, columns: Sequence[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title)
    shown = [c for c in dict.fromkeys(columns) if c in frame.columns]
    cells = [[_fmt(row[c]) for c in shown] for _, row in frame.iterrows()]
    for i, c in enumerate(shown):  # cells never wrap (headings do): numbers stay readable in 80 columns
        width = max([len(r[i]) for r in cells] + [2])
        view.add_column(
            HEADINGS.get(c, c), justify="right" if frame[c].dtype.kind in "biuf" else "left", min_width=width
        )
    for row_cells in cells:
        view.add_row(*row_cells)
    Console().print(view)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "study"


def register(app: typer.Typer) -> None:
    """Add the ``sweep``, ``sensitivity``, ``site-sweep``, ``hosting-capacity`` and ``ensemble`` commands to `app`."""

    @app.command("sweep")
    def sweep_command(
        file: Annotated[Path, typer.Argument(help="sweep file (TOML: base, overrides, mode, axes)")],
        workers: Annotated[int | None, typer.Option(help="local worker processes (default: serial)")] = None,
        scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")] = None,
        out: Annotated[Path | None, typer.Option(help="output folder (default: sweeps/<name>)")] = None,
        heatmap: Annotated[
            str, typer.Option(help="metric of the heat-map when the sweep has two or more axes")
        ] = "violation_time_s",
        progress: Annotated[bool, typer.Option(help="progress bar with ETA")] = True,
        json_output: Annotated[bool, typer.Option("--json", help="print the counts as one JSON line")] = False,
    ) -> None:
        """Run a sweep; resumes into an existing output folder (completed runs are skipped)."""
        from g2gsim.scenarios import ScenarioError
        from g2gsim.studies.sweep import (
            Sweep,
            SweepError,
            run_sweep,
            sweep_folder_mismatch,
        )

        _check_workers(workers)
        executor, n = _executor(workers, scheduler)
        try:  # the file, the base scenario, every path and value, checked before anything runs
            sweep = Sweep.from_toml(file)
            expected = len(sweep.tasks())
        except (SweepError, ScenarioError) as exc:
            _fail(str(exc))
        folder = out or Path("sweeps") / _slug(sweep.name)
        mismatch = sweep_folder_mismatch(folder, sweep)
        if mismatch:
            typer.echo(f"warning: {mismatch}", err=True)
        with _running(scheduler):
            result = run_sweep(sweep, folder, executor, workers=n, progress=progress and not json_output)
        runs = result.table
        axes = list(sweep.axes)
        plot = None
        if len(axes) >= 2 and "status" in runs and heatmap in runs and (runs["status"] == "ok").any():
            from g2gsim.plots import write_figure
            from g2gsim.studies.studies import plot_metric_heatmap

            plot = write_figure(
                plot_metric_heatmap(runs, axes[0], axes[1], heatmap), folder / f"heatmap_{_slug(heatmap)}.png"
            )
        counts = _counts(runs, expected, folder)
        if not json_output:
            _summary(runs, axes, ("violation_time_s", "integral_violation_pu_s", "worst_vmin", "mean_throughput_tps"))
        extra = {
            "skipped": result.n_skipped,
            "wall_s": round(result.wall_s, 3),
            "heatmap": None if plot is None else str(plot),
        }
        _finish(runs, counts, axes[0] if axes else None, json_output, extra)

    @app.command("hosting-capacity")
    def hosting_capacity_command(
        feeder: Annotated[str, typer.Argument(help="ieee13, ieee34 or ieee123 (its preset is the base scenario)")],
        scenario: Annotated[str | None, typer.Option(help="base scenario instead of the feeder's preset")] = None,
        bus: Annotated[
            list[str] | None, typer.Option("--bus", help="bus to study (repeat; default: every three-phase bus)")
        ] = None,
        site: Annotated[int, typer.Option(help="index of the site to move and resize")] = 0,
        duration: Annotated[float, typer.Option(help="simulated seconds per run")] = 600.0,
        metric: Annotated[str, typer.Option(help="metric kept at or below the threshold")] = "violation_time_s",
        threshold: Annotated[float, typer.Option(help="largest acceptable value of the metric")] = 0.0,
        max_gpus: Annotated[int | None, typer.Option(help="largest size tried (default 4x the base site)")] = None,
        resolution: Annotated[int, typer.Option(help="bisection resolution, GPUs")] = 64,
        linearized: Annotated[bool, typer.Option(help="screen with the linearised grid")] = False,
        workers: Annotated[int | None, typer.Option(help="local worker processes")] = None,
        scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address")] = None,
        out: Annotated[
            Path | None, typer.Option(help="output folder (default: sweeps/hosting_<scenario>_site<N>_<duration>s)")
        ] = None,
        progress: Annotated[bool, typer.Option(help="progress bars")] = True,
        json_output: JsonOutput = False,
    ) -> None:
        """Largest site (GPUs) per bus that keeps the metric below the threshold (bisection)."""
        from g2gsim.plots import write_figure
        from g2gsim.studies.studies import (
            DEFAULT_BASE,
            MetricError,
            feeder_topology,
            hosting_capacity,
            plot_hosting_capacity,
        )
        from g2gsim.studies.sweep import ExecutorError

        _check_workers(workers)
        name = scenario or DEFAULT_BASE.get(feeder)
        if name is None:
            _fail(f"no preset for feeder {feeder!r}; give --scenario (presets: {sorted(DEFAULT_BASE)})")
        base = _load_base(name, duration)
        _check_site(base, site)
        if resolution < 1:
            _fail(f"--resolution {resolution}: must be at least 1 GPU")
        if max_gpus is not None and max_gpus < 1:
            _fail(f"--max-gpus {max_gpus}: must be at least 1 GPU")
        buses = _study_buses(base, bus)
        executor, n = _executor(workers, scheduler)
        mode = "_linearized" if linearized else ""
        folder = out or Path("sweeps") / _slug(f"hosting_{base.name}_site{site}_{duration:g}s{mode}")
        with _running(scheduler):
            try:
                result = hosting_capacity(
                    base,
                    folder,
                    buses=buses,
                    site=site,
                    metric=metric,
                    threshold=threshold,
                    max_gpus=max_gpus,
                    resolution_gpus=resolution,
                    executor=executor,
                    workers=n,
                    progress=progress and not json_output,
                    linearized_grid=linearized,
                )
            except ExecutorError:
                raise  # a bad --scheduler address: _running reports it
            except MetricError as exc:
                _fail(
                    f"--metric {exc.metric!r}: not a metric of these runs; metrics: {', '.join(exc.available)} "
                    f"(the first round's runs are kept in {folder})"
                )
            except (KeyError, ValueError, RuntimeError) as exc:
                _fail(f"hosting capacity on {base.name!r}: {exc}; runs so far are kept in {folder}", 1)
        capacity = dict(zip(result.table["bus"], result.table["capacity_gpus"], strict=True))
        topology = feeder_topology(base.grid.feeder)
        plot = write_figure(
            plot_hosting_capacity(
                topology, capacity, f"{base.grid.feeder}: hosting capacity ({metric} <= {threshold:g})"
            ),
            folder / "hosting_capacity.png",
        )
        n_failed, n_unsolved = result.n_failed, result.n_unsolved
        if json_output:
            typer.echo(
                json.dumps(
                    _plain(
                        {
                            "capacity_gpus": capacity,
                            "metric": metric,
                            "threshold": threshold,
                            "runs": len(result.runs),
                            "failed": n_failed,
                            "unsolved": n_unsolved,
                            "out": str(folder),
                        }
                    )
                )
            )
        else:
            typer.echo(result.table.to_string(index=False))
            typer.echo(f"table: {folder / 'hosting_capacity.csv'}  plot: {plot}  runs: {folder / 'results.parquet'}")
            if n_unsolved:
                typer.echo(
                    f"{n_unsolved} run(s) had no power-flow solution (site beyond the feeder): counted infeasible"
                )
        if n_failed:
            _report_failures(result.runs, {"failed": n_failed}, "site_gpus")
            _fail(
                f"{n_failed} of {len(result.runs)} run(s) failed and were counted as infeasible; "
                f"outputs were written to {folder}",
                1,
            )

    @app.command("sensitivity")
    def sensitivity_command(
        scenario: Annotated[str, typer.Argument(help="scenario file or bundled name")],
        param: Annotated[
            str, typer.Argument(help="dotted path of the field to vary, e.g. controllers.0.params.primal_step_size")
        ],
        values: Annotated[
            list[str],
            typer.Argument(help="values to try, e.g. 0.05 0.1 0.2 or 0.05,0.1,0.2 (negative values after --)"),
        ],
        metric: Annotated[str, typer.Option(help="metric of the plot")] = "violation_time_s",
        seeds: Annotated[
            str | None, typer.Option(help="seeds per value, e.g. 0-4 (default: the scenario's seed)")
        ] = None,
        duration: Duration = None,
        workers: Workers = None,
        scheduler: Scheduler = None,
        out: Annotated[
            Path | None, typer.Option(help="output folder (default: sweeps/sensitivity_<scenario>_<field>)")
        ] = None,
        progress: Progress = True,
        json_output: JsonOutput = False,
        linearized: Linearized = False,
    ) -> None:
        """Metrics against one scenario field (any dotted path): how much the outcome depends on it."""
        from g2gsim.plots import write_figure
        from g2gsim.studies.studies import (
            parameter_sensitivity,
            plot_sensitivity,
            sensitivity_sweep,
        )
        from g2gsim.studies.sweep import SweepError

        _check_workers(workers)
        executor, n = _executor(workers, scheduler)
        base = _load_base(scenario, duration)
        if param == "seed":
            _fail("PARAM 'seed': the seed is not a parameter to tune; use `g2gsim ensemble SCENARIO --seeds ...`")
        parsed = parse_values(values, _current_value(base.to_dict(), param))
        seed_list = [base.seed] if seeds is None else parse_seeds(seeds)
        try:  # the path and every value, checked before anything runs
            sweep = sensitivity_sweep(base, param, parsed, seed_list, linearized_grid=linearized)
            expected = len(sweep.tasks())
        except SweepError as exc:
            _fail(str(exc))
        folder = out or Path("sweeps") / _slug(f"sensitivity_{base.name}_{param.split('.')[-1]}")
        with _running(scheduler):
            summary = parameter_sensitivity(
                base,
                param,
                parsed,
                folder,
                seeds=seed_list,
                executor=executor,
                workers=n,
                progress=progress,
                linearized_grid=linearized,
            )
        runs = _study_rows(sweep, folder)
        counts = _counts(runs, expected, folder)
        _check_metric(runs, metric, counts, param, json_output)
        plot = write_figure(plot_sensitivity(runs, param, metric), folder / f"sensitivity_{_slug(metric)}.png")
        if not json_output:
            label = param.split(".")[-1]
            _print_table(
                summary.rename(columns={param: label}),
                [label, "n_ok", metric, *TABLE_METRICS],
                f"{base.name}: sensitivity to {param} ({len(seed_list)} seed(s) per value)",
            )
        extra = {"table": str(folder / "sensitivity.csv"), "plot": str(plot), "summary": summary.to_dict("records")}
        _finish(runs, counts, param, json_output, extra)

    @app.command("site-sweep")
    def site_sweep_command(
        scenario: Annotated[str, typer.Argument(help="scenario file or bundled name")],
        site: Annotated[int, typer.Option(help="index of the site to move")] = 0,
        bus: Annotated[
            list[str] | None,
            typer.Option(
                "--bus", "--buses", help="bus to try (repeat or comma-separate; default: every three-phase bus)"
            ),
        ] = None,
        metric: Annotated[str, typer.Option(help="metric that ranks the buses")] = "violation_time_s",
        descending: Annotated[bool, typer.Option(help="rank the largest value first (e.g. for worst_vmin)")] = False,
        seeds: Annotated[str | None, typer.Option(help="seeds per bus, e.g. 0-4; the table shows the mean")] = None,
        duration: Duration = None,
        workers: Workers = None,
        scheduler: Scheduler = None,
        out: Annotated[Path | None, typer.Option(help="output folder (default: sweeps/sites_<scenario>)")] = None,
        progress: Progress = True,
        json_output: JsonOutput = False,
        linearized: Linearized = False,
    ) -> None:
        """The site at each three-phase bus in turn, ranked by a metric: where a datacenter fits best."""
        from g2gsim.plots import write_figure
        from g2gsim.studies.studies import (
            feeder_topology,
            plot_bus_values,
            plot_metric_by_bus,
            site_sweep,
            siting_sweep,
            study_runs,
            summarize_by,
        )
        from g2gsim.studies.sweep import SweepError

        _check_workers(workers)
        executor, n = _executor(workers, scheduler)
        base = _load_base(scenario, duration)
        _check_site(base, site)
        buses = _study_buses(base, bus)
        seed_list = None if seeds is None else parse_seeds(seeds)
        try:
            sweep = siting_sweep(base, site=site, buses=buses, seeds=seed_list, linearized_grid=linearized)
            expected = len(sweep.tasks())
        except SweepError as exc:
            _fail(str(exc))
        folder = out or Path("sweeps") / _slug(f"sites_{base.name}")
        with _running(scheduler):
            result = site_sweep(
                base,
                folder,
                site=site,
                buses=buses,
                seeds=seed_list,
                executor=executor,
                workers=n,
                progress=progress,
                linearized_grid=linearized,
            )
        path = f"sites.{site}.bus"
        runs = study_runs(sweep, result.table)
        counts = _counts(runs, expected, folder)
        _check_metric(runs, metric, counts, path, json_output)
        summary = summarize_by(runs, path).rename(columns={path: "bus"})
        summary = summary.sort_values(metric, ascending=not descending, na_position="last", kind="stable")
        summary.insert(0, "rank", range(1, len(summary) + 1))
        summary.to_csv(folder / "site_sweep.csv", index=False)
        bars = write_figure(plot_metric_by_bus(summary, metric), folder / f"site_sweep_{_slug(metric)}.png")
        finite = {str(b): float(v) for b, v in zip(summary["bus"], summary[metric], strict=True) if math.isfinite(v)}
        feeder_map = write_figure(
            plot_bus_values(
                feeder_topology(base.grid.feeder),
                finite,
                metric,
                f"{base.grid.feeder}: {metric} with site {site} at each bus",
                fmt="{:.3g}",
                cmap="RdYlGn" if descending else "RdYlGn_r",
            ),
            folder / f"site_sweep_map_{_slug(metric)}.png",
        )
        if not json_output:
            _print_table(
                summary,
                ["rank", "bus", "n_ok", metric, *TABLE_METRICS],
                f"{base.name}: site {site} at each bus, by {metric} ({'largest' if descending else 'smallest'} first)",
            )
        extra = {
            "table": str(folder / "site_sweep.csv"),
            "plot": str(bars),
            "map": str(feeder_map),
            "summary": summary.to_dict("records"),
        }
        _finish(runs, counts, path, json_output, extra)

    @app.command("ensemble")
    def ensemble_command(
        scenario: Annotated[str, typer.Argument(help="scenario file or bundled name")],
        seeds: Annotated[
            str | None, typer.Option(help="seeds, e.g. 0-9 or 0,3,7 (ranges inclusive; default 0-9)")
        ] = None,
        n: Annotated[int | None, typer.Option("--n", help="seeds 0..n-1 (instead of --seeds)")] = None,
        confidence: Annotated[float, typer.Option(help="level of the confidence interval, in (0, 1)")] = 0.95,
        metric: Annotated[
            list[str] | None,
            typer.Option(
                "--metric", help="metric to show (repeat; default: the headline metrics; the CSV has every metric)"
            ),
        ] = None,
        duration: Duration = None,
        workers: Workers = None,
        scheduler: Scheduler = None,
        out: Annotated[Path | None, typer.Option(help="output folder (default: sweeps/ensemble_<scenario>)")] = None,
        progress: Progress = True,
        json_output: JsonOutput = False,
        linearized: Linearized = False,
    ) -> None:
        """One run per seed: mean and confidence interval of each metric, to tell effects from noise."""
        from g2gsim.studies.studies import ensemble_sweep, seed_ensemble
        from g2gsim.studies.sweep import SweepError

        _check_workers(workers)
        executor, n_workers = _executor(workers, scheduler)
        if seeds is not None and n is not None:
            _fail(f"give --seeds or --n, not both (got --seeds {seeds!r} and --n {n})")
        if n is not None and n < 2:
            _fail(f"--n {n}: a confidence interval needs at least 2 seeds")
        seed_list = list(range(n)) if n is not None else parse_seeds(seeds or "0-9")
        if len(seed_list) < 2:
            _fail(f"--seeds {seeds!r}: a confidence interval needs at least 2 seeds (e.g. 0-9)")
        if not 0 < confidence < 1:
            _fail(f"--confidence {confidence:g}: must be between 0 and 1 (exclusive), e.g. 0.95")
        base = _load_base(scenario, duration)
        try:
            sweep = ensemble_sweep(base, seed_list, linearized_grid=linearized)
            expected = len(sweep.tasks())
        except SweepError as exc:
            _fail(str(exc))
        folder = out or Path("sweeps") / _slug(f"ensemble_{base.name}")
        with _running(scheduler):
            summary = seed_ensemble(
                base,
                seed_list,
                folder,
                confidence=confidence,
                executor=executor,
                workers=n_workers,
                progress=progress,
                linearized_grid=linearized,
            )
        runs = _study_rows(sweep, folder)
        counts = _counts(runs, expected, folder)
        for name in metric or ["violation_time_s"]:
            _check_metric(runs, name, counts, "seed", json_output)
        wanted = list(dict.fromkeys(metric)) if metric else [m for m in HEADLINE_METRICS if m in set(summary["metric"])]
        shown = summary.set_index("metric").loc[wanted].reset_index()
        if not json_output:
            _print_table(
                shown,
                ["metric", "n", "mean", "std", "ci_low", "ci_high"],
                f"{base.name}: {len(seed_list)} seeds, {confidence:.0%} confidence interval (Student t)",
            )
        extra = {"table": str(folder / "ensemble.csv"), "confidence": confidence, "summary": summary.to_dict("records")}
        _finish(runs, counts, "seed", json_output, extra)

"""Study commands: ``sweep``, ``sensitivity``, ``site-sweep``, ``hosting-capacity``, ``ensemble``.

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
with the same ``--out`` to resume). The option parsing and checks are in
:mod:`g2gsim.cli.study_options`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from g2gsim.cli.common import (
    Duration,
    FeederDirs,
    JsonOutput,
    Linearized,
    Progress,
    RetryFailed,
    Scheduler,
    Sets,
    Workers,
    fail,
    parse_sets,
    plain,
    trust_feeder_dirs,
)
from g2gsim.cli.study_options import (
    Screen,
    ScreenConfidence,
    ScreenSample,
    ScreenStep,
    ScreenTop,
    check_site,
    current_value,
    executor_options,
    load_base,
    parse_seeds,
    parse_values,
    running,
    screen_options,
    slug,
    study_buses,
)
from g2gsim.metrics import study_headings
from g2gsim.plots import (
    plot_bus_values,
    plot_hosting_capacity,
    plot_metric_by_bus,
    plot_metric_heatmap,
    plot_sensitivity,
    write_figure,
)
from g2gsim.scenarios import Scenario, ScenarioError
from g2gsim.studies.studies import (
    DEFAULT_BASE,
    NOT_METRICS,
    HostingCapacity,
    MetricError,
    ensemble_sweep,
    feeder_topology,
    hosting_capacity,
    parameter_sensitivity,
    seed_ensemble,
    sensitivity_sweep,
    site_sweep,
    siting_sweep,
    study_runs,
    summarize_by,
)
from g2gsim.studies.sweep import ExecutorError, Sweep, SweepError, load_results, run_sweep, sweep_folder_mismatch

#: Column headings of the study tables (metrics by their short heading, see g2gsim.metrics.METRICS).
HEADINGS = {**study_headings(), "n_ok": "ok"}
#: Metric columns of the sensitivity and site tables (besides the chosen metric), narrow enough for 80 columns.
TABLE_METRICS = ("violation_time_s", "worst_vmin", "mean_throughput_tps", "mean_dc_power_kw")
#: Metric columns of the sweep table.
SWEEP_METRICS = ("violation_time_s", "integral_violation_pu_s", "worst_vmin", "mean_throughput_tps")


# -- the runs of a study: counts, checks, report -----------------------------------------------
def run_counts(runs: pd.DataFrame, expected: int, out: Path) -> dict[str, Any]:
    """How many of a study's `expected` runs finished ok, failed or were lost."""
    n_ok = int((runs["status"] == "ok").sum()) if "status" in runs else 0
    return {
        "out": str(out),
        "total": expected,
        "ok": n_ok,
        "failed": len(runs) - n_ok,
        "lost": expected - len(runs),
        "results": str(out / "results.parquet"),
    }


def _study_rows(sweep: Sweep, out: Path) -> pd.DataFrame:
    """This study's rows of the output folder (it may hold other studies' runs)."""
    return study_runs(sweep, load_results(out, write=False))


def _report_failures(runs: pd.DataFrame, n_failed: int, label: str | None) -> None:
    if n_failed:
        for _, row in runs[runs["status"] == "failed"].head(5).iterrows():
            where = f" ({label}={cell(row.get(label))})" if label else ""
            typer.echo(f"failed {row['run_id']}{where}: {row['error']}", err=True)


def _check_metric(runs: pd.DataFrame, metric: str, counts: dict[str, Any], label: str, json_output: bool) -> None:
    """Exit 1 when no run finished (after the JSON line with --json), 2 when `metric` is not one of the runs' metrics."""
    if counts["ok"] == 0:
        if json_output:
            typer.echo(json.dumps(plain(counts)))
        _report_failures(runs, counts["failed"], label)
        if counts["lost"]:
            fail(f"the executor lost {counts['lost']} run(s); run again with --out {counts['out']} to resume", 3)
        fail(f"all {counts['failed']} run(s) failed; the errors are in {counts['results']} (column 'error')", 1)
    numeric = runs.select_dtypes("number").columns
    if metric not in numeric or metric in NOT_METRICS or metric == label:
        known = sorted(c for c in numeric if c not in NOT_METRICS and c != label)
        fail(f"--metric {metric!r}: not a metric of these runs; metrics: {', '.join(known)}")


def _finish(
    runs: pd.DataFrame, counts: dict[str, Any], label: str | None, json_output: bool, extra: dict[str, Any]
) -> None:
    """Print the JSON line (with --json) or the counts, the failures, and exit 1 (failed runs) or 3 (lost runs)."""
    if json_output:
        typer.echo(json.dumps(plain({**counts, **extra})))
    else:
        typer.echo(
            " ".join(f"{k}={v}" for k, v in counts.items() if k != "results")
            + "".join(f" {k}={v}" for k, v in extra.items() if k not in ("summary", "screening"))
        )
    _report_failures(runs, counts["failed"], label)
    if counts["lost"]:
        fail(f"the executor lost {counts['lost']} run(s); run again with --out {counts['out']} to resume", 3)
    if counts["failed"]:
        fail(f"{counts['failed']} of {counts['total']} run(s) failed; outputs were written to {counts['out']}", 1)


# -- tables ------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """A table cell: "-" for missing, large numbers with separators, long text cut."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def runs_table(runs: pd.DataFrame, params: Sequence[str], metrics: Sequence[str]) -> Table:
    """The first 50 runs: id, status, parameters and metrics."""
    columns = [c for c in ("run_id", "status", *params, *metrics) if c in runs.columns]
    view = Table(title=f"{len(runs)} run(s)" + (" (first 50)" if len(runs) > 50 else ""))
    for c in columns:
        view.add_column(c)
    for _, row in runs.head(50).iterrows():
        view.add_row(*[cell(row[c]) for c in columns])
    return view


def summary_table(frame: pd.DataFrame, columns: Sequence[str], title: str) -> Table:
    """Rows of a study summary; metric columns under their short headings."""
    view = Table(title=title)
    shown = [c for c in dict.fromkeys(columns) if c in frame.columns]
    cells = [[cell(row[c]) for c in shown] for _, row in frame.iterrows()]
    for i, c in enumerate(shown):  # cells never wrap (headings do): numbers stay readable in 80 columns
        width = max([len(r[i]) for r in cells] + [2])
        view.add_column(
            HEADINGS.get(c, c), justify="right" if frame[c].dtype.kind in "biuf" else "left", min_width=width
        )
    for row_cells in cells:
        view.add_row(*row_cells)
    return view


# -- sweep ---------------------------------------------------------------------------------------
def sweep_command(
    file: Annotated[Path, typer.Argument(help="sweep file (TOML: base, overrides, mode, axes)")],
    workers: Workers = None,
    scheduler: Scheduler = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: sweeps/<name>)")] = None,
    heatmap: Annotated[
        str, typer.Option(help="metric of the heat-map when the sweep has two or more axes")
    ] = "violation_time_s",
    progress: Progress = True,
    json_output: Annotated[bool, typer.Option("--json", help="print the counts as one JSON line")] = False,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    retry_failed: RetryFailed = False,
) -> None:
    """Run a sweep; resumes into an existing output folder (completed runs are skipped)."""
    executor, n = executor_options(workers, scheduler)
    trust_feeder_dirs(feeder_dir)
    try:  # the file, the base scenario, every path and value, checked before anything runs
        sweep = with_sets(Sweep.from_toml(file), sets)
        expected = len(sweep.tasks())
    except (SweepError, ScenarioError) as exc:
        fail(str(exc))
    folder = out or Path("sweeps") / slug(sweep.name)
    mismatch = sweep_folder_mismatch(folder, sweep)
    if mismatch:
        typer.echo(f"warning: {mismatch}", err=True)
    with running(scheduler):
        result = run_sweep(
            sweep, folder, executor, workers=n, progress=progress and not json_output, retry_failed=retry_failed
        )
    runs, axes = result.table, list(sweep.axes)
    plot = _sweep_heatmap(runs, axes, heatmap, folder)
    if not json_output:
        Console().print(runs_table(runs, axes, SWEEP_METRICS))
    extra = {
        "skipped": result.n_skipped,
        "wall_s": round(result.wall_s, 3),
        "heatmap": None if plot is None else str(plot),
    }
    _finish(runs, run_counts(runs, expected, folder), axes[0] if axes else None, json_output, extra)


def with_sets(sweep: Sweep, sets: Sequence[str] | None) -> Sweep:
    """The sweep with the ``--set`` changes added to its overrides (raises SweepError)."""
    if not sets:
        return sweep
    changes = parse_sets(sets, sweep.base_scenario().to_dict())
    return Sweep.model_validate({**sweep.model_dump(), "overrides": {**sweep.overrides, **changes}})


def _sweep_heatmap(runs: pd.DataFrame, axes: list[str], metric: str, folder: Path) -> Path | None:
    """The heat-map of `metric` over the first two axes (None with fewer axes or no ok run having it)."""
    if len(axes) < 2 or "status" not in runs or metric not in runs or not (runs["status"] == "ok").any():
        return None
    return write_figure(plot_metric_heatmap(runs, axes[0], axes[1], metric), folder / f"heatmap_{slug(metric)}.png")


# -- hosting capacity ----------------------------------------------------------------------------
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
    linearized: Linearized = False,
    screen: Screen = False,
    screen_sample: ScreenSample = 40,
    screen_confidence: ScreenConfidence = 0.95,
    screen_step: ScreenStep = 5.0,
    screen_top: ScreenTop = 0.05,
    workers: Workers = None,
    scheduler: Scheduler = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: sweeps/hosting_<scenario>_site<N>_<duration>s)")
    ] = None,
    progress: Progress = True,
    json_output: JsonOutput = False,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    retry_failed: RetryFailed = False,
) -> None:
    """Largest site (GPUs) per bus that keeps the metric below the threshold (bisection)."""
    executor, n = executor_options(workers, scheduler)
    name = scenario or DEFAULT_BASE.get(feeder)
    if name is None:
        fail(f"no preset for feeder {feeder!r}; give --scenario (presets: {sorted(DEFAULT_BASE)})")
    trust_feeder_dirs(feeder_dir)
    base = load_base(name, duration, sets)
    check_site(base, site)
    if resolution < 1:
        fail(f"--resolution {resolution}: must be at least 1 GPU")
    if max_gpus is not None and max_gpus < 1:
        fail(f"--max-gpus {max_gpus}: must be at least 1 GPU")
    buses = study_buses(base, bus)
    options = screen_options(screen, screen_sample, screen_confidence, screen_step, screen_top)
    mode = "_linearized" if linearized else ""
    folder = out or Path("sweeps") / slug(f"hosting_{base.name}_site{site}_{duration:g}s{mode}")
    with running(scheduler):
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
                retry_failed=retry_failed,
                screen=options is not None,
                screen_options=options,
            )
        except ExecutorError:
            raise  # a bad --scheduler address: running() reports it
        except MetricError as exc:
            fail(
                f"--metric {exc.metric!r}: not a metric of these runs; metrics: {', '.join(exc.available)} "
                f"(the first round's runs are kept in {folder})"
            )
        except (KeyError, ValueError, RuntimeError) as exc:
            fail(f"hosting capacity on {base.name!r}: {exc}; runs so far are kept in {folder}", 1)
    _report_hosting_capacity(base, result, folder, metric, threshold, json_output)


def _report_hosting_capacity(
    base: Scenario, result: HostingCapacity, folder: Path, metric: str, threshold: float, json_output: bool
) -> None:
    """The map, then the JSON line or the table; exit 1 when runs failed (they count as infeasible)."""
    capacity = dict(zip(result.table["bus"], result.table["capacity_gpus"], strict=True))
    title = f"{base.grid.feeder}: hosting capacity ({metric} <= {threshold:g})"
    plot = write_figure(
        plot_hosting_capacity(feeder_topology(base.grid.feeder), capacity, title), folder / "hosting_capacity.png"
    )
    n_failed, n_unsolved = result.n_failed, result.n_unsolved
    if json_output:
        line = {
            "capacity_gpus": capacity,
            "metric": metric,
            "threshold": threshold,
            "runs": len(result.runs),
            "failed": n_failed,
            "unsolved": n_unsolved,
            "out": str(folder),
        }
        if result.screening is not None:
            line["exact"] = dict(zip(result.table["bus"], result.table["exact"], strict=True))
            line["screening"] = result.screening.to_dict()
        typer.echo(json.dumps(plain(line)))
    else:
        typer.echo(result.table.to_string(index=False))
        for text in result.screening.lines() if result.screening is not None else []:
            typer.echo(text)
        typer.echo(f"table: {folder / 'hosting_capacity.csv'}  plot: {plot}  runs: {folder / 'results.parquet'}")
        if n_unsolved:
            typer.echo(f"{n_unsolved} run(s) had no power-flow solution (site beyond the feeder): counted infeasible")
    if n_failed:
        _report_failures(result.runs, n_failed, "site_gpus")
        fail(
            f"{n_failed} of {len(result.runs)} run(s) failed and were counted as infeasible; "
            f"outputs were written to {folder}",
            1,
        )


# -- sensitivity -----------------------------------------------------------------------------------
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
    seeds: Annotated[str | None, typer.Option(help="seeds per value, e.g. 0-4 (default: the scenario's seed)")] = None,
    duration: Duration = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: sweeps/sensitivity_<scenario>_<field>)")
    ] = None,
    progress: Progress = True,
    json_output: JsonOutput = False,
    linearized: Linearized = False,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    retry_failed: RetryFailed = False,
) -> None:
    """Metrics against one scenario field (any dotted path): how much the outcome depends on it."""
    executor, n = executor_options(workers, scheduler)
    trust_feeder_dirs(feeder_dir)
    base = load_base(scenario, duration, sets)
    if param == "seed":
        fail("PARAM 'seed': the seed is not a parameter to tune; use `g2gsim ensemble SCENARIO --seeds ...`")
    parsed = parse_values(values, current_value(base.to_dict(), param))
    seed_list = [base.seed] if seeds is None else parse_seeds(seeds)
    try:  # the path and every value, checked before anything runs
        sweep = sensitivity_sweep(base, param, parsed, seed_list, linearized_grid=linearized)
        expected = len(sweep.tasks())
    except SweepError as exc:
        fail(str(exc))
    folder = out or Path("sweeps") / slug(f"sensitivity_{base.name}_{param.split('.')[-1]}")
    with running(scheduler):
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
            retry_failed=retry_failed,
        )
    runs = _study_rows(sweep, folder)
    counts = run_counts(runs, expected, folder)
    _check_metric(runs, metric, counts, param, json_output)
    plot = write_figure(plot_sensitivity(runs, param, metric), folder / f"sensitivity_{slug(metric)}.png")
    if not json_output:
        label = param.split(".")[-1]
        title = f"{base.name}: sensitivity to {param} ({len(seed_list)} seed(s) per value)"
        columns = [label, "n_ok", metric, *TABLE_METRICS]
        Console().print(summary_table(summary.rename(columns={param: label}), columns, title))
    extra = {"table": str(folder / "sensitivity.csv"), "plot": str(plot), "summary": summary.to_dict("records")}
    _finish(runs, counts, param, json_output, extra)


# -- site sweep ------------------------------------------------------------------------------------
def rank_buses(runs: pd.DataFrame, path: str, metric: str, descending: bool) -> pd.DataFrame:
    """One row per bus (mean over seeds), ranked by `metric` (smallest first unless `descending`)."""
    summary = summarize_by(runs, path).rename(columns={path: "bus"})
    summary = summary.sort_values(metric, ascending=not descending, na_position="last", kind="stable")
    summary.insert(0, "rank", range(1, len(summary) + 1))
    return summary


def site_sweep_command(
    scenario: Annotated[str, typer.Argument(help="scenario file or bundled name")],
    site: Annotated[int, typer.Option(help="index of the site to move")] = 0,
    bus: Annotated[
        list[str] | None,
        typer.Option("--bus", "--buses", help="bus to try (repeat or comma-separate; default: every three-phase bus)"),
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
    threshold: Annotated[
        float | None,
        typer.Option(help="with --screen: feasible when the metric is at or below it (above, --descending)"),
    ] = None,
    screen: Screen = False,
    screen_sample: ScreenSample = 40,
    screen_confidence: ScreenConfidence = 0.95,
    screen_step: ScreenStep = 5.0,
    screen_top: ScreenTop = 0.05,
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    retry_failed: RetryFailed = False,
) -> None:
    """The site at each three-phase bus in turn, ranked by a metric: where a datacenter fits best.

    --screen: every run on a coarse-step surrogate, exact where its error bound leaves the rank
    (top --screen-top) or feasibility (--threshold) uncertain; n_exact counts each bus's exact runs."""
    executor, n = executor_options(workers, scheduler)
    trust_feeder_dirs(feeder_dir)
    base = load_base(scenario, duration, sets)
    check_site(base, site)
    buses = study_buses(base, bus)
    seed_list = None if seeds is None else parse_seeds(seeds)
    options = screen_options(screen, screen_sample, screen_confidence, screen_step, screen_top, threshold)
    try:
        sweep = siting_sweep(base, site=site, buses=buses, seeds=seed_list, linearized_grid=linearized)
        expected = len(sweep.tasks())
    except SweepError as exc:
        fail(str(exc))
    folder = out or Path("sweeps") / slug(f"sites_{base.name}")
    with running(scheduler):
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
            retry_failed=retry_failed,
            screen=options is not None,
            screen_options=options,
            metric=metric,
            threshold=threshold,
            maximize=descending,
        )
    path = f"sites.{site}.bus"
    report = getattr(result, "screening", None)
    runs = result.table if report is not None else study_runs(sweep, result.table)  # screened: one row per run
    counts = run_counts(runs, expected, folder)
    _check_metric(runs, metric, counts, path, json_output)
    summary = rank_buses(runs.drop(columns=["screen_value"], errors="ignore"), path, metric, descending)
    if report is not None:
        screened_columns(summary, runs, path)
    summary.to_csv(folder / "site_sweep.csv", index=False)
    plots = _site_sweep_plots(base, site, summary, metric, descending, folder)
    if not json_output:
        _print_site_table(f"{base.name}: site {site} at each bus", summary, metric, descending, report)
    extra = {"table": str(folder / "site_sweep.csv"), **plots, "summary": summary.to_dict("records")}
    _finish(runs, counts, path, json_output, {**extra, **({"screening": report.to_dict()} if report else {})})


def _print_site_table(title: str, summary: pd.DataFrame, metric: str, descending: bool, report: Any) -> None:
    """The ranked bus table (with each bus's exact runs and bound when screened) and the screening report."""
    order = "largest" if descending else "smallest"
    screened = ["n_exact", "screen_bound"] if report is not None else []
    columns = ["rank", "bus", "n_ok", *screened, metric, *TABLE_METRICS]
    Console().print(summary_table(summary, columns, f"{title}, by {metric} ({order} first)"))
    for text in report.lines() if report is not None else []:
        typer.echo(text)


def screened_columns(summary: pd.DataFrame, runs: pd.DataFrame, path: str) -> None:
    """Per bus, in place: its exact runs (n_exact) and the largest screen_bound of its runs (0: all exact)."""
    per_bus = runs.groupby(runs[path].astype(str))
    summary.insert(3, "n_exact", summary["bus"].astype(str).map(per_bus["exact"].sum()).fillna(0).astype(int))
    summary["screen_bound"] = summary["bus"].astype(str).map(per_bus["screen_bound"].max())


def _site_sweep_plots(
    base: Scenario, site: int, summary: pd.DataFrame, metric: str, descending: bool, folder: Path
) -> dict[str, str]:
    """The bar chart and the feeder map of a site sweep: ``{"plot": ..., "map": ...}``."""
    bars = write_figure(plot_metric_by_bus(summary, metric), folder / f"site_sweep_{slug(metric)}.png")
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
        folder / f"site_sweep_map_{slug(metric)}.png",
    )
    return {"plot": str(bars), "map": str(feeder_map)}


# -- ensemble ----------------------------------------------------------------------------------------
def ensemble_seeds(seeds: str | None, n: int | None) -> list[int]:
    """The seeds of ``--seeds`` or ``--n`` (default 0-9); exits 2 unless there are at least two."""
    if seeds is not None and n is not None:
        fail(f"give --seeds or --n, not both (got --seeds {seeds!r} and --n {n})")
    if n is not None and n < 2:
        fail(f"--n {n}: a confidence interval needs at least 2 seeds")
    seed_list = list(range(n)) if n is not None else parse_seeds(seeds or "0-9")
    if len(seed_list) < 2:
        fail(f"--seeds {seeds!r}: a confidence interval needs at least 2 seeds (e.g. 0-9)")
    return seed_list


def ensemble_command(
    scenario: Annotated[str, typer.Argument(help="scenario file or bundled name")],
    seeds: Annotated[str | None, typer.Option(help="seeds, e.g. 0-9 or 0,3,7 (ranges inclusive; default 0-9)")] = None,
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
    sets: Sets = None,
    feeder_dir: FeederDirs = None,
    retry_failed: RetryFailed = False,
) -> None:
    """One run per seed: mean and confidence interval of each metric, to tell effects from noise."""
    executor, n_workers = executor_options(workers, scheduler)
    seed_list = ensemble_seeds(seeds, n)
    if not 0 < confidence < 1:
        fail(f"--confidence {confidence:g}: must be between 0 and 1 (exclusive), e.g. 0.95")
    trust_feeder_dirs(feeder_dir)
    base = load_base(scenario, duration, sets)
    try:
        sweep = ensemble_sweep(base, seed_list, linearized_grid=linearized)
        expected = len(sweep.tasks())
    except SweepError as exc:
        fail(str(exc))
    folder = out or Path("sweeps") / slug(f"ensemble_{base.name}")
    with running(scheduler):
        summary = seed_ensemble(
            base,
            seed_list,
            folder,
            confidence=confidence,
            executor=executor,
            workers=n_workers,
            progress=progress,
            linearized_grid=linearized,
            retry_failed=retry_failed,
        )
    runs = _study_rows(sweep, folder)
    counts = run_counts(runs, expected, folder)
    for name in metric or ["violation_time_s"]:
        _check_metric(runs, name, counts, "seed", json_output)
    if not json_output:
        wanted = list(dict.fromkeys(metric)) if metric else [m for m in HEADINGS if m in set(summary["metric"])]
        shown = summary.set_index("metric").loc[wanted].reset_index()
        title = f"{base.name}: {len(seed_list)} seeds, {confidence:.0%} confidence interval (Student t)"
        Console().print(summary_table(shown, ["metric", "n", "mean", "std", "ci_low", "ci_high"], title))
    extra = {"table": str(folder / "ensemble.csv"), "confidence": confidence, "summary": summary.to_dict("records")}
    _finish(runs, counts, "seed", json_output, extra)


def register(app: typer.Typer) -> None:
    """Add the ``sweep``, ``sensitivity``, ``site-sweep``, ``hosting-capacity`` and ``ensemble`` commands to `app`."""
    app.command("sweep")(sweep_command)
    app.command("hosting-capacity")(hosting_capacity_command)
    app.command("sensitivity")(sensitivity_command)
    app.command("site-sweep")(site_sweep_command)
    app.command("ensemble")(ensemble_command)

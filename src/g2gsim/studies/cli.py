"""Command-line study commands: ``g2gsim sweep`` and ``g2gsim hosting-capacity``.

The main CLI registers them with ``register(app)``; they can also be mounted on any
``typer.Typer()`` (the tests do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


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
    if "status" in table:
        for _, row in table[table["status"] == "failed"].head(5).iterrows():
            console.print(f"[red]failed {row['run_id']}[/red]: {row['error']}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` and ``hosting-capacity`` commands to `app`."""

    @app.command("sweep")
    def sweep_command(
        file: Annotated[Path, typer.Argument(help="sweep file (TOML: base, overrides, mode, axes)")],
        workers: Annotated[int | None, typer.Option(help="local worker processes (default: serial)")] = None,
        scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")] = None,
        out: Annotated[Path | None, typer.Option(help="output folder (default: sweeps/<name>)")] = None,
        heatmap: Annotated[str, typer.Option(help="metric of the heat-map when the sweep has two or more axes")] = "violation_time_s",
        progress: Annotated[bool, typer.Option(help="progress bar with ETA")] = True,
        json_output: Annotated[bool, typer.Option("--json", help="print the counts as one JSON line")] = False,
    ) -> None:
        """Run a sweep; resumes into an existing output folder (completed runs are skipped)."""
        from g2gsim.studies.sweep import Sweep, SweepError, run_sweep

        try:
            sweep = Sweep.from_toml(file)
            executor, n = _executor(workers, scheduler)
            folder = out or Path("sweeps") / sweep.name
            result = run_sweep(sweep, folder, executor, workers=n, progress=progress)
        except SweepError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        plot = None
        axes = list(sweep.axes)
        if len(axes) >= 2 and not result.table.empty and heatmap in result.table:
            from g2gsim.plots import write_figure
            from g2gsim.studies.studies import plot_metric_heatmap

            plot = write_figure(plot_metric_heatmap(result.table, axes[0], axes[1], heatmap), folder / f"heatmap_{heatmap}.png")
        counts = {
            "out": str(folder), "total": result.n_total, "skipped": result.n_skipped, "ok": result.n_ok,
            "failed": result.n_failed, "lost": result.n_lost, "wall_s": round(result.wall_s, 3),
            "results": str(folder / "results.parquet"), "heatmap": None if plot is None else str(plot),
        }
        if json_output:
            typer.echo(json.dumps(counts))
        else:
            _summary(result.table, axes, ("violation_time_s", "integral_violation_pu_s", "worst_vmin", "mean_throughput_tps"))
            typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
        if result.n_lost:
            raise typer.Exit(3)

    @app.command("hosting-capacity")
    def hosting_capacity_command(
        feeder: Annotated[str, typer.Argument(help="ieee13, ieee34 or ieee123 (its preset is the base scenario)")],
        scenario: Annotated[str | None, typer.Option(help="base scenario instead of the feeder's preset")] = None,
        bus: Annotated[list[str] | None, typer.Option("--bus", help="bus to study (repeat; default: every three-phase bus)")] = None,
        site: Annotated[int, typer.Option(help="index of the site to move and resize")] = 0,
        duration: Annotated[float, typer.Option(help="simulated seconds per run")] = 600.0,
        metric: Annotated[str, typer.Option(help="metric kept at or below the threshold")] = "violation_time_s",
        threshold: Annotated[float, typer.Option(help="largest acceptable value of the metric")] = 0.0,
        max_gpus: Annotated[int | None, typer.Option(help="largest size tried (default 4x the base site)")] = None,
        resolution: Annotated[int, typer.Option(help="bisection resolution, GPUs")] = 64,
        linearized: Annotated[bool, typer.Option(help="screen with the linearised grid")] = False,
        workers: Annotated[int | None, typer.Option(help="local worker processes")] = None,
        scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address")] = None,
        out: Annotated[Path | None, typer.Option(help="output folder")] = None,
        progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    ) -> None:
        """Largest site (GPUs) per bus that keeps the metric below the threshold (bisection)."""
        from g2gsim.plots import write_figure
        from g2gsim.scenarios import ScenarioError, load_scenario
        from g2gsim.studies.studies import DEFAULT_BASE, feeder_topology, hosting_capacity, plot_hosting_capacity

        name = scenario or DEFAULT_BASE.get(feeder)
        if name is None:
            typer.echo(f"error: no preset for feeder {feeder!r}; give --scenario (presets: {sorted(DEFAULT_BASE)})", err=True)
            raise typer.Exit(2)
        try:
            base = load_scenario(name).with_overrides(horizon_s=duration)
        except ScenarioError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        executor, n = _executor(workers, scheduler)
        folder = out or Path("sweeps") / f"hosting_{base.grid.feeder}"
        result = hosting_capacity(
            base, folder, buses=bus or None, site=site, metric=metric, threshold=threshold, max_gpus=max_gpus,
            resolution_gpus=resolution, executor=executor, workers=n, progress=progress, linearized_grid=linearized,
        )
        capacity = dict(zip(result.table["bus"], result.table["capacity_gpus"], strict=True))
        topology = feeder_topology(base.grid.feeder)
        plot = write_figure(plot_hosting_capacity(topology, capacity, f"{base.grid.feeder}: hosting capacity "
                                                  f"({metric} <= {threshold:g})"), folder / "hosting_capacity.png")
        typer.echo(result.table.to_string(index=False))
        typer.echo(f"table: {folder / 'hosting_capacity.csv'}  plot: {plot}  runs: {folder / 'results.parquet'}")

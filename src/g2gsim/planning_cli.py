"""``g2gsim plan-batch``: the SLO-bounded batch table of a dataset (issue 10).

Wire it into the main app with ``register(app)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["plan_batch", "register"]


def plan_batch(
    data: Annotated[Path | None, typer.Option(help="OpenG2G cache or ML.ENERGY folder (default: bundled data)")] = None,
    model: Annotated[list[str] | None, typer.Option(help="only these model labels (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Per model: the largest batch and the best-throughput batch whose ITL meets the deadline."""
    from g2gsim.data import open_data_source
    from g2gsim.data.spec import PAPER_MODELS
    from g2gsim.planning import plan_batches

    err = Console(stderr=True)
    try:
        source = open_data_source(data)
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    specs = dict(PAPER_MODELS)
    if model:
        unknown = sorted(set(model) - set(specs))
        if unknown:
            err.print(f"[bold red]error:[/] unknown model(s) {unknown}; known: {sorted(specs)}", highlight=False)
            raise typer.Exit(2)
        specs = {label: specs[label] for label in model}
    fits = {}
    for label, spec in list(specs.items()):
        try:
            fits[label] = source.logistic_fits(spec)
        except LookupError as exc:
            err.print(f"[yellow]skipping {label}:[/] {exc}", highlight=False)
            del specs[label]
    plans = plan_batches(specs, fits)
    if as_json:
        rows = [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.as_row().items()}
            for p in plans
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"SLO-bounded batch sizes ({source.description})")
    for column in (
        "model",
        "ITL deadline (s)",
        "limit batch",
        "max feasible batch",
        "best batch",
        "ITL at best (s)",
        "tokens/s per replica",
        "W per replica",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")

    def show(value: object, fmt: str = "{}") -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return fmt.format(value)

    for plan in plans:
        table.add_row(
            plan.model,
            show(plan.deadline_s, "{:.3f}"),
            show(plan.limit_batch),
            show(plan.max_batch),
            show(plan.best_batch),
            show(plan.best_itl_s, "{:.4f}"),
            show(plan.best_throughput_tps, "{:,.0f}"),
            show(plan.best_power_w, "{:,.0f}"),
        )
    Console(width=140).print(table)


def register(app: typer.Typer) -> None:
    """Add ``plan-batch`` to a Typer app."""
    app.command("plan-batch")(plan_batch)

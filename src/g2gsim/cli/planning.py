"""``g2gsim plan-batch``: per model, the largest and the best-throughput batch within the ITL deadline."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from g2gsim.cli.common import console, fail
from g2gsim.data import open_data_source
from g2gsim.data.source import DataSource
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.planning import BatchPlan, plan_batches

#: Columns of the table: heading, BatchPlan attribute, format.
PLAN_COLUMNS = (
    ("ITL deadline (s)", "deadline_s", "{:.3f}"),
    ("limit batch", "limit_batch", "{}"),
    ("max feasible batch", "max_batch", "{}"),
    ("best batch", "best_batch", "{}"),
    ("ITL at best (s)", "best_itl_s", "{:.4f}"),
    ("tokens/s per replica", "best_throughput_tps", "{:,.0f}"),
    ("W per replica", "best_power_w", "{:,.0f}"),
)


def model_specs(models: Sequence[str] | None) -> dict[str, Any]:
    """The paper's model specs, or only the labels in `models` (KeyError naming the unknown ones)."""
    specs = dict(PAPER_MODELS)
    if not models:
        return specs
    unknown = sorted(set(models) - set(specs))
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(specs)}")
    return {label: specs[label] for label in models}


def plan_for(source: DataSource, specs: Mapping[str, Any]) -> tuple[list[BatchPlan], dict[str, str]]:
    """Batch plans of the models the data source has fits for, and why each other model was skipped."""
    fits: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for label, spec in specs.items():
        try:
            fits[label] = source.logistic_fits(spec)
        except LookupError as exc:
            skipped[label] = str(exc)
    return plan_batches({label: specs[label] for label in fits}, fits), skipped


def _shown(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def plan_table(plans: Sequence[BatchPlan], source: str) -> Table:
    """The plans as a table titled with the data source."""
    table = Table(title=f"SLO-bounded batch sizes ({source})")
    table.add_column("model", justify="left")
    for heading, _, _ in PLAN_COLUMNS:
        table.add_column(heading, justify="right")
    for plan in plans:
        table.add_row(plan.model, *(_shown(getattr(plan, attr), fmt) for _, attr, fmt in PLAN_COLUMNS))
    return table


def plan_rows(plans: Sequence[BatchPlan]) -> list[dict[str, Any]]:
    """The plans as JSON-safe rows (NaN as null)."""
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.as_row().items()}
        for p in plans
    ]


def plan_batch(
    data: Annotated[Path | None, typer.Option(help="OpenG2G cache or ML.ENERGY folder (default: bundled data)")] = None,
    model: Annotated[list[str] | None, typer.Option(help="only these model labels (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Per model: the largest batch and the best-throughput batch whose ITL meets the deadline."""
    try:
        source = open_data_source(data)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    try:
        specs = model_specs(model)
    except KeyError as exc:
        fail(str(exc.args[0]))
    plans, skipped = plan_for(source, specs)
    for label, reason in skipped.items():
        console.print(f"[yellow]skipping {escape(label)}:[/] {escape(reason)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(plan_rows(plans), indent=2))
    else:
        Console(width=140).print(plan_table(plans, source.description))


def register(app: typer.Typer) -> None:
    """Add ``plan-batch`` to a Typer app."""
    app.command("plan-batch")(plan_batch)

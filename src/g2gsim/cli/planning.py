"""``g2gsim plan-batch``: per model, each bound's batch limit (ITL, TTFT, KV-cache memory), the binding
one, and the largest and the best-throughput feasible batch meeting them all."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from g2gsim.cli.common import console, fail
from g2gsim.data import open_data_source
from g2gsim.data.source import DataSource
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.planning import BatchPlan, MissingFigureError, ModelBounds, SloTargets, plan_model

#: The workload the command plans for unless told otherwise (an illustrative chat request).
DEFAULT_INPUT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 1024
DEFAULT_TTFT_DEADLINE_S = 2.0

#: Columns of the table: heading, BatchPlan attribute, format.
PLAN_COLUMNS = (
    ("ITL deadline (s)", "deadline_s", "{:.3f}"),
    ("best batch", "best_batch", "{}"),
    ("max feasible batch", "max_batch", "{}"),
    ("limit batch", "limit_batch", "{}"),
    ("ITL at best (s)", "best_itl_s", "{:.4f}"),
    ("TTFT at best (s)", "best_ttft_s", "{:.3f}"),
    ("tokens/s per replica", "best_throughput_tps", "{:,.0f}"),
    ("W per replica", "best_power_w", "{:,.0f}"),
)
#: Each bound's own limit: heading, key in BatchPlan.limits.
LIMIT_COLUMNS = (("ITL limit", "itl"), ("TTFT limit", "ttft"), ("memory limit", "memory"))


def model_specs(models: Sequence[str] | None) -> dict[str, Any]:
    """The paper's model specs, or only the labels in `models` (KeyError naming the unknown ones)."""
    specs = dict(PAPER_MODELS)
    if not models:
        return specs
    unknown = sorted(set(models) - set(specs))
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(specs)}")
    return {label: specs[label] for label in models}


def plan_for(
    source: DataSource, specs: Mapping[str, Any], targets: SloTargets | None = None
) -> tuple[list[BatchPlan], dict[str, str]]:
    """Batch plans of the models the data source has fits (and, with lengths, figures) for, and why
    each other model was skipped."""
    plans: list[BatchPlan] = []
    skipped: dict[str, str] = {}
    for label, spec in specs.items():
        try:
            fits = source.logistic_fits(spec)
            bounds = ModelBounds.of(spec, targets, source=source) if targets is not None else None
        except (LookupError, MissingFigureError) as exc:
            skipped[label] = str(exc)
            continue
        plans.append(plan_model(spec, fits, bounds))
    return plans, skipped


def _shown(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def _limit(plan: BatchPlan, key: str) -> str:
    """A bound's own limit: '>= top' when it allows the whole measured range; memory in closed form."""
    if key == "memory" and plan.memory_batch is not None:
        return f"{plan.memory_batch:,}"
    if key not in plan.limits:
        return "-"
    value = plan.limits[key]
    if value is None:
        return "none"
    return f">={value}" if value >= plan.top_batch else str(value)


def plan_table(plans: Sequence[BatchPlan], source: str, targets: SloTargets | None = None) -> Table:
    """The plans as a table titled with the data source and the workload."""
    workload = ""
    if targets is not None and targets.has_lengths:
        ttft = f", TTFT <= {targets.ttft_deadline_s:g} s" if targets.ttft_deadline_s else ""
        workload = f"; {targets.input_tokens} in / {targets.output_tokens} out tokens{ttft}"
    table = Table(title=f"SLO-bounded batch sizes ({source}{workload})")
    table.add_column("model", justify="left")
    for heading, _ in LIMIT_COLUMNS:
        table.add_column(heading, justify="right")
    table.add_column("binding", justify="left")
    for heading, _, _ in PLAN_COLUMNS:
        table.add_column(heading, justify="right")
    for plan in plans:
        limits = [_limit(plan, key) for _, key in LIMIT_COLUMNS]
        values = [_shown(getattr(plan, attr), fmt) for _, attr, fmt in PLAN_COLUMNS]
        table.add_row(plan.model, *limits, plan.binding, *values)
    return table


def plan_rows(plans: Sequence[BatchPlan]) -> list[dict[str, Any]]:
    """The plans as JSON-safe rows (NaN as null)."""
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.as_row().items()}
        for p in plans
    ]


def _targets(input_tokens: int, output_tokens: int, ttft_deadline: float | None, itl_only: bool) -> SloTargets | None:
    if itl_only:
        return None
    try:
        return SloTargets(input_tokens=input_tokens, output_tokens=output_tokens, ttft_deadline_s=ttft_deadline)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        fail(problems)


def plan_batch(
    data: Annotated[Path | None, typer.Option(help="OpenG2G cache or ML.ENERGY folder (default: bundled data)")] = None,
    model: Annotated[list[str] | None, typer.Option(help="only these model labels (repeatable)")] = None,
    input_tokens: Annotated[int, typer.Option(help="prompt tokens per request")] = DEFAULT_INPUT_TOKENS,
    output_tokens: Annotated[int, typer.Option(help="completion tokens per request")] = DEFAULT_OUTPUT_TOKENS,
    ttft_deadline: Annotated[
        float | None, typer.Option(help="time-to-first-token deadline, s (0: no TTFT bound)")
    ] = DEFAULT_TTFT_DEADLINE_S,
    itl_only: Annotated[bool, typer.Option("--itl-only", help="only the ITL bound (no memory or TTFT)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Per model: the batch limit of each bound (ITL, TTFT, memory), the binding one, and the largest
    and the best-throughput feasible batch meeting every bound."""
    try:
        source = open_data_source(data)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    try:
        specs = model_specs(model)
    except KeyError as exc:
        fail(str(exc.args[0]))
    targets = _targets(input_tokens, output_tokens, ttft_deadline or None, itl_only)
    plans, skipped = plan_for(source, specs, targets)
    for label, reason in skipped.items():
        console.print(f"[yellow]skipping {escape(label)}:[/] {escape(reason)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(plan_rows(plans), indent=2))
    else:
        Console(width=200).print(plan_table(plans, source.description, targets))


def register(app: typer.Typer) -> None:
    """Add ``plan-batch`` to a Typer app."""
    app.command("plan-batch")(plan_batch)

"""What every command shares: the consoles, the one-line error, loading a scenario, common options.

Exit codes: 2 for bad input (the message names the option or file, the value and what is
allowed), 1 when a run failed, 3 when an executor lost runs, 130 on Ctrl-C.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.model import Scenario, ScenarioError

#: Messages, progress and (with ``--json``) the human-readable tables.
console = Console(stderr=True)
#: Tables and results.
stdout = Console()

# Options shared by several commands (module level: typer resolves annotations in the defining module).
Workers = Annotated[int | None, typer.Option(help="local worker processes (default: serial)")]
Scheduler = Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")]
Duration = Annotated[float | None, typer.Option(help="simulated seconds per run (default: the scenario's horizon)")]
Progress = Annotated[bool, typer.Option(help="progress bar with ETA")]
Linearized = Annotated[
    bool, typer.Option(help="screen with the linearised grid (coarse; full power flow is the default)")
]
JsonOutput = Annotated[bool, typer.Option("--json", help="print the counts and the summary as one JSON line")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr, unwrapped, and exit with `code`."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def load_or_fail(scenario: str) -> Scenario:
    """A scenario from a file or a bundled name; exits 2 naming the file, the key and the problem."""
    try:
        return load_scenario(scenario)
    except (ScenarioError, FileNotFoundError) as exc:
        fail(str(exc))


def plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN and inf to null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

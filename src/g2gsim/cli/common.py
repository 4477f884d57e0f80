"""What every command shares: the consoles, the one-line error, loading a scenario, common options.

Exit codes: 2 for bad input (the message names the option or file, the value and what is
allowed), 1 when a run failed, 3 when an executor lost runs, 130 on Ctrl-C.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from g2gsim.grid.errors import GridError
from g2gsim.grid.feeders import FEEDER_DIRS_ENV, trust_feeder_dir
from g2gsim.scenarios.checks import memory_limit
from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.overrides import MISSING, value_at

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
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="change a scenario field by dotted path, the value read as TOML (repeatable), "
        "e.g. --set sites.0.models.0.replicas=360 --set controllers.0.params.primal_step_size=0.2",
    ),
]
FeederDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--feeder-dir",
        help=f"a folder whose .dss feeder files may be compiled (repeatable; a .dss file is code; also {FEEDER_DIRS_ENV})",
    ),
]
MemoryLimit = Annotated[
    str | None,
    typer.Option(help="largest memory a run may need, e.g. 8GB (default: G2GSIM_MEMORY_LIMIT or 75% of RAM; 0: none)"),
]
RetryFailed = Annotated[bool, typer.Option(help="run the runs recorded as failed again (resume skips them otherwise)")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr, unwrapped, and exit with `code`."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr, unwrapped."""
    console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


def parse_sets(items: Sequence[str] | None, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``--set PATH=VALUE`` items as ``{path: value}``; exits 2 naming a malformed item.

    A value is read as a TOML value (``0.2``, ``true``, ``[1, 2]``, ``"text"``); a field whose
    present value in `raw` (the scenario's plain form) is text keeps the value as text, so
    ``--set sites.0.bus=675`` names bus "675"; what is not TOML is kept as text.
    """
    changes: dict[str, Any] = {}
    for item in items or []:
        path, sep, text = item.partition("=")
        path, text = path.strip(), text.strip()
        if not sep or not path or not text:
            fail(f"--set {item!r}: give PATH=VALUE, e.g. --set controllers.0.params.primal_step_size=0.2")
        current = MISSING if raw is None else value_at(raw, path)
        changes[path] = _toml_value(text, text_field=isinstance(current, str))
    return changes


def _toml_value(text: str, *, text_field: bool) -> Any:
    if text_field and not text.startswith(('"', "'")):
        return text
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_sets(scenario: Scenario, items: Sequence[str] | None) -> Scenario:
    """The scenario with the ``--set`` changes applied; exits 2 naming the path and the problem."""
    changes = parse_sets(items, scenario.to_dict())
    if not changes:
        return scenario
    try:
        return scenario.with_changes(changes, what="--set")
    except ScenarioError as exc:
        fail(str(exc))


def trust_feeder_dirs(folders: Sequence[Path] | None) -> None:
    """Trust the ``--feeder-dir`` folders in this process and the worker processes it starts."""
    for folder in folders or []:
        try:
            path = trust_feeder_dir(folder)
        except GridError as exc:
            fail(f"--feeder-dir {folder}: {exc}")
        listed = os.environ.get(FEEDER_DIRS_ENV)
        os.environ[FEEDER_DIRS_ENV] = str(path) if not listed else os.pathsep.join([listed, str(path)])


def check_memory_limit(limit: str | None) -> None:
    """``--memory-limit`` and ``G2GSIM_MEMORY_LIMIT`` must be sizes; exits 2 naming the bad one."""
    try:
        memory_limit(limit)
    except ValueError as exc:
        fail(str(exc) if limit is None else f"--memory-limit {limit!r}: not a size; give e.g. 8GB or 512MiB (0: none)")


def load_or_fail(scenario: str, sets: Sequence[str] | None = None) -> Scenario:
    """A scenario from a file or a bundled name, with ``--set`` changes; exits 2 naming the file,
    the key and the problem."""
    try:
        loaded = load_scenario(scenario)
    except (ScenarioError, FileNotFoundError) as exc:
        fail(str(exc))
    return apply_sets(loaded, sets)


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

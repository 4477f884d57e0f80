"""``g2gsim rl library`` and ``g2gsim rl evaluate``: learned-control workflows on the command line.

The work is done by :mod:`g2gsim.gym` (the optional extra ``rl``), imported when a command runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from g2gsim.cli.common import console, fail, plain, stdout

if TYPE_CHECKING:
    from g2gsim.gym.evaluate import Evaluation

rl = typer.Typer(
    help="Learned control: scenario libraries and evaluations (needs the 'rl' extra).", no_args_is_help=True
)

#: Columns of the evaluation table: heading, column, format.
SHOWN = (
    ("violation time (s)", "violation_time_s", "{:.1f}"),
    ("integral (pu s)", "integral_violation_pu_s", "{:.4g}"),
    ("worst vmin", "worst_vmin", "{:.4f}"),
    ("worst vmax", "worst_vmax", "{:.4f}"),
    ("throughput (tokens/s)", "mean_throughput_tps", "{:,.0f}"),
    ("ITL misses", "itl_deadline_fraction", "{:.2%}"),
    ("batch changes", "batch_changes", "{:.0f}"),
    ("return", "return", "{:.2f}"),
)


def load_policy(spec: str) -> Any:
    """A policy named ``module:attribute`` or ``path/to/file.py:attribute``."""
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute:
        raise ValueError(f"a policy is given as module:attribute or file.py:attribute, got {spec!r}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(f"policy file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{where} has no {attribute!r}") from None


def _policies(given: list[str]) -> dict[str, Any]:
    policies = {}
    for item in given:
        name, _, spec = item.partition("=")
        if not spec:
            name, spec = item.rpartition(":")[2], item
        policies[name] = load_policy(spec)
    return policies


def evaluation_table(evaluation: Evaluation) -> Table:
    """Mean metrics per controller."""
    summary = evaluation.summary()
    n = evaluation.table["scenario"].nunique()
    table = Table(title=f"controllers on {n} held-out scenario(s) (means)")
    table.add_column("controller", justify="left")
    for heading, _, _ in SHOWN:
        table.add_column(heading, justify="right")
    for controller, row in summary.iterrows():
        cells = ["-" if row[col] != row[col] else fmt.format(row[col]) for _, col, fmt in SHOWN]
        table.add_row(str(controller), *cells)
    return table


@rl.command("evaluate")
def evaluate_command(
    scenarios: Annotated[str, typer.Argument(help="a library folder, a scenario file or a bundled preset")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="NAME=module:attr or NAME=file.py:attr (a callable or an object with predict)"),
    ] = None,
    reference: Annotated[
        str, typer.Option(help="reference controllers, comma-separated (baseline, rule_based, ofo)")
    ] = "baseline,rule_based,ofo",
    split: Annotated[str, typer.Option(help="library split to evaluate on")] = "test",
    n: Annotated[int | None, typer.Option(help="at most this many scenarios")] = None,
    site: Annotated[
        str | None, typer.Option(help="the controlled site (default: the library's or the only one)")
    ] = None,
    horizon_s: Annotated[float | None, typer.Option(help="simulated seconds per run")] = None,
    out: Annotated[Path, typer.Option(help="folder for evaluation.csv and evaluation.png")] = Path("rl-evaluation"),
    json_output: Annotated[bool, typer.Option("--json", help="print the means per controller as JSON")] = False,
) -> None:
    """Baseline, rule-based, OFO and any policy on held-out scenarios: one table and one plot."""
    from g2gsim.gym import evaluate

    references = tuple(r.strip() for r in reference.split(",") if r.strip())
    try:
        policies = _policies(policy or [])
        evaluation = evaluate(
            scenarios,
            policies,
            references=references,
            site=site,
            split=split,
            n=n,
            horizon_s=horizon_s,
            progress=lambda s, c: console.print(f"[dim]{s}: {c}[/]"),
        )
    except (ValueError, LookupError, OSError, TypeError) as exc:
        fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    evaluation.table.to_csv(out / "evaluation.csv", index=False)
    figure = evaluation.plot(out / "evaluation.png")
    if json_output:
        summary = evaluation.summary()
        stdout.print_json(json.dumps(plain({c: row.to_dict() for c, row in summary.iterrows()})))
    else:
        stdout.print(evaluation_table(evaluation))
    console.print(f"wrote {out / 'evaluation.csv'} and {figure}")


@rl.command("library")
def library_command(
    family: Annotated[Path, typer.Argument(help="a scenario family file (TOML, fields of ScenarioFamily)")],
    out: Annotated[Path, typer.Argument(help="the library folder to write")],
    n: Annotated[int, typer.Option(help="family members to draw and screen")] = 20,
    first_seed: Annotated[int, typer.Option(help="seed of the first member")] = 0,
    test_fraction: Annotated[float, typer.Option(help="share of kept scenarios held out as 'test'")] = 0.2,
    min_violation_s: Annotated[float, typer.Option(help="the baseline must violate at least this long, s")] = 10.0,
    min_improvement: Annotated[float, typer.Option(help="OFO must remove at least this share of the integral")] = 0.2,
) -> None:
    """Draw family members, keep those where control matters, split and save them."""
    from g2gsim.gym import ScenarioFamily, Screening, build_library

    try:
        spec = ScenarioFamily.from_toml(family)
        screening = Screening(min_violation_s=min_violation_s, min_improvement=min_improvement)
        library = build_library(
            spec,
            out,
            n,
            first_seed=first_seed,
            test_fraction=test_fraction,
            screening=screening,
            progress=lambda c: console.print(f"[dim]{c.scenario.name}: {'kept' if c.kept else c.reason}[/]"),
        )
    except (ValueError, LookupError, OSError) as exc:
        fail(str(exc))
    splits = {name: len([e for e in library if e.split == name]) for name in ("train", "test")}
    stdout.print(f"{len(library)} of {n} kept ({splits['train']} train, {splits['test']} test) in {out}")


def register(app: typer.Typer) -> None:
    """Add the ``rl`` group to a Typer app."""
    app.add_typer(rl, name="rl")

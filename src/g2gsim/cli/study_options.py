"""Options of the study commands, parsed and checked: each exits 2 naming the option, the value and what is allowed."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from g2gsim.cli.common import fail, load_or_fail
from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.scenarios import Scenario, ScenarioError
from g2gsim.scenarios.overrides import MISSING, value_at
from g2gsim.studies.studies import MetricError, candidate_buses, feeder_topology
from g2gsim.studies.surrogate import ScreenOptions
from g2gsim.studies.sweep import ExecutorError, SweepError, SweepFolderWarning


def executor_options(workers: int | None, scheduler: str | None) -> tuple[str | None, int | None]:
    """``(scheduler address, worker count)`` for the study functions' `executor` and `workers`."""
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be 1 or more (leave it out to run serially)")
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers N or --scheduler ADDR, not both")
    if scheduler is not None:
        return scheduler, None
    return None, workers


def load_base(scenario: str, duration: float | None, sets: Sequence[str] | None = None) -> Scenario:
    """The scenario (bundled name or file) with the ``--set`` changes and ``--duration`` as its
    horizon; studies run simulated scenarios only."""
    base = load_or_fail(scenario, sets)
    if base.is_live:
        fail(f"scenario {base.name!r} has live sites; studies run simulated scenarios only")
    if duration is not None:
        if not (math.isfinite(duration) and duration > 0):
            fail(f"--duration {duration:g}: must be a positive number of simulated seconds")
        try:
            base = base.with_overrides(horizon_s=duration)
        except ScenarioError as exc:
            fail(f"--duration {duration:g}: {exc}")
    return base


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """Seeds from ``"0-9"``, ``"0,3,7"`` or ``"0-4,10,12-13"`` (ranges inclusive, duplicates dropped)."""
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if match is None:
            fail(
                f"{option} {text!r}: {item!r} is not a seed or a range; use non-negative integers "
                "like '0-9', '0,3,7' or '0-4,10'"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            fail(f"{option} {text!r}: the range {item!r} is empty (it needs low <= high, e.g. '{high}-{low}')")
        seeds.extend(range(low, high + 1))
    return list(dict.fromkeys(seeds))


#: The value at a dotted path of a plain scenario mapping (:data:`MISSING` when absent).
current_value = value_at


def parse_values(tokens: Sequence[str], current: Any = MISSING) -> list[Any]:
    """Command-line values of a parameter: each token is one value or a comma-separated list.

    A value is read as JSON (numbers, true/false, lists, tables) unless the parameter's present
    value is text (a bus name stays ``"671"``, not 671); what does not parse is kept as text.
    """
    values: list[Any] = []
    for token in tokens:
        stripped = token.strip()
        items = [stripped] if stripped[:1] in ("[", "{") else stripped.split(",")
        for item in items:
            item = item.strip()
            if not item:
                fail(f"VALUES {token!r}: empty value; give values like 0.05 0.1 0.2 or 0.05,0.1,0.2")
            values.append(_parse_value(item, text=isinstance(current, str)))
    return list({json.dumps(v, sort_keys=True): v for v in values}.values())


def _parse_value(item: str, *, text: bool) -> Any:
    if text:
        return item
    if item.lower() in ("true", "false"):
        return item.lower() == "true"
    try:
        return json.loads(item)
    except json.JSONDecodeError:
        return item


def study_buses(base: Scenario, bus: Sequence[str] | None) -> list[str]:
    """The ``--bus`` values (repeated or comma-separated), each a three-phase bus of the
    scenario's feeder, or every candidate bus when none is given."""
    try:
        topology = feeder_topology(base.grid.feeder)
        candidates = candidate_buses(base)
    except (GridError, FeederDefinitionError, OSError) as exc:
        fail(f"scenario {base.name!r}: feeder {base.grid.feeder!r}: {exc}")
    requested = list(dict.fromkeys(b.strip().lower() for item in bus or [] for b in item.split(",") if b.strip()))
    three_phase = set(topology.three_phase_buses())
    wrong = [b for b in requested if b not in three_phase]
    if wrong:
        kind = "no bus" if wrong[0] not in topology.buses else "not a three-phase bus"
        fail(f"--bus {wrong[0]!r}: {kind} of feeder {base.grid.feeder!r}; three-phase buses: {', '.join(candidates)}")
    buses = requested or candidates
    if not buses:
        fail(f"feeder {base.grid.feeder!r} has no candidate three-phase bus; give --bus")
    return buses


def check_site(base: Scenario, site: int) -> None:
    """``--site`` must index one of the scenario's sites."""
    if not 0 <= site < len(base.sites):
        fail(f"--site {site}: scenario {base.name!r} has {len(base.sites)} site(s); use 0..{len(base.sites) - 1}")


@contextmanager
def running(scheduler: str | None) -> Iterator[None]:
    """Run a study: scenario errors and a bad ``--scheduler`` address exit 2, executor errors exit 1;
    lost-run and shared-folder warnings are left to the caller (its counts, its own rows)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lost by the executor")
            warnings.simplefilter("ignore", SweepFolderWarning)
            yield
    except ExecutorError as exc:
        if scheduler is None:
            fail(str(exc))
        fail(f"--scheduler {scheduler!r}: not a scheduler address; give one like tcp://host:8786")
    except (SweepError, ScenarioError) as exc:
        fail(str(exc))
    except MetricError as exc:  # a screened study ranks by its metric before the table is made
        fail(f"--metric {exc.metric!r}: not a metric of these runs; metrics: {', '.join(exc.available)}")
    except ImportError as exc:
        fail(f"{exc} (--scheduler needs the dask extra: pip install 'g2gsim[dask]')", 1)
    except OSError as exc:
        where = f"--scheduler {scheduler}: " if scheduler else ""
        fail(f"{where}{exc}", 1)


def slug(text: str) -> str:
    """`text` as a folder or file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "study"


# -- screening (--screen) ------------------------------------------------------------------------
Screen = Annotated[
    bool,
    typer.Option(
        help="screen: every run on a coarse-step surrogate, exact re-runs only where its error bound is unsure"
    ),
]
ScreenSample = Annotated[int, typer.Option(help="with --screen: exact calibration runs drawn at random")]
ScreenConfidence = Annotated[float, typer.Option(help="with --screen: coverage of the error bound, in (0, 1)")]
ScreenStep = Annotated[
    float, typer.Option(help="with --screen: the surrogate's grid, datacenter and controller step, s")
]
ScreenTop = Annotated[float, typer.Option(help="with --screen: share of the best candidates always re-run exactly")]
#: ScreenOptions field -> the option that sets it.
SCREEN_FLAGS = {
    "sample": "--screen-sample",
    "confidence": "--screen-confidence",
    "step_s": "--screen-step",
    "top_fraction": "--screen-top",
}


def screen_options(
    screen: bool, sample: int, confidence: float, step: float, top: float, threshold: float | None = None
) -> ScreenOptions | None:
    """The :class:`ScreenOptions` of ``--screen`` and its options (None without ``--screen``);
    exits 2 naming the option, the value and what is allowed (a `threshold`, site-sweep's
    feasibility limit, needs ``--screen``)."""
    if threshold is not None and not screen:
        fail(f"--threshold {threshold:g}: only used with --screen (the feasibility the screening checks)")
    if not screen:
        return None
    values = {"sample": sample, "confidence": confidence, "step_s": step, "top_fraction": top}
    try:
        return ScreenOptions(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "sample"
        flag = SCREEN_FLAGS.get(field, "--screen-sample")
        fail(f"{flag} {values.get(field, sample)!r}: {error['msg'].removeprefix('Value error, ')}")

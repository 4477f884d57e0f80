"""Checks of a built scenario before it runs: the memory it needs, and whether its horizon
reaches the events it schedules.

A run keeps one row per step of every component in memory (the recording buffers are
allocated when it starts, tables are built from them at the end) and one per-GPU power
template per (model, batch size) over the whole horizon, so its memory grows linearly with
the horizon over the shortest step. :func:`estimate_memory` adds those up from the scenario
and the built grid's voltage layout; :func:`check_memory` refuses a run whose estimate
exceeds the limit (by default 75 % of this machine's memory; ``G2GSIM_MEMORY_LIMIT`` or the
`limit` argument overrides it).

A scenario's stress events (replica ramps, training jobs, tap and batch schedules, budget
changes) happen at fixed times; a horizon that ends before the first of them runs a
scenario that looks clean because nothing happened. :func:`scheduled_events` lists them and
:func:`horizon_note` says so.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError
from g2gsim.grid.feeders import load_feeder
from g2gsim.grid.topology import FeederTopology
from g2gsim.scenarios.model import Scenario, ScenarioError

if TYPE_CHECKING:
    from g2gsim.scenarios.build import BuiltScenario

__all__ = [
    "MEMORY_LIMIT_ENV",
    "HorizonWarning",
    "MemoryEstimate",
    "MemoryLimitError",
    "ScheduledEvent",
    "check_memory",
    "check_site_buses",
    "estimate_memory",
    "feeder_topology",
    "format_bytes",
    "horizon_note",
    "memory_limit",
    "parse_bytes",
    "scheduled_events",
]

#: Environment variable that sets the memory limit of a run (e.g. ``8GB``, ``512MiB``, ``0`` for none).
MEMORY_LIMIT_ENV = "G2GSIM_MEMORY_LIMIT"
#: Share of the machine's memory a run may use by default.
DEFAULT_MEMORY_SHARE = 0.75
#: Memory of the interpreter, the libraries and the loaded data before any run (measured, rounded up).
BASE_BYTES = 200 * 2**20
_FLOAT = 8


class MemoryLimitError(ScenarioError):
    """A run would need more memory than the limit; the message says how much and what to change."""


class HorizonWarning(UserWarning):
    """A run's horizon ends before the first event its scenario schedules."""


# -- memory ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs, by part (recording buffers, tables built at the end, power templates)."""

    parts: Mapping[str, int]

    @property
    def total(self) -> int:
        """Everything, the interpreter and libraries included."""
        return BASE_BYTES + sum(self.parts.values())

    def describe(self) -> str:
        """``about 1.2 GiB (site 'dc' 0.8 GiB, grid 'grid' 0.3 GiB, ...)``, largest parts first."""
        largest = sorted(self.parts.items(), key=lambda item: -item[1])[:4]
        shown = ", ".join(f"{name} {format_bytes(size)}" for name, size in largest if size > 0)
        return f"about {format_bytes(self.total)}" + (f" ({shown})" if shown else "")


def _steps(horizon: Fraction, period: Fraction | None) -> int:
    return 0 if period is None or period <= 0 else math.ceil(horizon / period)


def _site_bytes(built: BuiltScenario, name: str, horizon: Fraction, period: Fraction) -> int:
    """Per step: time, power per phase and per model, ITL per model, a template per (model, batch)
    (the data source's and the site's copy), and the state table built from them at the end."""
    site = built.sites[name]
    n_models = len(site.specs)
    n_batches = sum(len(set(spec.feasible_batch_sizes or spec.batch_sizes)) + 1 for spec in site.specs.values())
    buffers = 1 + 3 + 2 * n_models
    templates = 2 * n_batches
    table = 4 + 4 * n_models + 2 * n_models  # the state table, and the forward-filled batch/replicas
    return (_steps(horizon, period) + 1) * _FLOAT * (buffers + templates + table)


def _grid_bytes(built: BuiltScenario, horizon: Fraction) -> int:
    """Per grid step: voltages, taps, site power, batteries and load profiles; the tables copy
    all but the voltages (a view of the buffer)."""
    scenario = built.scenario
    try:  # the layout compiles the feeder; a feeder that fails here fails the run too, with its own error
        n_voltages, n_regulators = len(built.grid.voltage_index), len(built.grid.regulators)
    except (GridError, ValueError, LookupError, OSError):
        n_voltages, n_regulators = 0, 0
    n_sites = len(scenario.sites)
    n_storage = len(scenario.grid.storage)
    n_profiles = len(scenario.grid.generators) + len(scenario.grid.loads)
    buffers = 1 + n_voltages + n_regulators + 3 * n_sites + 4 * n_storage + 6 * n_profiles
    tables = 1 + n_regulators + 5 * n_sites + 6 * n_storage
    return _steps(horizon, scenario.grid.period_s) * _FLOAT * (buffers + tables + 1)


def _controller_bytes(scenario: Scenario, horizon: Fraction, n_models: int) -> dict[str, int]:
    """Periodic controllers record a few values per model and step (buffers and tables)."""
    return {
        f"controller {c.name!r}": _steps(horizon, c.period_s) * _FLOAT * 2 * (2 + 4 * n_models)
        for c in scenario.controllers
    }


def estimate_memory(built: BuiltScenario) -> MemoryEstimate:
    """The memory a built scenario needs to run over its whole horizon (see the module docstring)."""
    scenario = built.scenario
    horizon = Fraction(scenario.horizon_s)
    parts = {
        f"site {site.name!r}": _site_bytes(built, site.name, horizon, Fraction(site.period_s))
        for site in scenario.sites
    }
    parts[f"grid {scenario.grid.name!r}"] = _grid_bytes(built, horizon)
    n_models = max((len(site.models) for site in scenario.sites), default=0)
    parts.update(_controller_bytes(scenario, horizon, n_models))
    return MemoryEstimate(parts)


def format_bytes(size: float) -> str:
    """``1.5 GiB``, ``320 MiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20}
_UNITS |= {"g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str | float, what: str = MEMORY_LIMIT_ENV) -> int:
    """``"8GB"``, ``"512 MiB"``, ``"2.5e9"`` -> bytes; 0 means no limit. A ValueError names `what`."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"{what} {text!r}: not a size; give bytes with a unit, e.g. 8GB, 512MiB (0: no limit)")
    try:
        value = float(match.group(1)) * _UNITS[match.group(2)]
    except ValueError:
        raise ValueError(f"{what} {text!r}: not a size; give e.g. 8GB or 512MiB") from None
    return int(value)


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(limit: int | str | None = None) -> tuple[int | None, str]:
    """The limit in bytes (None: none) and where it comes from: `limit`, ``G2GSIM_MEMORY_LIMIT``,
    or 75 % of this machine's memory."""
    if limit is not None:
        value = parse_bytes(limit, "memory limit")
        return (value or None), "the given limit"
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env:
        value = parse_bytes(env)
        return (value or None), f"{MEMORY_LIMIT_ENV}={env}"
    total = machine_memory()
    if total is None:
        return None, "no limit (the machine's memory is unknown)"
    share = int(total * DEFAULT_MEMORY_SHARE)
    return share, f"{DEFAULT_MEMORY_SHARE:.0%} of this machine's {format_bytes(total)}"


def check_memory(built: BuiltScenario, limit: int | str | None = None) -> MemoryEstimate:
    """The estimate, or MemoryLimitError when it exceeds the limit (naming both and what to change)."""
    estimate = estimate_memory(built)
    allowed, origin = memory_limit(limit)
    if allowed is not None and estimate.total > allowed:
        scenario = built.scenario
        raise MemoryLimitError(
            f"scenario {scenario.name!r}: horizon_s = {float(scenario.horizon_s):g} needs {estimate.describe()} "
            f"of memory, over the limit of {format_bytes(allowed)} ({origin}); shorten horizon_s (--duration), "
            f"lengthen the steps (period_s), or raise the limit (--memory-limit, {MEMORY_LIMIT_ENV})"
        )
    return estimate


# -- site buses ------------------------------------------------------------------------------------
def check_site_buses(built: BuiltScenario) -> None:
    """Raise a ScenarioError naming the site, its bus and the feeder's three-phase buses when a
    site's bus is not a three-phase bus of the feeder (checked when the grid cannot attach the sites)."""
    try:
        built.grid.voltage_index  # compiles the feeder and attaches the sites  # noqa: B018
        return
    except (GridError, ValueError, LookupError):
        pass
    scenario = built.scenario
    try:
        topology = feeder_topology(scenario.grid.feeder)
    except (GridError, ValueError, LookupError, OSError):
        return  # the feeder itself is at fault: the run reports it
    three_phase = topology.three_phase_buses()
    for i, site in enumerate(scenario.sites):
        bus = site.bus.lower()
        if bus in three_phase:
            continue
        problem = "unknown bus" if bus not in topology.buses else "single- or two-phase bus"
        raise ScenarioError(
            f"scenario {scenario.name!r}: sites.{i}.bus: {problem} {site.bus!r} (site {site.name!r}) of feeder "
            f"{scenario.grid.feeder!r}; a site needs one of its three-phase buses: {', '.join(three_phase)}"
        )


def feeder_topology(feeder: str) -> FeederTopology:
    """The topology of a feeder (bundled name, .dss file or table folder), compiled in a private engine."""
    engine = DSSEngine()
    engine.compile_feeder(load_feeder(feeder))
    return FeederTopology.from_engine(engine)


# -- scheduled events -----------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ScheduledEvent:
    """One time the scenario schedules something (t > 0 s)."""

    t_s: float
    what: str


def _site_events(scenario: Scenario) -> Iterable[ScheduledEvent]:
    for site in scenario.sites:
        for entry in site.models:
            for ramp in entry.ramps:
                yield ScheduledEvent(ramp.t_start_s, f"replica ramp of {entry.model} at site {site.name!r}")
        for job in site.training:
            yield ScheduledEvent(job.t_start_s, f"training job at site {site.name!r}")


def _times_in(value: Any) -> Iterable[float]:
    """Every ``t_s`` of a controller section's plain form (its events), at any depth."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "t_s" and isinstance(item, int | float):
                yield float(item)
            else:
                yield from _times_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _times_in(item)


def _profile_times(profile: Any, folder: Path | None) -> list[float]:
    """The times of a ``t_s`` column of a CSV profile (empty when it cannot be read here)."""
    if not isinstance(profile, str):
        return []
    path = Path(profile)
    if not path.is_absolute() and folder is not None:
        path = folder / path
    try:
        with open(path, newline="") as handle:
            return [float(row["t_s"]) for row in csv.DictReader(handle) if row.get("t_s")]
    except (OSError, ValueError, KeyError):
        return []


def _controller_events(scenario: Scenario) -> Iterable[ScheduledEvent]:
    for section in scenario.controllers:
        plain = section.model_dump(mode="json")
        times = [*_times_in(plain.get("events", [])), *_profile_times(plain.get("profile"), scenario.folder)]
        for t in times:
            yield ScheduledEvent(t, f"{section.type} controller {section.name!r}")


def scheduled_events(scenario: Scenario) -> list[ScheduledEvent]:
    """Every time after 0 s at which the scenario schedules a change, earliest first."""
    events = [*_site_events(scenario), *_controller_events(scenario)]
    return sorted(event for event in events if event.t_s > 0)


def horizon_note(scenario: Scenario) -> str | None:
    """Why the horizon misses every scheduled event (None when it reaches the first one, or there is none)."""
    events = scheduled_events(scenario)
    horizon = float(scenario.horizon_s)
    if not events or horizon > events[0].t_s:
        return None
    first = events[0]
    others = sum(1 for e in events if e is not first)
    more = f" and {others} later one(s)" if others else ""
    return (
        f"scenario {scenario.name!r}: the horizon ({horizon:g} s) ends before the first scheduled event "
        f"({first.what} at {first.t_s:g} s{more}); the run sees none of them (raise horizon_s or --duration)"
    )

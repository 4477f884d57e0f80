"""A scenario library: family members screened for whether control matters, saved, split, sampled.

:func:`build_library` draws members of a :class:`~g2gsim.gym.family.ScenarioFamily`, runs
each without batch control on the agent's site (the baseline) and with OFO on it, and keeps
those where control matters: the baseline violates the voltage limits for at least
``min_violation_s`` and OFO removes at least ``min_improvement`` of its violation integral.
Kept members are split into ``train`` and held-out ``test`` scenarios and saved in a folder:

- ``library.json``: the family, the site, the control period, the screening options, every
  kept entry (name, seed, split, baseline and OFO metrics) and every rejected one (why);
- ``scenarios/<name>.toml``: each kept scenario, runnable on its own;
- ``penalties.npz``: the voltage penalty of the baseline and of OFO at each control instant
  (what ``RewardConfig(relative_to_ofo=True)`` subtracts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from g2gsim.gym.episodes import ControlClock, PenaltyTrace, agent_site, penalty_trace, run_with
from g2gsim.gym.family import ScenarioFamily
from g2gsim.kernel.links import Seconds
from g2gsim.kernel.registry import Section
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.runner import summarize

__all__ = ["Candidate", "LibraryEntry", "ScenarioLibrary", "Screening", "build_library", "screen"]

_INDEX = "library.json"
_PENALTIES = "penalties.npz"
_SCENARIOS = "scenarios"
#: Metrics kept per reference run in the index.
_METRICS = ("violation_time_s", "integral_violation_pu_s", "worst_vmin", "worst_vmax", "mean_throughput_tps")


class Screening(Section):
    """When control matters enough for a scenario to enter a library."""

    min_violation_s: float = Field(default=10.0, ge=0)
    """The baseline must be outside the voltage limits at least this long, s."""
    min_improvement: float = Field(default=0.2, ge=0, le=1)
    """OFO must remove at least this share of the baseline's violation integral."""
    control_period_s: Seconds = Field(default=Fraction(1))
    """The control period the penalties are recorded at, s (the environment's)."""


@dataclass(frozen=True)
class Candidate:
    """One screened scenario: its baseline and OFO metrics and penalty traces, and the verdict."""

    scenario: Scenario
    baseline: dict[str, float]
    ofo: dict[str, float]
    baseline_penalty: np.ndarray
    ofo_penalty: np.ndarray
    kept: bool
    reason: str

    @property
    def improvement(self) -> float:
        """Share of the baseline's violation integral that OFO removes (0 without violation)."""
        before = self.baseline["integral_violation_pu_s"]
        return 0.0 if before <= 0 else 1.0 - self.ofo["integral_violation_pu_s"] / before


def _metrics(trace: PenaltyTrace) -> dict[str, float]:
    found = summarize(trace.built, trace.result, 0.0)
    return {key: float(found[key]) for key in _METRICS if found.get(key) is not None}  # type: ignore[literal-required]


def screen(scenario: Scenario, *, site: str | None = None, screening: Screening | None = None) -> Candidate:
    """Run `scenario` without control on `site` and with OFO on it; keep it if control matters."""
    options = screening or Screening()
    site = agent_site(scenario, site)
    clock = ControlClock.of(options.control_period_s, scenario.horizon_s)
    limits = {"v_min": scenario.v_min, "v_max": scenario.v_max}
    baseline = penalty_trace(run_with(scenario, "baseline", site), clock, **limits)
    ofo = penalty_trace(run_with(scenario, "ofo", site), clock, **limits)
    candidate = Candidate(scenario, _metrics(baseline), _metrics(ofo), baseline.penalty, ofo.penalty, False, "")
    if candidate.baseline["violation_time_s"] < options.min_violation_s:
        reason = f"baseline violation {candidate.baseline['violation_time_s']:g} s < {options.min_violation_s:g} s"
    elif candidate.improvement < options.min_improvement:
        reason = f"OFO removes {candidate.improvement:.1%} of the violation integral < {options.min_improvement:.0%}"
    else:
        return Candidate(**{**candidate.__dict__, "kept": True, "reason": "control matters"})
    return Candidate(**{**candidate.__dict__, "reason": reason})


@dataclass(frozen=True)
class LibraryEntry:
    """One kept scenario of a library."""

    name: str
    seed: int
    split: str
    baseline: dict[str, float]
    ofo: dict[str, float]


def build_library(
    family: ScenarioFamily,
    folder: str | Path,
    n: int,
    *,
    first_seed: int = 0,
    test_fraction: float = 0.2,
    site: str | None = None,
    screening: Screening | None = None,
    progress: Callable[[Candidate], None] | None = None,
) -> ScenarioLibrary:
    """Draw `n` members (seeds first_seed ...), screen them, split the kept ones (a share
    `test_fraction` held out as ``test``) and save the library in `folder`."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    options = screening or Screening()
    base_site = agent_site(family.base_scenario(), site if site is not None else family.site)
    out = Path(folder)
    (out / _SCENARIOS).mkdir(parents=True, exist_ok=True)
    kept: list[tuple[int, Candidate]] = []
    rejected: list[dict[str, Any]] = []
    penalties: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    for seed in range(first_seed, first_seed + n):
        candidate = screen(family.sample(seed), site=base_site, screening=options)
        if progress is not None:
            progress(candidate)
        if not candidate.kept:
            rejected.append({"name": candidate.scenario.name, "seed": seed, "reason": candidate.reason})
            continue
        kept.append((seed, candidate))
        candidate.scenario.to_toml(out / _SCENARIOS / f"{candidate.scenario.name}.toml")
        penalties[f"baseline__{candidate.scenario.name}"] = candidate.baseline_penalty
        penalties[f"ofo__{candidate.scenario.name}"] = candidate.ofo_penalty
    held_out = set(
        np.random.default_rng(first_seed).permutation(len(kept))[: round(test_fraction * len(kept))].tolist()
    )
    entries = [
        LibraryEntry(c.scenario.name, seed, "test" if i in held_out else "train", c.baseline, c.ofo)
        for i, (seed, c) in enumerate(kept)
    ]
    np.savez(out / _PENALTIES, **penalties)  # type: ignore[arg-type]  # numpy's stub types keyword arrays as bool
    index = {
        "family": family.model_dump(mode="json", exclude_none=True),
        "site": base_site,
        "screening": options.model_dump(mode="json"),
        "build_s": time.perf_counter() - started,
        "entries": [asdict(e) for e in entries],
        "rejected": rejected,
    }
    (out / _INDEX).write_text(json.dumps(index, indent=2))
    return ScenarioLibrary.load(out)


class ScenarioLibrary:
    """A saved library (see :mod:`g2gsim.gym.library`), or one split of it."""

    def __init__(self, folder: Path, index: dict[str, Any], entries: list[LibraryEntry], split: str | None) -> None:
        self.folder = folder
        self.index = index
        self.entries = entries
        self.split_name = split
        self._scenarios: dict[str, Scenario] = {}
        self._penalties: Any = None

    @classmethod
    def load(cls, folder: str | Path) -> ScenarioLibrary:
        """The library saved in `folder`."""
        path = Path(folder)
        index_file = path / _INDEX
        if not index_file.is_file():
            raise FileNotFoundError(f"{path} holds no scenario library ({_INDEX} is missing)")
        index = json.loads(index_file.read_text())
        return cls(path, index, [LibraryEntry(**e) for e in index["entries"]], None)

    @staticmethod
    def is_library(folder: str | Path) -> bool:
        """Whether `folder` holds a saved library."""
        return (Path(folder) / _INDEX).is_file()

    @property
    def site(self) -> str:
        """The site the screening controlled (the agent's)."""
        return str(self.index["site"])

    @property
    def control_period_s(self) -> float:
        """The control period the penalties were recorded at, s."""
        return float(self.index["screening"]["control_period_s"])

    def split(self, name: str) -> ScenarioLibrary:
        """The entries of one split ("train" or "test")."""
        chosen = [e for e in self.entries if e.split == name]
        if not chosen:
            splits = sorted({e.split for e in self.entries})
            raise LookupError(f"library {self.folder} has no {name!r} scenarios; splits: {splits}")
        view = ScenarioLibrary(self.folder, self.index, chosen, name)
        view._scenarios = self._scenarios
        return view

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LibraryEntry]:
        return iter(self.entries)

    def scenario(self, name: str) -> Scenario:
        """A kept scenario by name."""
        if name not in self._scenarios:
            if not any(e.name == name for e in self.entries):
                raise KeyError(f"library {self.folder} has no scenario {name!r} in this split")
            self._scenarios[name] = Scenario.from_toml(self.folder / _SCENARIOS / f"{name}.toml")
        return self._scenarios[name]

    def scenarios(self) -> list[Scenario]:
        """Every scenario of the library (or split), in order."""
        return [self.scenario(e.name) for e in self.entries]

    def penalty(self, name: str, run: str = "ofo") -> np.ndarray:
        """The voltage penalty at each control instant of the "ofo" or "baseline" run of a scenario."""
        if self._penalties is None:
            with np.load(self.folder / _PENALTIES) as data:
                self._penalties = {key: data[key] for key in data.files}
        try:
            return self._penalties[f"{run}__{name}"]
        except KeyError:
            raise KeyError(f"library {self.folder} has no {run!r} penalties for {name!r}") from None

    def sample(self, rng: np.random.Generator) -> LibraryEntry:
        """One entry drawn uniformly."""
        return self.entries[int(rng.integers(len(self.entries)))]

    def table(self) -> pd.DataFrame:
        """One row per entry: name, seed, split, then baseline and OFO metrics."""
        rows = [
            {
                "name": e.name,
                "seed": e.seed,
                "split": e.split,
                **{f"baseline.{k}": v for k, v in e.baseline.items()},
                **{f"ofo.{k}": v for k, v in e.ofo.items()},
            }
            for e in self.entries
        ]
        return pd.DataFrame(rows)

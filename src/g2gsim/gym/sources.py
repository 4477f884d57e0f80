"""Where an environment's episodes come from: one scenario, a family, or a saved library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from g2gsim.gym.family import ScenarioFamily
from g2gsim.gym.library import ScenarioLibrary
from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.model import Scenario

__all__ = ["Episode", "EpisodeSource", "ScenarioLike", "episode_source"]

#: What an environment accepts as its scenario.
ScenarioLike = str | Path | Scenario | ScenarioFamily | ScenarioLibrary


@dataclass(frozen=True)
class Episode:
    """The scenario of one episode and, if known, the OFO run's voltage penalty per control instant."""

    scenario: Scenario
    ofo_penalty: np.ndarray | None = None


class EpisodeSource(Protocol):
    """Draws the scenario of each episode."""

    varies: bool
    """Whether episodes differ by construction (a family or a library)."""

    def template(self) -> Scenario:
        """A representative scenario (for the spaces, before any episode)."""
        ...

    def draw(self, rng: np.random.Generator) -> Episode:
        """The next episode."""
        ...


class _Fixed:
    varies = False

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    def template(self) -> Scenario:
        return self.scenario

    def draw(self, rng: np.random.Generator) -> Episode:
        return Episode(self.scenario)


class _Family:
    varies = True

    def __init__(self, family: ScenarioFamily) -> None:
        self.family = family

    def template(self) -> Scenario:
        return self.family.base_scenario()

    def draw(self, rng: np.random.Generator) -> Episode:
        return Episode(self.family.sample(int(rng.integers(2**31))))


class _Library:
    varies = True

    def __init__(self, library: ScenarioLibrary) -> None:
        self.library = library

    def template(self) -> Scenario:
        return self.library.scenario(self.library.entries[0].name)

    def draw(self, rng: np.random.Generator) -> Episode:
        entry = self.library.sample(rng)
        return Episode(self.library.scenario(entry.name), self.library.penalty(entry.name))


def episode_source(scenario: ScenarioLike, *, split: str | None = "train") -> EpisodeSource:
    """A source for a preset name or scenario file, a library folder, a :class:`Scenario`, a
    :class:`ScenarioFamily` or a :class:`ScenarioLibrary` (its `split`, if it has one)."""
    if isinstance(scenario, Scenario):
        return _Fixed(scenario)
    if isinstance(scenario, ScenarioFamily):
        return _Family(scenario)
    if isinstance(scenario, ScenarioLibrary):
        return _Library(scenario if split is None or scenario.split_name is not None else scenario.split(split))
    if isinstance(scenario, str | Path):
        if Path(scenario).is_dir() and ScenarioLibrary.is_library(scenario):
            return episode_source(ScenarioLibrary.load(scenario), split=split)
        return _Fixed(load_scenario(scenario))
    raise TypeError(
        f"scenario must be a preset name, a path, a Scenario, a ScenarioFamily or a ScenarioLibrary; "
        f"got {type(scenario).__name__}"
    )

"""Scenario families: what is randomized around a base scenario, in which ranges, drawn by seed.

A :class:`ScenarioFamily` names a base scenario (a preset or a file) and the variations of
each drawn scenario: PV and load profiles (a peak scale and a choice of synthetic shapes),
replica counts (a scale), replica ramps (one per site: a target fraction, a start and a
duration), initial batch sizes, regulator tap events, and the scenario seed. The same seed
always gives the same scenario; a drawn scenario is an ordinary :class:`Scenario` (its TOML
can be saved and run on its own).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from pydantic import Field, PrivateAttr, field_validator

from g2gsim.kernel.links import Seconds
from g2gsim.kernel.registry import Section
from g2gsim.kernel.time import as_period
from g2gsim.scenarios.build import datacenter_config, model_catalogue
from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.model import Scenario, ScenarioError, read_toml

__all__ = ["ProfileVariation", "RampVariation", "ScenarioFamily", "TapVariation"]

#: Tries at shrinking drawn replica counts until a site's capacity holds them.
_FIT_TRIES = 40


def _ordered(value: tuple[Any, Any], what: str) -> tuple[Any, Any]:
    if value[0] > value[1]:
        raise ValueError(f"{what}: the low end {value[0]} is above the high end {value[1]}")
    return value


class ProfileVariation(Section):
    """Variation of every generator (``pv``) or external load (``loads``) of the grid."""

    scale: tuple[float, float] = (1.0, 1.0)
    """Range of one factor drawn per scenario for all of them (peak power)."""
    profiles: tuple[int, ...] = ()
    """Synthetic shapes to draw from, one per element (PV 0-2, loads 0-4); empty: keep each one's."""

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0:
            raise ValueError(f"scale must be >= 0, got {value}")
        return _ordered(value, "scale")


class RampVariation(Section):
    """One replica ramp per varied site, replacing its ramps: every model ramps together."""

    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    """Chance a site gets a ramp (else: no ramp at all)."""
    fraction: tuple[float, float] = (0.15, 0.5)
    """Target replicas over replicas at the start (above 1: a ramp up)."""
    start_s: tuple[float, float] = (500.0, 3000.0)
    """Range of the ramp's start, s."""
    duration_s: tuple[float, float] = (300.0, 800.0)
    """Range of its duration, s."""

    @field_validator("fraction", "start_s", "duration_s")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return _ordered(value, "range")


class TapVariation(Section):
    """Regulator tap events added as a ``tap_schedule`` controller named ``family_taps``."""

    regulators: tuple[str, ...] = Field(min_length=1)
    """Regulator controls that move at each event (e.g. creg1a, creg1b, creg1c)."""
    count: tuple[int, int] = (0, 2)
    """Range of the number of events."""
    t_s: tuple[float, float] = (300.0, 3300.0)
    """Range of event times, s (whole seconds, before the horizon)."""
    steps: tuple[int, int] = (-4, 16)
    """Range of the tap step each regulator moves to (ratio 1 + 0.00625 n)."""

    @field_validator("count", "t_s", "steps")
    @classmethod
    def _range(cls, value: tuple[Any, Any]) -> tuple[Any, Any]:
        return _ordered(value, "range")


class ScenarioFamily(Section):
    """A base scenario and what varies around it; :meth:`sample` draws one member by seed."""

    name: str = Field(min_length=1)
    """Prefix of the drawn scenarios' names."""
    base: str = Field(min_length=1)
    """A bundled preset name or a scenario file (relative to the family file's folder)."""
    site: str | None = None
    """The site whose replicas, ramps and batches vary (None: every site)."""
    horizon_s: Seconds | None = None
    """Horizon of every drawn scenario, s (None: the base's)."""
    seeds: bool = True
    """Draw each scenario's seed (noise, layout, latency draws); False: keep the base's."""
    pv: ProfileVariation = Field(default_factory=ProfileVariation)
    """Variation of the grid's generators."""
    loads: ProfileVariation = Field(default_factory=ProfileVariation)
    """Variation of the grid's external loads."""
    replicas: tuple[float, float] = (1.0, 1.0)
    """Range of one factor on every model's replicas at a varied site (shrunk to fit its capacity)."""
    ramps: RampVariation | None = None
    """Replica ramps drawn per site (None: keep the base's)."""
    initial_batches: tuple[int, ...] = ()
    """Initial batch sizes to draw from per model (feasible ones only; empty: keep the base's)."""
    taps: TapVariation | None = None
    """Tap events drawn per scenario (None: none added)."""

    _folder: Path | None = PrivateAttr(default=None)
    _base: Scenario | None = PrivateAttr(default=None)

    @field_validator("horizon_s", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Fraction | None:
        return None if value is None else as_period(value, name="horizon_s")

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0:
            raise ValueError(f"replicas must be >= 0, got {value}")
        return _ordered(value, "replicas")

    def __eq__(self, other: object) -> bool:
        """Equal content (where the family was read from, and its loaded base, do not count)."""
        if not isinstance(other, ScenarioFamily):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # -- files -----------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> ScenarioFamily:
        """A family from a TOML file (its fields at the top level)."""
        file = Path(path)
        family = cls.model_validate(read_toml(file, "family file", ScenarioError))
        family._folder = file.resolve().parent
        return family

    def to_toml(self, path: str | Path | None = None) -> str:
        """The family as TOML; also written to `path` when given."""
        text = tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))
        if path is not None:
            Path(path).write_text(text)
        return text

    # -- drawing ---------------------------------------------------------------------------
    def base_scenario(self) -> Scenario:
        """The base scenario, with the family's horizon."""
        if self._base is None:
            folder_file = None if self._folder is None else self._folder / self.base
            base = load_scenario(folder_file if folder_file is not None and folder_file.is_file() else self.base)
            if self.horizon_s is not None:
                base = base.with_overrides(horizon_s=self.horizon_s)
            names = [s.name for s in base.sites]
            if self.site is not None and self.site not in names:
                raise ScenarioError(
                    f"family {self.name!r}: base {self.base!r} has no site {self.site!r}; sites: {names}"
                )
            self._base = base
        return self._base

    def sample(self, seed: int) -> Scenario:
        """The member drawn with `seed` (the same seed, the same scenario)."""
        base = self.base_scenario()
        rng = np.random.default_rng(int(seed))
        raw = copy.deepcopy(base.to_dict())
        raw["name"] = f"{self.name}-{int(seed):05d}"
        raw["description"] = f"member {seed} of family {self.name!r} (base {base.name!r})"
        raw["seed"] = int(rng.integers(2**31)) if self.seeds else base.seed
        _vary_profiles(raw["grid"].get("generators", []), self.pv, rng)
        _vary_profiles(raw["grid"].get("loads", []), self.loads, rng)
        horizon = float(base.horizon_s)
        draws = [
            (site, self._draw_site(site, rng, horizon)) for site in raw["sites"] if self.site in (None, site["name"])
        ]
        if self.taps is not None:
            events = _tap_events(self.taps, rng, horizon)
            if events:
                grid = raw["grid"].get("name", "grid")
                raw.setdefault("controllers", []).append(
                    {"type": "tap_schedule", "name": "family_taps", "grid": grid, "events": events}
                )
        return self._fitted(raw, draws, base)

    def generate(self, n: int, *, first_seed: int = 0) -> list[Scenario]:
        """`n` members, drawn with seeds first_seed, first_seed + 1, ..."""
        return [self.sample(first_seed + i) for i in range(n)]

    def _draw_site(self, site: dict[str, Any], rng: np.random.Generator, horizon: float) -> _SiteDraw:
        scale = float(rng.uniform(*self.replicas))
        ramp = None
        if self.ramps is not None and rng.random() < self.ramps.probability:
            start = round(float(rng.uniform(*self.ramps.start_s)))
            duration = round(float(rng.uniform(*self.ramps.duration_s)))
            ramp = (float(rng.uniform(*self.ramps.fraction)), float(start), float(min(start + duration, horizon)))
        batches = [int(rng.choice(self.initial_batches)) if self.initial_batches else None for _ in site["models"]]
        return _SiteDraw(scale, self.ramps is not None, ramp, batches)

    def _fitted(
        self, raw: dict[str, Any], draws: Sequence[tuple[dict[str, Any], _SiteDraw]], base: Scenario
    ) -> Scenario:
        """The scenario with each varied site's draw applied, shrinking its replica scale until
        its capacity holds them."""
        catalogue = model_catalogue(base)
        for site, draw in draws:
            entries = {e.model: e for e in next(s for s in base.sites if s.name == site["name"]).models}
            for _ in range(_FIT_TRIES):
                draw.apply(site, entries, catalogue)
                try:
                    scenario = Scenario.from_dict(raw, source=raw["name"], folder=base.folder)
                    datacenter_config(next(s for s in scenario.sites if s.name == site["name"]), catalogue)
                    break
                except ValueError:
                    draw.scale *= 0.9
            else:
                raise ScenarioError(f"family {self.name!r}: site {site['name']!r} cannot hold its drawn replicas")
        return Scenario.from_dict(raw, source=raw["name"], folder=base.folder)


class _SiteDraw:
    """What was drawn for one site: a replica scale, its ramp (or none) and initial batches."""

    def __init__(
        self, scale: float, replace_ramps: bool, ramp: tuple[float, float, float] | None, batches: list[int | None]
    ) -> None:
        self.scale = scale
        self.replace_ramps = replace_ramps
        self.ramp = ramp
        self.batches = batches

    def apply(self, site: dict[str, Any], base: dict[str, Any], catalogue: dict[str, Any]) -> None:
        """Write replicas, ramps and initial batches into the site's table (from its base entries)."""
        for entry, batch in zip(site["models"], self.batches, strict=True):
            original = base[entry["model"]]
            replicas = round(self.scale * original.replicas)
            entry["replicas"] = replicas
            if not self.replace_ramps:
                entry["ramps"] = [
                    {"target": round(self.scale * r.target), "t_start_s": r.t_start_s, "t_end_s": r.t_end_s}
                    for r in original.ramps
                ]
            elif self.ramp is None:
                entry["ramps"] = []
            else:
                fraction, start, end = self.ramp
                entry["ramps"] = [{"target": round(fraction * replicas), "t_start_s": start, "t_end_s": end}]
            feasible = original.spec(catalogue).feasible_batch_sizes
            entry["initial_batch"] = batch if batch in feasible else original.initial_batch


def _vary_profiles(elements: list[dict[str, Any]], variation: ProfileVariation, rng: np.random.Generator) -> None:
    factor = float(rng.uniform(*variation.scale))
    for element in elements:
        profile = element["profile"]
        key = {"constant": "kw", "csv": "scale"}.get(profile["kind"], "peak_kw")
        profile[key] = float(profile.get(key, 1.0)) * factor
        if variation.profiles and profile["kind"] in ("synthetic_pv", "synthetic_load"):
            profile["profile"] = int(rng.choice(variation.profiles))


def _tap_events(taps: TapVariation, rng: np.random.Generator, horizon: float) -> list[dict[str, Any]]:
    """Drawn tap events at distinct whole seconds before the horizon, oldest first."""
    count = int(rng.integers(taps.count[0], taps.count[1] + 1))
    times = sorted({round(float(rng.uniform(*taps.t_s))) for _ in range(count)})
    steps = [{reg: int(rng.integers(taps.steps[0], taps.steps[1] + 1)) for reg in taps.regulators} for _ in times]
    return [{"t_s": float(t), "tap_steps": s} for t, s in zip(times, steps, strict=True) if 0 < t < horizon]

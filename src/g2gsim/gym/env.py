"""The Gymnasium environment: one agent sets one site's batch sizes every control period.

Each episode is a scenario (fixed, drawn from a family, or sampled from a library) whose
controllers on the agent's site are removed (tap schedules and other sites' controllers
stay). The run is driven through :meth:`~g2gsim.kernel.simulation.Simulation.start`: after
``reset`` the mailboxes hold what was published before the first control instant; each
``step`` sends the chosen batch sizes through the agent's command link (instant by default),
steps one control period and observes again. An episode ends (truncated) at the horizon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel

from g2gsim.controllers.ofo import LogisticCurves
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.datacenter.state import DatacenterState
from g2gsim.gym.actions import Actions
from g2gsim.gym.config import ObservationConfig, RewardConfig
from g2gsim.gym.episodes import ControlClock, agent_site, penalty_trace, run_with, start_stepped, without_site_control
from g2gsim.gym.observation import ModelTable, Observer
from g2gsim.gym.reward import Reward
from g2gsim.gym.sources import Episode, ScenarioLike, episode_source
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.simulation import RunHandle
from g2gsim.kernel.time import TimeLike
from g2gsim.metrics import RunMetrics
from g2gsim.scenarios.build import BuiltScenario, build_simulation
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.runner import summarize

__all__ = ["G2GEnv"]

M = TypeVar("M", bound=BaseModel)
AGENT_LINK = "agent"


def _config(kind: type[M], value: M | Mapping[str, Any] | None, what: str) -> M:
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind.model_validate(dict(value))
    raise TypeError(f"{what} must be a {kind.__name__} or a mapping of its fields, got {type(value).__name__}")


@dataclass(frozen=True)
class _Layout:
    """What fixes the spaces: the voltage index and the agent site's models."""

    entries: tuple[tuple[str, int], ...]
    models: ModelTable

    @classmethod
    def of(cls, built: BuiltScenario, site: str) -> _Layout:
        specs = built.sites[site].specs
        entries = {e.model: e for e in next(s for s in built.scenario.sites if s.name == site).models}
        most = [max([entries[label].replicas, *(r.target for r in entries[label].ramps)], default=1) for label in specs]
        models = ModelTable(
            labels=tuple(specs),
            feasible=tuple(tuple(sorted(spec.feasible_batch_sizes or spec.batch_sizes)) for spec in specs.values()),
            deadline_s=np.array([float(spec.itl_deadline_s) for spec in specs.values()]),
            max_replicas=np.maximum(np.array(most, dtype=float), 1.0),
        )
        return cls(built.grid.voltage_index.entries, models)


class G2GEnv(gymnasium.Env[np.ndarray, Any]):
    """Batch-size control of one site as a Gymnasium environment.

    Args:
        scenario: A preset name or scenario file, a library folder, a :class:`Scenario`, a
            :class:`~g2gsim.gym.family.ScenarioFamily` (a member drawn per episode) or a
            :class:`~g2gsim.gym.library.ScenarioLibrary` (an entry of `split` per episode).
        site: The site the agent controls (default: the scenario's only site).
        control_period_s: Time between two actions, s.
        horizon_s: Episode length, s (default: the scenario's horizon).
        observation: :class:`~g2gsim.gym.config.ObservationConfig` (or its fields).
        reward: :class:`~g2gsim.gym.config.RewardConfig` (or its fields).
        action_mode: "delta" or "coupled" (:mod:`g2gsim.gym.actions`).
        command_link: Delay, jitter and loss of the agent's commands (default instant).
        split: The library split episodes come from.
        vary_seed: Draw each episode's scenario seed from the environment's generator (default:
            for a single scenario; family members and library entries keep their own).
        keep_controllers: Controllers of the site to keep running beside the agent.

    The spaces are known at construction (the grid's voltage index is read before any run);
    :attr:`observation_names` names each observation entry. ``info`` holds the time, the
    reward's terms and the voltage summary over every bus-phase. After an episode,
    :meth:`episode_result` and :meth:`episode_metrics` give its tables and headline metrics.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (Gymnasium's class attribute)

    def __init__(
        self,
        scenario: ScenarioLike = "ieee13_baseline_notap",
        *,
        site: str | None = None,
        control_period_s: TimeLike = 1.0,
        horizon_s: TimeLike | None = None,
        observation: ObservationConfig | Mapping[str, Any] | None = None,
        reward: RewardConfig | Mapping[str, Any] | None = None,
        action_mode: str = "delta",
        command_link: LinkSpec | None = None,
        split: str | None = "train",
        vary_seed: bool | None = None,
        keep_controllers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._source = episode_source(scenario, split=split)
        template = self._source.template()
        self.site = agent_site(template, site)
        self.clock = ControlClock.of(control_period_s, template.horizon_s if horizon_s is None else horizon_s)
        self.observation_config = _config(ObservationConfig, observation, "observation")
        self.reward_config = _config(RewardConfig, reward, "reward")
        self.command_link = command_link or INSTANT
        self.vary_seed = (not self._source.varies) if vary_seed is None else bool(vary_seed)
        self.keep_controllers = tuple(keep_controllers)
        built = build_simulation(self._prepared(template))
        self._layout = _Layout.of(built, self.site)
        models = self._layout.models
        limits = {"v_min": template.v_min, "v_max": template.v_max}
        self._observer = Observer(self.observation_config, built.grid.voltage_index, models, **limits)
        self._actions = Actions(action_mode, models.feasible)
        self._reward = Reward(
            self.reward_config, models, self._actions.log2, throughput=self._throughput(built), **limits
        )
        self._same_limits = (self._observer.v_min, self._observer.v_max) == (self._reward.v_min, self._reward.v_max)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self._observer.size,), np.float32)
        self.action_space = self._actions.space
        self.observation_names: tuple[str, ...] = self._observer.names
        self.models: tuple[str, ...] = models.labels
        self._no_change = np.zeros(len(models.labels))
        self._handle: RunHandle | None = None
        self._built: BuiltScenario | None = None
        self._ofo_cache: dict[str, np.ndarray] = {}

    # -- set-up ------------------------------------------------------------------------------
    def _prepared(self, scenario: Scenario) -> Scenario:
        if scenario.horizon_s != self.clock.horizon:
            scenario = scenario.with_overrides(horizon_s=self.clock.horizon)
        return without_site_control(scenario, self.site, self.keep_controllers)

    def _throughput(self, built: BuiltScenario) -> LogisticCurves | None:
        if self.reward_config.throughput != "fit":
            return None
        site = built.sites[self.site]
        return LogisticCurves([site.data.logistic_fits(spec).throughput for spec in site.specs.values()])

    def _check_layout(self, built: BuiltScenario) -> None:
        found = _Layout.of(built, self.site)
        if found.entries != self._layout.entries:
            raise ScenarioError(
                f"scenario {built.scenario.name!r}: its voltage index differs from the environment's "
                f"({len(found.entries)} vs {len(self._layout.entries)} entries); every episode needs the same feeder layout"
            )
        if (found.models.labels, found.models.feasible) != (self._layout.models.labels, self._layout.models.feasible):
            raise ScenarioError(
                f"scenario {built.scenario.name!r}: site {self.site!r} serves {list(found.models.labels)} "
                f"(feasible {found.models.feasible}); the environment was laid out for "
                f"{list(self._layout.models.labels)} (feasible {self._layout.models.feasible})"
            )

    def _ofo_penalty(self, episode: Episode, scenario: Scenario) -> np.ndarray | None:
        """The OFO run's penalty per control instant, when the reward is relative to it."""
        if not self.reward_config.relative_to_ofo:
            return None
        reward = self._reward
        stored = episode.ofo_penalty
        same_limits = (reward.v_min, reward.v_max) == (scenario.v_min, scenario.v_max)
        if stored is not None and len(stored) == self.clock.instants and same_limits:
            return stored
        key = scenario.with_overrides(horizon_s=self.clock.horizon).to_toml()
        if key not in self._ofo_cache:
            ofo = run_with(scenario, "ofo", self.site)
            self._ofo_cache[key] = penalty_trace(ofo, self.clock, v_min=reward.v_min, v_max=reward.v_max).penalty
        return self._ofo_cache[key]

    # -- the Gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (``options={"scenario": Scenario}`` runs that scenario as given)."""
        super().reset(seed=seed)
        self._end_episode()
        forced = (options or {}).get("scenario")
        episode = Episode(forced) if isinstance(forced, Scenario) else self._source.draw(self.np_random)
        original = episode.scenario
        if self.vary_seed and forced is None:
            original = original.with_overrides(seed=int(self.np_random.integers(2**31)))
        built = build_simulation(self._prepared(original))
        self._check_layout(built)
        self._ofo = self._ofo_penalty(episode, original)
        simulation, handle = start_stepped(built, self.clock, {AGENT_LINK: self.command_link})
        self._built, self._handle = built, handle
        self._period_ticks = simulation.clock.ticks(self.clock.period)
        self._grid_box = handle.mailbox(built.scenario.grid.name, "state")
        self._site_box = handle.mailbox(self.site, "state")
        self._instant = 0
        handle.step_until(self.clock.period)
        site = self._site_state()
        self._levels = self._actions.levels_of(list(site.batch) if site is not None else [128.0] * len(self.models))
        self._reward.reset()
        voltages = np.asarray(self._grid_box.value.voltages, dtype=float)
        observation = self._observer.observe(voltages, site, self._no_change, self._elapsed())
        return observation, {"time_s": handle.now_s, "scenario": built.scenario.name}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the action's batch sizes, advance one control period, observe and score."""
        handle = self._handle
        if handle is None or handle.done or handle.closed:
            raise RuntimeError("the episode is over (or not started): call reset()")
        previous = self._levels
        levels = self._actions.decode(action, previous)
        moved = levels != previous
        change = self._no_change
        if moved.any():
            sizes = self._actions.batches(levels)
            batch = {label: sizes[m] for m, label in enumerate(self.models) if moved[m]}
            handle.send(SetBatchSize(target=self.site, batch=batch), via=AGENT_LINK)
            change = self._actions.log2_at(levels) - self._actions.log2_at(previous)
            self._levels = levels
        handle.step(self._period_ticks)
        self._instant += 1
        voltages = np.asarray(self._grid_box.value.voltages, dtype=float)
        site = self._site_state()
        baseline = None if self._ofo is None else float(self._ofo[self._instant])
        check = self._reward.check(voltages)
        reward, terms = self._reward(check, site, levels, previous, baseline)
        shared = check if self._same_limits else None
        observation = self._observer.observe(voltages, site, change, self._elapsed(), shared)
        info = {
            "time_s": handle.now_s,
            "reward_terms": terms,
            "voltage": {"under": check.under, "over": check.over, "violation_fraction": check.outside},
        }
        return observation, reward, False, handle.done, info

    def close(self) -> None:
        """End the running episode, if any."""
        self._end_episode()
        super().close()

    # -- episodes ----------------------------------------------------------------------------
    @property
    def batches(self) -> dict[str, int]:
        """The batch sizes the agent has commanded, by model."""
        return dict(zip(self.models, self._actions.batches(self._levels), strict=True))

    @property
    def run(self) -> RunHandle | None:
        """The current episode's run (its mailboxes, the commands sent so far), or None before
        the first reset."""
        return self._handle

    @property
    def scenario(self) -> Scenario | None:
        """The scenario of the current episode (as run: without the agent site's controllers)."""
        return None if self._built is None else self._built.scenario

    def episode_result(self) -> RunResult:
        """The tables of the finished episode (after the step that truncated it)."""
        if self._handle is None or not self._handle.done:
            raise RuntimeError("no finished episode: step until truncated first")
        return self._handle.result()

    def episode_metrics(self) -> RunMetrics:
        """Headline metrics of the finished episode (those of ``g2gsim run``)."""
        assert self._built is not None
        result = self.episode_result()
        return summarize(self._built, result, float(result.meta.get("wall_s", 0.0)))

    def _end_episode(self) -> None:
        if self._handle is not None and not self._handle.closed and not self._handle.done:
            self._handle.close()

    def _site_state(self) -> DatacenterState | None:
        return self._site_box.get()

    def _elapsed(self) -> float:
        return self._instant / self.clock.steps

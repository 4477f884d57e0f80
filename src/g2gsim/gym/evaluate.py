"""Compare controllers of one site on held-out scenarios: one table and one plot.

The reference controllers are run as scenario controllers (``"baseline"``: none on the site,
``"rule_based"``, ``"ofo"``: the scenario's own OFO section for the site if it has one); a
policy is driven through :class:`~g2gsim.gym.env.G2GEnv` on the same scenario and seed. A
policy is a callable ``policy(observation) -> action`` or an object with Stable-Baselines3's
``predict(observation, deterministic=True) -> (action, state)``; an object with a
``from_env(env)`` method is first built for the evaluation's environment (to read its
``observation_names`` or spaces).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.gym.config import ObservationConfig, RewardConfig
from g2gsim.gym.env import G2GEnv
from g2gsim.gym.episodes import REFERENCE_CONTROLLERS, agent_site, run_with
from g2gsim.gym.library import ScenarioLibrary
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.time import TimeLike
from g2gsim.plots.helpers import pyplot, write_figure
from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.runner import run_scenario

__all__ = ["METRIC_COLUMNS", "Evaluation", "Policy", "act", "evaluate"]

#: A policy: a callable observation -> action, or an object with ``predict`` (Stable-Baselines3).
Policy = Callable[[np.ndarray], Any] | Any

#: The per-run columns of an evaluation table (besides scenario and controller).
METRIC_COLUMNS = (
    "violation_time_s",
    "integral_violation_pu_s",
    "worst_vmin",
    "worst_vmax",
    "mean_throughput_tps",
    "itl_deadline_fraction",
    "batch_changes",
    "return",
)
_PLOTTED = (
    ("violation_time_s", "violation time (s)"),
    ("integral_violation_pu_s", "violation integral (pu s)"),
    ("mean_throughput_tps", "mean throughput (tokens/s)"),
    ("batch_changes", "batch changes"),
)


def act(policy: Policy, observation: np.ndarray) -> Any:
    """The action of a policy for one observation."""
    predict = getattr(policy, "predict", None)
    if callable(predict):
        return predict(observation, deterministic=True)[0]
    if callable(policy):
        return policy(observation)
    raise TypeError(f"a policy is a callable or has predict(); got {type(policy).__name__}")


@dataclass
class Evaluation:
    """One row per (scenario, controller) with the columns of :data:`METRIC_COLUMNS`."""

    table: pd.DataFrame
    controllers: tuple[str, ...]

    def summary(self) -> pd.DataFrame:
        """Mean of each metric per controller, in the order they were evaluated."""
        means = self.table.groupby("controller", sort=False)[list(METRIC_COLUMNS)].mean()
        return means.reindex(list(self.controllers))

    def plot(self, path: str | Path) -> Path:
        """Bars of the mean violation time, violation integral, throughput and batch changes."""
        plt = pyplot()
        summary = self.summary()
        fig, axes = plt.subplots(1, len(_PLOTTED), figsize=(3.2 * len(_PLOTTED), 3.4), constrained_layout=True)
        for ax, (column, label) in zip(axes, _PLOTTED, strict=True):
            ax.bar(range(len(summary)), summary[column].to_numpy(dtype=float), color="C0")
            ax.set_xticks(range(len(summary)), summary.index, rotation=30, ha="right")
            ax.set_title(label, fontsize=9)
        n = self.table["scenario"].nunique()
        return write_figure(fig, Path(path), f"means over {n} held-out scenario(s)")


def _scenarios(scenarios: Any, split: str | None, n: int | None) -> tuple[list[Scenario], str | None]:
    """The scenarios to evaluate, and the site a library was screened for."""
    site = None
    if isinstance(scenarios, str | Path) and ScenarioLibrary.is_library(scenarios):
        scenarios = ScenarioLibrary.load(scenarios)
    if isinstance(scenarios, ScenarioLibrary):
        library = scenarios if split is None or scenarios.split_name is not None else scenarios.split(split)
        site, chosen = library.site, library.scenarios()
    elif isinstance(scenarios, Scenario):
        chosen = [scenarios]
    elif isinstance(scenarios, str | Path):
        chosen = [load_scenario(scenarios)]
    else:
        chosen = list(scenarios)
    if not chosen:
        raise ValueError("nothing to evaluate: no scenarios")
    return (chosen if n is None else chosen[:n]), site


def _batch_changes(result: RunResult, site: str) -> int:
    state = result.table(f"{site}/state")
    batches = state[[c for c in state.columns if c.endswith(".batch")]].to_numpy()
    return int(np.count_nonzero(np.diff(batches, axis=0)))


def _row(
    scenario: Scenario, controller: str, metrics: Mapping[str, Any], result: RunResult, site: str
) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": scenario.name, "controller": controller}
    for column in METRIC_COLUMNS[:6]:
        value = metrics.get(column)
        row[column] = np.nan if value is None else float(value)
    row["batch_changes"] = _batch_changes(result, site)
    row["return"] = np.nan
    return row


def _for_env(policy: Policy, env: G2GEnv) -> Policy:
    """The policy itself, or what its ``from_env(env)`` builds."""
    build = getattr(policy, "from_env", None)
    return build(env) if callable(build) else policy


def _run_policy(env: G2GEnv, policy: Policy, scenario: Scenario) -> tuple[dict[str, Any], RunResult, float]:
    observation, _ = env.reset(options={"scenario": scenario})
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(act(policy, observation))
        total += reward
        done = terminated or truncated
    return dict(env.episode_metrics()), env.episode_result(), total


def evaluate(
    scenarios: ScenarioLibrary | Scenario | str | Path | Sequence[Scenario],
    policies: Mapping[str, Policy] | None = None,
    *,
    references: Sequence[str] = REFERENCE_CONTROLLERS,
    site: str | None = None,
    split: str | None = "test",
    n: int | None = None,
    control_period_s: TimeLike = 1.0,
    horizon_s: TimeLike | None = None,
    observation: ObservationConfig | Mapping[str, Any] | None = None,
    reward: RewardConfig | Mapping[str, Any] | None = None,
    action_mode: str = "delta",
    progress: Callable[[str, str], None] | None = None,
) -> Evaluation:
    """Run each reference controller and each policy on each scenario (a library's `split`,
    the first `n`); `progress(scenario, controller)` is called before each run."""
    chosen, library_site = _scenarios(scenarios, split, n)
    if horizon_s is not None:
        chosen = [s.with_overrides(horizon_s=horizon_s) for s in chosen]
    site = agent_site(chosen[0], site if site is not None else library_site)
    envs = {
        name: G2GEnv(
            chosen[0],
            site=site,
            control_period_s=control_period_s,
            observation=observation,
            reward=reward,
            action_mode=action_mode,
            vary_seed=False,
        )
        for name in (policies or {})
    }
    built = {name: _for_env(policy, envs[name]) for name, policy in (policies or {}).items()}
    rows: list[dict[str, Any]] = []
    try:
        for scenario in chosen:
            for reference in references:
                if progress is not None:
                    progress(scenario.name, reference)
                run = run_scenario(run_with(scenario, reference, site), plots=False)
                rows.append(_row(scenario, reference, run.metrics, run.result, site))
            for name, policy in built.items():
                if progress is not None:
                    progress(scenario.name, name)
                metrics, result, total = _run_policy(envs[name], policy, scenario)
                rows.append({**_row(scenario, name, metrics, result, site), "return": total})
    finally:
        for env in envs.values():
            env.close()
    return Evaluation(
        pd.DataFrame(rows, columns=["scenario", "controller", *METRIC_COLUMNS]), (*references, *(policies or {}))
    )

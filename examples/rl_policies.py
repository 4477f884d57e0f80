"""A random and a scripted policy for one episode of the Gymnasium environment, and their returns.

Run: ``python examples/rl_policies.py [--scenario ieee13_baseline_notap] [--horizon-s 600]
[--seed 0]`` (needs the ``rl`` extra). The scripted policy lowers every batch one size while
some bus is below v_min, raises them while some bus is above v_max, and holds otherwise; it
reads the violation summary by name from ``env.observation_names``. The README shows how a
Stable-Baselines3 agent takes the place of these policies.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from g2gsim.gym import G2GEnv


class VoltageRule:
    """Down one batch size on undervoltage, up one on overvoltage, else hold (delta actions)."""

    def __init__(self, names: tuple[str, ...], n_models: int, deadband: float = 1e-4) -> None:
        self.under = names.index("under")
        self.over = names.index("over")
        self.n_models = n_models
        self.deadband = deadband

    @classmethod
    def from_env(cls, env: G2GEnv) -> VoltageRule:
        """The rule for an environment's observation layout."""
        return cls(env.observation_names, len(env.models))

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        if observation[self.under] > self.deadband:
            choice = 0
        elif observation[self.over] > self.deadband:
            choice = 2
        else:
            choice = 1
        return np.full(self.n_models, choice)


def episode(env: G2GEnv, policy: Callable[[np.ndarray], Any], seed: int) -> tuple[float, dict[str, Any]]:
    """One episode: the return and the run's headline metrics."""
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        total += reward
        done = terminated or truncated
    return total, dict(env.episode_metrics())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="ieee13_baseline_notap")
    parser.add_argument("--horizon-s", type=float, default=None, help="episode length, s (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = G2GEnv(args.scenario, horizon_s=args.horizon_s)
    env.action_space.seed(args.seed)
    policies: dict[str, Callable[[np.ndarray], Any]] = {
        "random": lambda observation: env.action_space.sample(),
        "scripted": VoltageRule.from_env(env),
    }
    print(f"{args.scenario}, {float(env.clock.horizon):g} s episodes, seed {args.seed}")
    for name, policy in policies.items():
        total, metrics = episode(env, policy, args.seed)
        print(
            f"{name:>8}: return {total:10.3f}   violation {metrics['violation_time_s']:7.1f} s   "
            f"integral {metrics['integral_violation_pu_s']:.4f} pu*s   "
            f"throughput {metrics['mean_throughput_tps'] / 1e6:.2f} M tokens/s"
        )
    env.close()


if __name__ == "__main__":
    main()

"""Learned control: a Gymnasium environment, scenario families and libraries, and evaluation.

Needs the optional extra ``rl`` (``pip install 'g2gsim[rl]'``, the ``gymnasium`` package).

- :class:`G2GEnv`: one agent sets one site's batch sizes every control period
  (:mod:`~g2gsim.gym.env`), with :class:`ObservationConfig` and :class:`RewardConfig`
  (:mod:`~g2gsim.gym.config`), "delta" or "coupled" actions (:mod:`~g2gsim.gym.actions`);
  registered as ``"g2gsim/G2G-v0"``; :func:`vector_env` runs several in one process;
- :class:`ScenarioFamily`: what varies around a base scenario, drawn by seed
  (:mod:`~g2gsim.gym.family`);
- :func:`build_library`, :class:`ScenarioLibrary`: screened, saved, split family members
  (:mod:`~g2gsim.gym.library`);
- :func:`evaluate`: baseline, rule-based, OFO and any policy on held-out scenarios, one table
  and one plot (:mod:`~g2gsim.gym.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import gymnasium
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("g2gsim.gym needs gymnasium: pip install 'g2gsim[rl]'") from exc

from g2gsim.gym.config import ObservationConfig, RewardConfig
from g2gsim.gym.env import G2GEnv
from g2gsim.gym.evaluate import Evaluation, evaluate
from g2gsim.gym.family import ProfileVariation, RampVariation, ScenarioFamily, TapVariation
from g2gsim.gym.library import LibraryEntry, ScenarioLibrary, Screening, build_library, screen

__all__ = [
    "ENV_ID",
    "Evaluation",
    "G2GEnv",
    "LibraryEntry",
    "ObservationConfig",
    "ProfileVariation",
    "RampVariation",
    "RewardConfig",
    "ScenarioFamily",
    "ScenarioLibrary",
    "Screening",
    "TapVariation",
    "build_library",
    "evaluate",
    "screen",
    "vector_env",
]

#: The id ``gymnasium.make`` knows the environment by.
ENV_ID = "g2gsim/G2G-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="g2gsim.gym.env:G2GEnv")


def vector_env(n: int, **kwargs: Any) -> gymnasium.vector.SyncVectorEnv:
    """`n` environments with the same arguments in this process, stepped as one vector env
    (each has its own run and its own OpenDSS context)."""
    if n < 1:
        raise ValueError(f"a vector env needs n >= 1 environments, got {n}")
    makers: list[Callable[[], gymnasium.Env[Any, Any]]] = [lambda: G2GEnv(**kwargs) for _ in range(n)]
    return gymnasium.vector.SyncVectorEnv(makers)

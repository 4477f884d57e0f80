"""What a datacenter publishes at each step (mailbox ``state``): its typed data contract; and
:func:`forward_fill`, which turns the changes a site logged into its table's per-step columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class DatacenterState:
    """One datacenter sample. Arrays are indexed like `models` (sorted labels) and phases a, b, c.

    Arrays are owned by the state (never mutated after publishing), so a consumer may keep it.
    """

    site: str
    time_s: float
    models: tuple[str, ...]
    power_w: np.ndarray  # (3,) site power per phase, W
    model_power_w: np.ndarray  # (n_models,) inference power per model, W
    batch: np.ndarray  # (n_models,) effective batch size per model
    replicas: np.ndarray  # (n_models,) active replicas per model
    itl_s: np.ndarray  # (n_models,) observed fleet-average ITL, s (NaN when unknown)
    phase_share: np.ndarray  # (n_models, 3) fraction of each model's servers on each phase
    power_cap_w: np.ndarray | None = None  # (n_models,) GPU power cap, W per GPU (NaN: none)
    ttft_s: np.ndarray | None = None  # (n_models,) observed time to first token, s (None: not measured)

    @property
    def total_power_w(self) -> float:
        """Three-phase total power, W."""
        return float(self.power_w.sum())

    def index(self, model: str) -> int:
        """Position of a model label, with an error naming the known labels."""
        try:
            return self.models.index(model)
        except ValueError:
            raise KeyError(f"site {self.site!r} runs no model {model!r}; models: {list(self.models)}") from None

    def batch_of(self, model: str) -> int:
        """Current batch size of a model."""
        return int(self.batch[self.index(model)])

    def replicas_of(self, model: str) -> int:
        """Active replicas of a model."""
        return int(self.replicas[self.index(model)])

    def itl_of(self, model: str) -> float:
        """Observed ITL of a model, s."""
        return float(self.itl_s[self.index(model)])

    def ttft_of(self, model: str) -> float:
        """Observed time to first token of a model, s (NaN when the site does not measure it)."""
        index = self.index(model)
        return math.nan if self.ttft_s is None else float(self.ttft_s[index])


def forward_fill(
    log: Sequence[tuple[int, np.ndarray]], rows: int, width: int, dtype: type = np.int64, fill: float = 0
) -> np.ndarray:
    """Expand a change log [(first step, values), ...] into one row per step (`fill` before the
    first entry): the per-step columns of a site's state table from the changes it logged."""
    if rows == 0 or not log:
        return np.full((rows, width), fill, dtype=dtype)
    starts = np.array([k for k, _ in log] + [rows])
    values: np.ndarray = np.stack([v for _, v in log]).astype(dtype)
    return np.repeat(values, np.diff(starts), axis=0)[:rows]

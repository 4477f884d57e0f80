"""Actions: how an agent's choice moves each model's batch size along its feasible sizes.

- ``"delta"``: one choice per model among down one size, hold, up one size
  (``MultiDiscrete([3] * n_models)``: 0, 1, 2);
- ``"coupled"``: one choice for all models, a shift of -K..K sizes (``Discrete(2K + 1)``,
  K = the smallest number of feasible sizes minus one; action K holds).

Batches are tracked as levels (positions in each model's sorted feasible sizes) and clipped
at both ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

__all__ = ["ActionMode", "Actions"]

ActionMode = Literal["delta", "coupled"]


class Actions:
    """The action space of a mode and the decoding of an action into new levels."""

    def __init__(self, mode: str, feasible: Sequence[Sequence[int]]) -> None:
        if mode not in ("delta", "coupled"):
            raise ValueError(f'action_mode must be "delta" or "coupled", got {mode!r}')
        self.mode = mode
        self.sizes = [np.asarray(sorted(f), dtype=np.int64) for f in feasible]
        self._top = np.array([len(s) - 1 for s in self.sizes])
        self._shift = int(self._top.min())
        self._rows = np.arange(len(self.sizes))
        #: log2 of each model's feasible sizes, one row per model (NaN past its largest).
        self.log2 = np.full((len(self.sizes), int(self._top.max()) + 1), np.nan)
        for m, sizes in enumerate(self.sizes):
            self.log2[m, : len(sizes)] = np.log2(sizes)
        self.space: spaces.Space[Any]
        if mode == "delta":
            self.space = spaces.MultiDiscrete([3] * len(self.sizes))
        else:
            self.space = spaces.Discrete(2 * self._shift + 1)

    def levels_of(self, batch: Sequence[float]) -> np.ndarray:
        """The level of the feasible size nearest (in log2) to each given batch."""
        return np.array(
            [
                int(np.argmin(np.abs(np.log2(s) - np.log2(max(float(b), 1.0)))))
                for s, b in zip(self.sizes, batch, strict=True)
            ]
        )

    def decode(self, action: Any, levels: np.ndarray) -> np.ndarray:
        """New levels after `action` from `levels`."""
        if self.mode == "delta":
            step = np.asarray(action, dtype=np.int64).reshape(-1) - 1
            if step.shape != levels.shape:
                raise ValueError(f"a delta action has one entry per model ({len(levels)}), got {action!r}")
            moved = levels + step
        else:
            moved = levels + (int(np.asarray(action).reshape(-1)[0]) - self._shift)
        return np.minimum(np.maximum(moved, 0), self._top)

    def log2_at(self, levels: np.ndarray) -> np.ndarray:
        """log2 of each model's batch size at its level."""
        return self.log2[self._rows, levels]

    def batches(self, levels: np.ndarray) -> list[int]:
        """The batch size of each model at its level."""
        return [int(s[level]) for s, level in zip(self.sizes, levels, strict=True)]

"""Logistic fits of power, latency and throughput against log2(batch) (SPEC 5.2).

OFO differentiates these curves. They come from per-batch medians of benchmark runs (or of a
cache's figures) through :class:`mlenergy.data.modeling.LogisticModel`; a fit whose shape
looks wrong (too flat or too steep, negative amplitude or baseline, non-monotone data) is
kept but flagged with a warning, because a controller built on it will misbehave.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlenergy.data.modeling import LogisticModel

__all__ = ["METRICS", "FitWarning", "LogisticFits", "fit_logistic", "fit_logistic_fits"]

#: The three curves OFO needs, in a fixed order.
METRICS: tuple[str, str, str] = ("power", "latency", "throughput")


class FitWarning(UserWarning):
    """A logistic fit whose parameters or data look implausible."""


@dataclass(frozen=True)
class LogisticFits:
    """Power (W per replica), ITL (s) and throughput (tokens/s per replica) of one model."""

    power: LogisticModel
    latency: LogisticModel
    throughput: LogisticModel

    def __getitem__(self, metric: str) -> LogisticModel:
        if metric not in METRICS:
            raise KeyError(f"unknown logistic metric {metric!r}; known: {list(METRICS)}")
        return getattr(self, metric)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{metric: {L, x0, k, b0}}``."""
        return {metric: self[metric].to_dict() for metric in METRICS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "logistic fits") -> LogisticFits:
        """Read ``{metric: {L, x0, k, b0}}``; an absent metric or parameter names the place."""
        models = {}
        for metric in METRICS:
            if metric not in data:
                raise ValueError(f"{where}: no {metric!r} fit; found {sorted(data)}")
            try:
                models[metric] = LogisticModel.from_dict(data[metric])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {metric} fit is malformed ({exc}); it needs L, x0, k, b0") from None
        return cls(**models)


def fit_logistic(batches: Sequence[int], values: Sequence[float], *, what: str) -> LogisticModel:
    """Fit y = b0 + L sigmoid(k (log2 b - x0)) and warn when the result looks wrong."""
    x = np.log2(np.asarray(batches, dtype=float))
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    with np.errstate(over="ignore"):  # the library's coarse grid overflows exp() harmlessly
        model = LogisticModel.fit(x[keep], y[keep])
    problems = fit_problems(model, y[keep])
    if problems:
        warnings.warn(f"{what}: {'; '.join(problems)}", FitWarning, stacklevel=2)
    return model


def fit_problems(model: LogisticModel, y: np.ndarray) -> list[str]:
    """Reasons a fit looks implausible (empty when it looks fine)."""
    problems = []
    if not 0.3 <= model.k <= 3.0:
        problems.append(f"steepness k = {model.k:.3g} outside [0.3, 3]")
    if model.L < 0:
        problems.append(f"amplitude L = {model.L:.3g} < 0")
    if model.b0 < 0:
        problems.append(f"baseline b0 = {model.b0:.3g} < 0")
    steps = np.diff(y)
    if steps.size and np.any(steps > 0) and np.any(steps < 0):
        problems.append("per-batch values are not monotone")
    if not all(math.isfinite(v) for v in (model.L, model.x0, model.k, model.b0)):
        problems.append("non-finite parameters")
    return problems


def fit_logistic_fits(
    label: str,
    batches: Sequence[int],
    power_w_per_replica: Sequence[float],
    itl_s: Sequence[float],
    throughput_tps: Sequence[float],
    *,
    exclude: Sequence[int] = (),
) -> LogisticFits:
    """The three fits of one model from per-batch figures, skipping `exclude` batch sizes."""
    keep = [i for i, b in enumerate(batches) if b not in set(exclude)]
    pick = lambda seq: [seq[i] for i in keep]  # noqa: E731
    chosen = pick(list(batches))
    return LogisticFits(
        power=fit_logistic(chosen, pick(list(power_w_per_replica)), what=f"{label} power fit"),
        latency=fit_logistic(chosen, pick(list(itl_s)), what=f"{label} latency fit"),
        throughput=fit_logistic(chosen, pick(list(throughput_tps)), what=f"{label} throughput fit"),
    )

"""Single-GPU training power traces: the synthetic generator and CSV files (SPEC 8.4).

A training job draws power in long high plateaus (compute) broken by shorter low ones
(communication, checkpoints) and brief dips. The generator reproduces the reference's
procedure and random-draw order, so the same seed yields the same trace as OpenG2G's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from g2gsim.data.files import read_csv_file

__all__ = [
    "TrainingTrace",
    "TrainingTraceParams",
    "load_training_trace",
    "save_training_trace",
    "synthetic_training_trace",
]

TIME_COLUMN = "t_s"
POWER_COLUMN = "power_W"


@dataclass(frozen=True, eq=False)
class TrainingTrace:
    """Power (W) of one training GPU at increasing times t_s (>= 2 samples)."""

    t_s: np.ndarray
    power_w: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.t_s, dtype=float)
        p = np.asarray(self.power_w, dtype=float)
        if t.ndim != 1 or t.shape != p.shape:
            raise ValueError(
                f"training trace: t_s and power_w must be 1-D of equal length, got {t.shape} and {p.shape}"
            )
        if t.size < 2:
            raise ValueError(f"training trace has {t.size} samples; at least 2 are needed")
        if np.any(np.diff(t) <= 0):
            raise ValueError("training trace: t_s must be strictly increasing")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
            raise ValueError("training trace contains non-finite values")
        object.__setattr__(self, "t_s", t)
        object.__setattr__(self, "power_w", p)


def _range(lo_hi: tuple[float, float]) -> tuple[float, float]:
    lo, hi = lo_hi
    if not 0 <= lo <= hi:
        raise ValueError(f"range must satisfy 0 <= lo <= hi, got ({lo}, {hi})")
    return lo_hi


class TrainingTraceParams(BaseModel):
    """Parameters of the synthetic training trace (defaults of SPEC 8.4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: float = Field(default=1000.0, gt=0)
    dt_s: float = Field(default=0.1, gt=0)
    seed: int = 2
    high_w: float = Field(default=225.0, ge=0)
    low_w: float = Field(default=175.0, ge=0)
    high_sigma_w: float = Field(default=50.0, ge=0)
    low_sigma_w: float = Field(default=50.0, ge=0)
    high_duration_s: tuple[float, float] = (35.0, 40.0)
    low_duration_s: tuple[float, float] = (10.0, 15.0)
    dips_per_s: float = Field(default=0.010, ge=0)
    dip_depth_w: tuple[float, float] = (120.0, 125.0)
    dip_duration_s: tuple[float, float] = (0.06, 0.14)
    smoothing_s: float = Field(default=0.30, ge=0)
    ramp_s: float = Field(default=18.0, ge=0)
    ramp_from_w: float = Field(default=50.0, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> TrainingTraceParams:
        for name in ("high_duration_s", "low_duration_s", "dip_depth_w", "dip_duration_s"):
            try:
                _range(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if self.high_duration_s[1] <= 0 or self.low_duration_s[1] <= 0:
            raise ValueError("plateau durations must be positive")
        if self.high_w <= self.low_w:
            raise ValueError(f"high_w ({self.high_w}) must exceed low_w ({self.low_w})")
        return self


def _plateaus(rng: np.random.Generator, n: int, p: TrainingTraceParams) -> np.ndarray:
    """High and low levels alternating (starting high) with uniformly drawn durations."""
    levels = np.empty(n)
    start, high = 0, True
    while start < n:
        span = rng.uniform(*(p.high_duration_s if high else p.low_duration_s))
        stop = min(n, start + int(np.round(span / p.dt_s)))
        levels[start:stop] = p.high_w if high else p.low_w
        start, high = stop, not high
    return levels


def _add_dips(rng: np.random.Generator, power: np.ndarray, p: TrainingTraceParams) -> None:
    """Subtract a Poisson number of short uniform dips in place, floored at 0 W."""
    n = power.size
    for _ in range(rng.poisson(p.dips_per_s * p.duration_s)):
        first = int(rng.uniform(0.0, p.duration_s) / p.dt_s)
        last = min(n, first + int(np.round(rng.uniform(*p.dip_duration_s) / p.dt_s)))
        if last <= first:
            continue
        power[first:last] = np.maximum(power[first:last] - rng.uniform(*p.dip_depth_w), 0.0)


def synthetic_training_trace(seed: int | None = None, params: TrainingTraceParams | None = None) -> TrainingTrace:
    """A synthetic single-GPU training trace (SPEC 8.4); `seed` overrides ``params.seed``."""
    p = params or TrainingTraceParams()
    if seed is not None:
        p = p.model_copy(update={"seed": seed})
    rng = np.random.default_rng(p.seed)
    t = np.arange(0.0, p.duration_s, p.dt_s)
    levels = _plateaus(rng, t.size, p)
    high = levels > (p.high_w + p.low_w) / 2
    noise = np.zeros(t.size)
    noise[high] = rng.normal(0.0, p.high_sigma_w, size=int(high.sum()))
    noise[~high] = rng.normal(0.0, p.low_sigma_w, size=int((~high).sum()))
    power = levels + noise
    window = max(1, int(np.round(p.smoothing_s / p.dt_s)))
    if window > 1:
        power = np.convolve(power, np.full(window, 1.0 / window), mode="same")
    _add_dips(rng, power, p)
    if p.ramp_s > 0:
        k = min(t.size, int(np.round(p.ramp_s / p.dt_s)))
        power[:k] = np.minimum(power[:k], np.linspace(p.ramp_from_w, p.high_w, k))
    return TrainingTrace(t, power)


def load_training_trace(path: str | Path) -> TrainingTrace:
    """Read a CSV with columns ``t_s`` and ``power_W`` (negative power clipped to 0)."""
    path = Path(path)
    columns = (TIME_COLUMN, POWER_COLUMN)
    frame = read_csv_file(path, columns, numeric=columns, what="training trace file")
    frame = frame.sort_values(TIME_COLUMN, kind="stable")
    return TrainingTrace(frame[TIME_COLUMN].to_numpy(float), np.clip(frame[POWER_COLUMN].to_numpy(float), 0.0, None))


def save_training_trace(trace: TrainingTrace, path: str | Path) -> Path:
    """Write a trace as CSV (``t_s``, ``power_W``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({TIME_COLUMN: trace.t_s, POWER_COLUMN: trace.power_w}).to_csv(path, index=False)
    return path

"""Measured power traces and the per-GPU templates a run replays (SPEC 2.6).

A trace is a benchmark's total power over `measured_gpus` GPUs against time. A template is
that trace turned into per-GPU watts on one run's step grid, repeated periodically over the
horizon. Templates remember their step so one built for 0.1 s is never replayed at 0.5 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from g2gsim.kernel.time import TimeLike, as_period, as_seconds

__all__ = ["MIN_TRACE_SAMPLES", "PowerTemplate", "PowerTrace", "build_template"]

MIN_TRACE_SAMPLES = 5


@dataclass(frozen=True, eq=False)
class PowerTrace:
    """Total power (W) of `measured_gpus` GPUs at increasing times t_s (>= 5 samples)."""

    t_s: np.ndarray
    power_w: np.ndarray
    measured_gpus: int = 1
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.t_s, dtype=float)
        p = np.asarray(self.power_w, dtype=float)
        where = f" ({self.source})" if self.source else ""
        if t.ndim != 1 or t.shape != p.shape:
            raise ValueError(f"trace{where}: t_s and power_w must be 1-D of equal length, got {t.shape} and {p.shape}")
        if t.size < MIN_TRACE_SAMPLES:
            raise ValueError(f"trace{where} has {t.size} samples; at least {MIN_TRACE_SAMPLES} are needed")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
            raise ValueError(f"trace{where} contains non-finite times or powers")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"trace{where}: t_s must be strictly increasing")
        if self.measured_gpus < 1:
            raise ValueError(f"trace{where}: measured_gpus must be >= 1, got {self.measured_gpus}")
        object.__setattr__(self, "t_s", t)
        object.__setattr__(self, "power_w", p)

    @property
    def per_gpu_w(self) -> np.ndarray:
        """Power per GPU, clipped at 0 W."""
        return np.clip(self.power_w / self.measured_gpus, 0.0, None)


@dataclass(frozen=True, eq=False)
class PowerTemplate:
    """Per-GPU power (W) at t = 0, dt, 2dt, ... of one run; only valid at its own dt."""

    power_w: np.ndarray
    dt: Fraction

    def __post_init__(self) -> None:
        object.__setattr__(self, "power_w", np.asarray(self.power_w, dtype=float))
        object.__setattr__(self, "dt", as_period(self.dt, name="template dt"))

    def __len__(self) -> int:
        return int(self.power_w.size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.power_w if dtype is None else self.power_w.astype(dtype)

    def check_dt(self, dt: TimeLike) -> None:
        """Raise if this template is replayed at a step other than the one it was built for."""
        wanted = as_seconds(dt, name="dt")
        if wanted != self.dt:
            raise ValueError(f"power template built for dt = {self.dt} s cannot be replayed at dt = {wanted} s")


def build_template(
    trace: PowerTrace, dt: TimeLike, horizon_s: TimeLike, *, steady_skip_s: float = 0.0
) -> PowerTemplate:
    """Resample a trace per GPU on the grid 0, dt, ..., ceil(T/dt) dt, periodically (SPEC 2.6).

    The first `steady_skip_s` seconds (warm-up) are dropped when at least five samples remain.
    """
    step = as_period(dt, name="dt")
    horizon = as_seconds(horizon_s, name="horizon_s")
    t = trace.t_s
    p = trace.per_gpu_w
    if steady_skip_s > 0.0:
        first = int(np.searchsorted(t, t[0] + float(steady_skip_s)))
        if first < t.size - MIN_TRACE_SAMPLES:
            t, p = t[first:], p[first:]
    t = t - t[0]
    period = float(t[-1])
    n_points = math.ceil(horizon / step) + 1
    grid = np.arange(n_points, dtype=float) * float(step)
    values = np.interp(np.mod(grid, period), t, p)
    return PowerTemplate(np.clip(values, 0.0, None), step)

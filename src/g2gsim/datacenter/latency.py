"""Observed fleet-average inter-token latency (SPEC 2.4), with the ML.ENERGY library's semantics.

Per (model, batch) the ITL of one replica follows `mlenergy.data.modeling.ITLMixtureModel`.
With n active replicas the observed fleet average is, as in ``ITLMixtureModel.sample_avg``,
the mean of n draws for n <= 30, else Normal(mean, sqrt(var / n)) clipped at 0; NaN when
the model has no replicas or no fit.

Speed without changing the numbers: the mixture moments are computed when an operating
point changes, not per step, and when every model is in the normal regime all models draw
in one vectorised ``rng.normal`` call, which consumes the stream exactly as the library's
per-model calls in label order would. Small fleets (n <= 30) call the library itself.

During a batch ramp a model's effective batch lies between two measured batches lo < hi
with weight w; its replicas then follow the blend (1 - w) ITL_lo + w ITL_hi (a draw comes
from hi with probability w), the same blend as its power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.datacenter.pool import OperatingPoint

__all__ = ["EXACT_THRESHOLD", "FleetLatency", "MeanLatency", "blend_moments", "sample_fleet_itl"]

#: Fleets up to this size average exact draws; larger fleets use the normal approximation.
EXACT_THRESHOLD = 30


def blend_moments(lo: ITLMixtureModel, hi: ITLMixtureModel, weight: float) -> tuple[float, float]:
    """Mean and variance of one replica's ITL under the blend (1 - w) lo + w hi, s and s^2."""
    mean_lo, var_lo = lo.mean_var()
    if weight <= 0.0:
        return mean_lo, var_lo
    mean_hi, var_hi = hi.mean_var()
    mean = (1.0 - weight) * mean_lo + weight * mean_hi
    second = (1.0 - weight) * (var_lo + mean_lo * mean_lo) + weight * (var_hi + mean_hi * mean_hi)
    return mean, max(second - mean * mean, 0.0)


def sample_fleet_itl(
    lo: ITLMixtureModel | None,
    hi: ITLMixtureModel | None,
    weight: float,
    n_replicas: int,
    rng: np.random.Generator,
) -> float:
    """One observed fleet-average ITL, s (exactly ``lo.sample_avg`` when weight is 0)."""
    n = int(n_replicas)
    if n <= 0 or lo is None or (weight > 0.0 and hi is None):
        return math.nan
    if weight <= 0.0 or hi is None:
        return lo.sample_avg(n_replicas=n, rng=rng, exact_threshold=EXACT_THRESHOLD)
    if n <= EXACT_THRESHOLD:
        draws = [(hi if rng.random() < weight else lo).sample_one(rng) for _ in range(n)]
        return float(np.mean(draws))
    mean, var = blend_moments(lo, hi, weight)
    return float(max(float(rng.normal(mean, math.sqrt(max(var / float(n), 0.0)))), 0.0))


class FleetLatency:
    """Per-step observed ITL of every model of a site (sorted label order).

    Call :meth:`set_points` when a batch changes, :meth:`set_replicas` when active replicas
    change, and :meth:`sample` at every step (or :meth:`sample_block` for a block of steps).
    """

    def __init__(self, fits: Sequence[Mapping[int, ITLMixtureModel | None]]) -> None:
        self._fits = [dict(f) for f in fits]
        n_models = len(self._fits)
        self._points: list[OperatingPoint] = []
        self._lo: list[ITLMixtureModel | None] = [None] * n_models
        self._hi: list[ITLMixtureModel | None] = [None] * n_models
        self._mean = np.full(n_models, math.nan)
        self._var = np.full(n_models, math.nan)
        self._replicas = np.zeros(n_models, dtype=np.int64)
        self._vector = True
        self._valid = np.zeros(n_models, dtype=bool)
        self._all_valid = False
        self._mu = np.zeros(0)
        self._sd = np.zeros(0)
        self._mu_one = self._sd_one = math.nan  # the one valid model's, when there is one

    def set_points(self, points: Sequence[OperatingPoint]) -> None:
        """Use these operating points (one per model) from now on."""
        self._points = list(points)
        for m, point in enumerate(self._points):
            lo = self._fits[m].get(point.lo)
            hi = self._fits[m].get(point.hi)
            self._lo[m], self._hi[m] = lo, hi
            if lo is None or (point.weight > 0.0 and hi is None):
                self._mean[m] = self._var[m] = math.nan
            else:
                self._mean[m], self._var[m] = blend_moments(lo, lo if hi is None else hi, point.weight)
        self._refresh()

    def set_replicas(self, replicas: np.ndarray) -> None:
        """Active replicas per model from now on."""
        self._replicas = np.asarray(replicas, dtype=np.int64).copy()
        self._refresh()

    def _refresh(self) -> None:
        """Precompute what the vectorised normal-regime draw needs."""
        n = self._replicas
        valid = (n > 0) & np.isfinite(self._mean)
        self._valid = valid
        self._all_valid = bool(valid.all())
        self._vector = bool(np.all(n[valid] > EXACT_THRESHOLD))
        self._mu = self._mean[valid]
        self._sd = np.sqrt(np.maximum(self._var[valid] / n[valid].astype(float), 0.0))
        if self._mu.size == 1:
            self._mu_one, self._sd_one = float(self._mu[0]), float(self._sd[0])

    def _normal(self, rng: np.random.Generator) -> np.ndarray:
        """max(Normal(mu, sd), 0) per valid model: the same draws and arithmetic as
        ``rng.normal(mu, sd)`` (loc + scale * z), without its per-call argument checks."""
        if self._mu.size == 1:
            return self._normal_one(rng)
        draws = rng.standard_normal(self._mu.size)
        draws *= self._sd
        draws += self._mu
        return np.maximum(draws, 0.0, out=draws)

    def _normal_one(self, rng: np.random.Generator) -> np.ndarray:
        """:meth:`_normal` for one model in Python floats: the same draw and IEEE arithmetic
        (max keeps NaN as np.maximum does), at a third of the cost of NumPy's ufuncs on
        size-1 arrays."""
        z = rng.standard_normal()
        return np.array([max(z * self._sd_one + self._mu_one, 0.0)])

    @property
    def block_draws(self) -> int | None:
        """Standard normals one step of :meth:`sample_block` takes; None when every step must
        call :meth:`sample` (a small fleet averages the library's own draws)."""
        return int(self._mu.size) if self._vector else None

    def sample_block(self, normals: np.ndarray, steps: int) -> np.ndarray:
        """Observed ITL per model at `steps` steps (rows), s, from the latency stream's next
        steps x :attr:`block_draws` standard normals (step by step); the same values
        :meth:`sample` would give step after step."""
        z = normals.reshape(steps, self._mu.size)
        draws = z * self._sd
        draws += self._mu
        np.maximum(draws, 0.0, out=draws)
        if self._all_valid:
            return draws
        out = np.full((steps, self._valid.size), math.nan)
        out[:, self._valid] = draws
        return out

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Observed ITL per model, s (NaN for no replicas or no fit)."""
        if self._vector:
            if self._all_valid:
                return self._normal(rng)
            out = np.full(self._valid.size, math.nan)
            if self._mu.size:
                out[self._valid] = self._normal(rng)
            return out
        out = np.full(self._valid.size, math.nan)
        for m in np.flatnonzero(self._valid):
            point = self._points[m]
            out[m] = sample_fleet_itl(self._lo[m], self._hi[m], point.weight, int(self._replicas[m]), rng)
        return out


class MeanLatency(FleetLatency):
    """Deterministic observed ITL: every model at its fitted mixture's mean (NaN without
    replicas or fit), whatever the fleet size; no draw from the latency stream.

    With power noise off this removes the last randomness of a site, for step-by-step
    comparisons (``replay.itl_mode = "mean"``; OpenG2G gives the same with ``sample_avg``
    returning ``mean_var()[0]``).
    """

    @property
    def block_draws(self) -> int | None:
        """No draws: every step of a block is the same mean."""
        return 0

    def sample_block(self, normals: np.ndarray, steps: int) -> np.ndarray:
        """The means, one row per step."""
        return np.tile(self.sample(None), (steps, 1))

    def sample(self, rng: np.random.Generator | None) -> np.ndarray:
        """The mean per model, s (NaN for no replicas or no fit)."""
        return np.where(self._valid, self._mean, math.nan)

"""Observed fleet-average inter-token latency (SPEC 2.4), with the ML.ENERGY library's semantics.

Per (model, batch) the ITL of one replica follows `mlenergy.data.modeling.ITLMixtureModel`.
With n active replicas the observed fleet average is, as in ``ITLMixtureModel.sample_avg``,
the mean of n draws for n <= 30, else Normal(mean, sqrt(var / n)) clipped at 0; NaN when
the model has no replicas or no fit.

Speed without changing the numbers: the mixture moments are computed when an operating
point changes, not per step, and when every model is in the normal regime all models draw
in one vectorised ``rng.normal`` call, which consumes the stream exactly as the library's
per-model calls in label order would. Small fleets (n <= 30) draw as the library's
``sample_one`` does (one ``rng.random()``, then ``rng.lognormal(log(scale), sigma)``, which
is ``exp(log(scale) + sigma * rng.standard_normal())``), with each component's constants
worked out once per operating point instead of at every draw (:class:`MixtureDraws`).

During a batch ramp a model's effective batch lies between two measured batches lo < hi
with weight w; its replicas then follow the blend (1 - w) ITL_lo + w ITL_hi (a draw comes
from hi with probability w), the same blend as its power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.datacenter.blocks import BlockLatency, NormalStream
from g2gsim.datacenter.pool import OperatingPoint
from g2gsim.datacenter.stream_replay import interleaved_block

__all__ = ["EXACT_THRESHOLD", "FleetLatency", "MeanLatency", "MixtureDraws", "blend_moments", "sample_fleet_itl"]

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


class MixtureDraws:
    """``ITLMixtureModel.sample_one`` with its constants computed once: the same draws from the
    stream and the same arithmetic, so the same values (the library takes ``log``, ``max``
    and ``float`` of its parameters at every draw, which dominates a small fleet's step).

    ``Generator.lognormal(mean, sigma)`` is ``exp(mean + sigma * standard_normal())`` in
    NumPy's C code; ``math.exp`` is the same C library function."""

    __slots__ = ("loc", "mu_stall", "mu_steady", "p_steady", "sigma_stall", "sigma_steady")

    def __init__(self, fit: ITLMixtureModel) -> None:
        p1 = float(fit.pi_steady)
        p2 = float(fit.pi_stall)
        self.p_steady = p1 / max(p1 + p2, 1e-12)
        self.mu_steady = math.log(max(fit.scale_steady, 1e-15))
        self.sigma_steady = max(fit.sigma_steady, 0.0)
        self.mu_stall = math.log(max(fit.scale_stall, 1e-15))
        self.sigma_stall = max(fit.sigma_stall, 0.0)
        self.loc = fit.loc

    @staticmethod
    def exact(fit: ITLMixtureModel) -> bool:
        """Whether this shortcut reproduces the library for `fit` (finite sigmas >= 0;
        otherwise NumPy's argument checks decide, so the library is called)."""
        return all(math.isfinite(float(s)) for s in (fit.sigma_steady, fit.sigma_stall))

    def one(self, rng: np.random.Generator) -> float:
        """One replica's ITL, s (``fit.sample_one(rng)``)."""
        if rng.random() < self.p_steady:
            y = math.exp(self.mu_steady + self.sigma_steady * rng.standard_normal())
        else:
            y = math.exp(self.mu_stall + self.sigma_stall * rng.standard_normal())
        return float(self.loc + y)

    def many(self, rng: np.random.Generator, n: int) -> list[float]:
        """`n` replicas' ITL, s: :meth:`one` n times, with the loop's lookups hoisted (the
        condition draws first, then the chosen component's normal, as in :meth:`one`)."""
        rand, normal, exp = rng.random, rng.standard_normal, math.exp
        p1, mu1, s1, mu2, s2, loc = (
            self.p_steady,
            self.mu_steady,
            self.sigma_steady,
            self.mu_stall,
            self.sigma_stall,
            float(self.loc),
        )
        return [loc + (exp(mu1 + s1 * normal()) if rand() < p1 else exp(mu2 + s2 * normal())) for _ in range(n)]


def _mean(values: list[float]) -> float:
    """``float(np.mean(values))``: NumPy's pairwise sum of the values, divided by their count."""
    return float(np.add.reduce(np.array(values)) / len(values))


class _SmallFleet:
    """One model's observed ITL when the step-by-step path is taken: the fleet average of
    ``sample_fleet_itl`` with its per-draw constants precomputed (same draws, same values)."""

    __slots__ = ("hi", "lo", "mean", "n", "sd", "weight")

    def __init__(self, lo: ITLMixtureModel, hi: ITLMixtureModel | None, weight: float, n: int, mean: float, var: float):
        self.n = n
        self.weight = weight if hi is not None else 0.0
        self.lo = MixtureDraws(lo) if n <= EXACT_THRESHOLD else None
        self.hi = MixtureDraws(hi) if n <= EXACT_THRESHOLD and hi is not None and self.weight > 0.0 else None
        # n > 30: Normal(mean, sqrt(var / n)) clipped at 0 (the library's moments, or the blend's)
        self.mean = mean
        self.sd = math.sqrt(max(var / float(n), 0.0))

    def sample(self, rng: np.random.Generator) -> float:
        lo = self.lo
        if lo is None:
            return float(max(self.mean + self.sd * rng.standard_normal(), 0.0))
        hi = self.hi
        if hi is None:
            return _mean(lo.many(rng, self.n))
        weight = self.weight
        return _mean([(hi if rng.random() < weight else lo).one(rng) for _ in range(self.n)])


class _BulkSmallFleets:
    """Several steps of every model's :meth:`_SmallFleet.sample` at once: the same draws, taken
    from the stream in bulk (:func:`interleaved_block`), and the same arithmetic elementwise
    (``math.exp`` per value, as the scalar path; NumPy's own ``exp`` may differ in the last bit)."""

    def __init__(self, n_models: int, fleets: list[tuple[int, _SmallFleet]]) -> None:
        self.n_models = n_models
        self.fleets = fleets
        kinds: list[bool] = []
        for _, fleet in fleets:
            per_replica = [False, True] if fleet.hi is None else [False, False, True]
            kinds += [True] if fleet.lo is None else per_replica * fleet.n
        self.normal = np.array(kinds, dtype=bool)

    def sample(self, rng: np.random.Generator, steps: int) -> BlockLatency | None:
        """Observed ITL per model at `steps` steps (rows), and how to give back the draws of
        steps not used; None (stream untouched) when the stream cannot be read in bulk."""
        drawn = interleaved_block(rng, np.tile(self.normal, steps))
        if drawn is None:
            return None
        per_step, rewind = self.normal.size, drawn[1]
        values = drawn[0].reshape(steps, per_step)
        out = np.full((steps, self.n_models), math.nan)
        at = 0
        for m, fleet in self.fleets:
            lo, hi = fleet.lo, fleet.hi
            if lo is None:
                z = values[:, at] * fleet.sd
                z += fleet.mean
                out[:, m] = np.maximum(z, 0.0)
                at += 1
                continue
            width = 2 if hi is None else 3
            draws = values[:, at : at + width * fleet.n].reshape(steps, fleet.n, width)
            at += width * fleet.n
            out[:, m] = np.add.reduce(_replica_itl(draws, lo, hi, fleet.weight), axis=1) / fleet.n
        return BlockLatency(out, lambda used: rewind.to(used * per_step))


def _replica_itl(draws: np.ndarray, lo: MixtureDraws, hi: MixtureDraws | None, weight: float) -> np.ndarray:
    """Each replica's ITL (steps, replicas) from its draws: (uniform, normal) per replica, or
    (uniform for hi against lo, uniform, normal) during a ramp, as :meth:`MixtureDraws.one`."""
    z, uniform = draws[..., -1], draws[..., -2]
    if hi is None:
        steady = uniform < lo.p_steady
        mu = np.where(steady, lo.mu_steady, lo.mu_stall)
        sigma = np.where(steady, lo.sigma_steady, lo.sigma_stall)
        loc: np.ndarray | float = float(lo.loc)
    else:
        upper = draws[..., 0] < weight
        steady = uniform < np.where(upper, hi.p_steady, lo.p_steady)
        mu = np.where(upper, np.where(steady, hi.mu_steady, hi.mu_stall), np.where(steady, lo.mu_steady, lo.mu_stall))
        sigma = np.where(
            upper, np.where(steady, hi.sigma_steady, hi.sigma_stall), np.where(steady, lo.sigma_steady, lo.sigma_stall)
        )
        loc = np.where(upper, float(hi.loc), float(lo.loc))
    z = z * sigma
    z += mu
    y = np.fromiter(map(math.exp, z.ravel().tolist()), dtype=np.float64, count=z.size).reshape(z.shape)
    return loc + y


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
        self._small: list[tuple[int, _SmallFleet | None]] = []  # per valid model, step-by-step path
        self._bulk: _BulkSmallFleets | None = None  # the same, several steps at once

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
        self._small = [] if self._vector else [(int(m), self._small_fleet(int(m))) for m in np.flatnonzero(valid)]
        fleets = [(m, small) for m, small in self._small if small is not None]
        self._bulk = _BulkSmallFleets(valid.size, fleets) if fleets and len(fleets) == len(self._small) else None

    def _small_fleet(self, m: int) -> _SmallFleet | None:
        """Model m's step-by-step sampler (None: call :func:`sample_fleet_itl` itself)."""
        lo, hi, weight = self._lo[m], self._hi[m], self._points[m].weight
        if lo is None or not MixtureDraws.exact(lo) or (weight > 0.0 and (hi is None or not MixtureDraws.exact(hi))):
            return None
        return _SmallFleet(
            lo, hi if weight > 0.0 else None, weight, int(self._replicas[m]), self._mean[m], self._var[m]
        )

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

    def sample_rows(self, rng: np.random.Generator, steps: int) -> np.ndarray:
        """Observed ITL per model at `steps` successive steps (rows), s: :meth:`sample` step
        after step (for steps whose block could not draw them ahead, :meth:`block`)."""
        return np.array([self.sample(rng) for _ in range(steps)])

    def block(self, stream: NormalStream, steps: int) -> BlockLatency:
        """A block's observed ITL, drawn ahead from the latency stream: the normal regime from
        :meth:`sample_block`, small fleets read in bulk; rows None when its steps must draw
        their own (:meth:`sample`). Giving back a cut block's draws leaves the stream where
        the steps it ran leave it."""
        per_step = self.block_draws
        if per_step is None:
            bulk = self._bulk.sample(stream.rng, steps) if self._bulk is not None else None
            return bulk if bulk is not None else BlockLatency(None)
        if not per_step:
            return BlockLatency(self.sample_block(np.zeros(0), steps))
        normals = stream.take(steps * per_step)
        return BlockLatency(self.sample_block(normals, steps), lambda used: stream.unused(normals[used * per_step :]))

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
        for m, small in self._small:
            if small is not None:
                out[m] = small.sample(rng)
            else:
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

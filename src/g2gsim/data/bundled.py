"""The bundled default dataset: synthetic H100 traces built from published per-model figures.

So the main command works offline on a fresh machine, g2gsim generates its own data for the
G2G paper's five models from per-batch figures (mean per-GPU power with its 5-95th
percentile spread, mean ITL, logistic power/ITL/throughput values; ML.ENERGY v3, vLLM on
H100). Each trace gets realistic temporal structure: a warm-up rise, periodic fluctuation
(decode/prefill cycles) and smoothed noise, sized so its spread matches the published one.
ITL mixtures are built to reproduce the published mean with a small stall component. Every
result made with it is labelled synthetic.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from mlenergy.data.modeling import ITLMixtureModel
from scipy.ndimage import uniform_filter1d

from g2gsim.data.caches import TableSource
from g2gsim.data.fits import FitWarning, LogisticFits, fit_logistic_fits
from g2gsim.data.traces import PowerTrace

if TYPE_CHECKING:
    from g2gsim.datacenter.spec import ModelSpec

__all__ = ["BundledSyntheticSource", "CurvePoint", "CURVES", "TRACE_STEP_S", "WARMUP_S", "STEADY_S"]

TRACE_STEP_S = 0.1
WARMUP_S = 5.0
STEADY_S = 60.0

# ITL mixture shape: location share of the mean, lognormal sigmas, stall weight and scale.
_LOC_SHARE = 0.70
_SIGMA_STEADY = 0.25
_PI_STALL = 0.03
_SIGMA_STALL = 0.60
_STALL_SCALE_SHARE = 1.5


class CurvePoint(NamedTuple):
    """Published figures of one (model, batch): per-GPU power, spread, ITL and fitted curves."""

    batch: int
    power_w: float  # mean steady per-GPU power
    p5_w: float
    p95_w: float
    power_fit_w: float  # logistic power fit, per GPU
    itl_ms: float  # mean of the fitted ITL mixture
    itl_fit_ms: float  # logistic ITL fit
    throughput_tps: float  # logistic throughput fit, tokens/s per replica


def _points(rows: str) -> tuple[CurvePoint, ...]:
    out = []
    for line in rows.strip().splitlines():
        b, p, p5, p95, pf, itl, itlf, tput = line.split()
        out.append(CurvePoint(int(b), float(p), float(p5), float(p95), float(pf), float(itl), float(itlf), float(tput)))
    return tuple(out)


#: batch, P W/GPU, p5, p95, P_fit, ITL_mix ms, ITL_fit ms, throughput tok/s per replica.
CURVES: dict[str, tuple[CurvePoint, ...]] = {
    "Llama-3.1-8B": _points("""
        8 487 462 517 489 7.4 8.6 1253
        16 513 481 566 509 8.2 8.9 1898
        32 560 516 659 556 9.3 9.5 3173
        64 609 565 695 620 12.0 11.3 5130
        128 667 609 755 665 17.2 16.3 7211
        256 689 612 775 683 27.4 28.0 8715
        512 691 586 782 689 49.0 48.6 9525
        1024 688 554 791 691 70.8 71.0 9895"""),
    "Llama-3.1-70B": _points("""
        8 442 422 469 433 16.8 17.1 392
        16 451 428 508 447 18.4 18.3 822
        32 449 426 533 470 21.6 20.7 1530
        64 500 470 583 501 24.9 25.2 2554
        128 546 519 608 540 31.2 33.8 3790
        256 589 555 647 581 53.9 49.5 4992
        512 623 568 687 619 87.1 76.2 5938
        1024 636 584 688 648 127.2 116.9 6568
        2048 669 585 739 669 132.0 169.7 6940"""),
    "Llama-3.1-405B": _points("""
        8 408 397 444 405 34.5 35.1 285
        16 423 406 504 425 35.6 35.8 408
        32 468 440 594 467 39.3 38.2 747
        64 520 484 638 526 47.2 45.9 1359
        128 576 536 673 577 65.5 66.0 1928
        256 610 575 676 604 106.5 99.2 2211
        512 610 554 686 615 162.2 127.0 2308"""),
    "Qwen3-30B-A3B": _points("""
        8 355 338 372 355 9.4 11.9 868
        16 394 375 411 393 12.0 12.7 1393
        32 422 398 436 425 16.2 14.5 2050
        64 455 415 480 449 20.8 19.2 2853
        128 463 417 495 464 27.8 30.0 3805
        256 465 326 558 473 45.6 53.1 4893
        512 486 366 581 478 51.6 93.3 6087"""),
    "Qwen3-235B-A22B": _points("""
        8 355 343 366 355 20.2 26.4 390
        16 398 384 412 396 24.8 27.9 655
        32 431 412 443 434 32.9 31.9 973
        64 455 429 474 452 38.7 41.6 1231
        128 458 436 481 458 40.3 64.8 1381
        256 460 440 492 460 40.7 116.7 1452
        512 459 437 489 460 41.1 216.2 1482"""),
}

# 1.645 standard deviations each side of the mean span the 5-95th percentiles of a normal.
_P5_P95_IN_SIGMAS = 2 * 1.645


def _stream(label: str, batch: int) -> np.random.Generator:
    """A generator fixed by (label, batch) alone, so the dataset never changes between runs."""
    digest = hashlib.sha256(f"g2gsim-bundled/{label}/{batch}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def synthetic_power_trace(label: str, point: CurvePoint, gpus: int) -> PowerTrace:
    """Warm-up, then a periodic steady segment whose mean and spread match the figures."""
    rng = _stream(label, point.batch)
    n_warm = int(round(WARMUP_S / TRACE_STEP_S))
    n = int(round(STEADY_S / TRACE_STEP_S))
    t = np.arange(n) * TRACE_STEP_S
    sigma = max(point.p95_w - point.p5_w, 1.0) / _P5_P95_IN_SIGMAS
    # Periodic part: whole cycles over the segment so the template repeats without a seam.
    cycles = (7, 23, 41)
    weights = np.array([0.6, 0.3, 0.2])
    phases = rng.uniform(0, 2 * np.pi, size=3)
    wave = sum(w * np.sin(2 * np.pi * c * t / STEADY_S + ph) for w, c, ph in zip(weights, cycles, phases))
    wave *= math.sqrt(0.6) * sigma / math.sqrt(0.5 * float(np.sum(weights**2)))
    noise = uniform_filter1d(rng.normal(size=n), size=3, mode="wrap")
    noise *= math.sqrt(0.4) * sigma / max(float(noise.std()), 1e-12)
    steady = point.power_w + wave + noise
    steady += point.power_w - steady.mean()
    warm = np.linspace(0.55, 1.0, n_warm, endpoint=False) * steady[0]
    per_gpu = np.clip(np.concatenate([warm, steady]), 0.0, None)
    times = np.arange(n_warm + n) * TRACE_STEP_S
    return PowerTrace(times, per_gpu * gpus, measured_gpus=gpus, source=f"bundled synthetic {label} batch {point.batch}")


def synthetic_itl_mixture(mean_s: float) -> ITLMixtureModel:
    """A two-lognormal mixture with the given mean: a tight steady mode and a rare wide stall."""
    loc = _LOC_SHARE * mean_s
    scale_stall = _STALL_SCALE_SHARE * mean_s
    stall_mean = _PI_STALL * scale_stall * math.exp(_SIGMA_STALL**2 / 2)
    scale_steady = (mean_s - loc - stall_mean) / ((1 - _PI_STALL) * math.exp(_SIGMA_STEADY**2 / 2))
    return ITLMixtureModel(
        loc=loc,
        pi_steady=1 - _PI_STALL,
        sigma_steady=_SIGMA_STEADY,
        scale_steady=scale_steady,
        pi_stall=_PI_STALL,
        sigma_stall=_SIGMA_STALL,
        scale_stall=scale_stall,
    )


@cache
def _logistic(label: str, gpus: int, exclude: tuple[int, ...]) -> LogisticFits:
    points = CURVES[label]
    with warnings.catch_warnings():
        # The published fitted values are smooth by construction; shape warnings would be noise.
        warnings.simplefilter("ignore", FitWarning)
        return fit_logistic_fits(
            label,
            [p.batch for p in points],
            [p.power_fit_w * gpus for p in points],
            [p.itl_fit_ms / 1000 for p in points],
            [p.throughput_tps for p in points],
            exclude=exclude,
        )


class BundledSyntheticSource(TableSource):
    """Synthetic traces, ITL mixtures and logistic fits for the paper's five models (H100).

    Keyed by model label; a spec with another label has no data here (use a cache or
    ML.ENERGY folder for it).
    """

    steady_skip_s = WARMUP_S

    @property
    def description(self) -> str:
        return "bundled synthetic H100 data (from published ML.ENERGY figures)"

    @property
    def is_synthetic(self) -> bool:
        return True

    def key(self, spec: ModelSpec) -> str:
        return spec.model_label

    def _curve(self, spec: ModelSpec) -> tuple[CurvePoint, ...]:
        points = CURVES.get(spec.model_label)
        if points is None:
            raise self.missing(spec, None, f"bundled data (it covers {sorted(CURVES)})")
        return points

    def _load_traces(self, spec: ModelSpec) -> dict[int, PowerTrace]:
        return {p.batch: synthetic_power_trace(spec.model_label, p, spec.gpus_per_replica) for p in self._curve(spec)}

    def _load_itl(self, spec: ModelSpec) -> dict[int, ITLMixtureModel]:
        return {p.batch: synthetic_itl_mixture(p.itl_ms / 1000) for p in self._curve(spec)}

    def _load_logistic(self, spec: ModelSpec) -> LogisticFits | None:
        self._curve(spec)
        return _logistic(spec.model_label, spec.gpus_per_replica, spec.fit_exclude_batch_sizes)

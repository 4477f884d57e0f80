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
import io
import json
import math
import warnings
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from mlenergy.data.modeling import ITLMixtureModel
from scipy.ndimage import uniform_filter1d

from g2gsim.data.caches import TableSource
from g2gsim.data.fits import FitWarning, LogisticFits, fit_logistic_fits
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.data.traces import PowerTrace

if TYPE_CHECKING:
    from g2gsim.data.spec import ModelSpec

__all__ = ["CURVES", "STEADY_S", "TRACE_STEP_S", "WARMUP_S", "BundledSyntheticSource", "CurvePoint"]

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


def _read_curves() -> dict[str, tuple[CurvePoint, ...]]:
    """The compact parameter file ``bundled_curves.csv`` shipped inside the package."""
    text = resources.files("g2gsim.data").joinpath(CURVES_FILE).read_text()
    frame = pd.read_csv(io.StringIO(text), comment="#")
    curves: dict[str, list[CurvePoint]] = {}
    for row in frame.itertuples(index=False):
        point = CurvePoint(
            int(row.batch),
            float(row.power_w),
            float(row.p5_w),
            float(row.p95_w),
            float(row.power_fit_w),
            float(row.itl_ms),
            float(row.itl_fit_ms),
            float(row.throughput_tps),
        )
        curves.setdefault(str(row.model_label), []).append(point)
    return {label: tuple(sorted(points)) for label, points in curves.items()}


CURVES_FILE = "bundled_curves.csv"

#: Per (model, batch) figures, by model label (read once from the package's parameter file).
CURVES: dict[str, tuple[CurvePoint, ...]] = _read_curves()

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
    return PowerTrace(
        times, per_gpu * gpus, measured_gpus=gpus, source=f"bundled synthetic {label} batch {point.batch}"
    )


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


FITS_FILE = "bundled_fits.json"


def _curves_digest() -> str:
    """SHA-256 of the parameter file: stored fits are valid only for the figures they came from."""
    return hashlib.sha256(resources.files("g2gsim.data").joinpath(CURVES_FILE).read_bytes()).hexdigest()


@cache
def _stored_fits() -> dict[str, Any]:
    """Fits precomputed by :func:`write_stored_fits` (empty if absent or stale)."""
    entry = resources.files("g2gsim.data").joinpath(FITS_FILE)
    if not entry.is_file():
        return {}
    payload = json.loads(entry.read_text())
    return payload.get("models", {}) if payload.get("curves_sha256") == _curves_digest() else {}


def fit_bundled_logistic(label: str, gpus: int, exclude: tuple[int, ...] = ()) -> LogisticFits:
    """Fit the three logistic curves of one model to its published figures (about 0.5 s)."""
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


@cache
def _logistic(label: str, gpus: int, exclude: tuple[int, ...]) -> LogisticFits:
    """The fits of one model: the stored ones when they match, else fitted now.

    Fitting all five models takes seconds (a grid search per curve); the package ships the
    result for the paper's specs in ``bundled_fits.json`` so a run does not pay it.
    """
    stored = _stored_fits().get(label)
    if stored is not None and stored["gpus_per_replica"] == gpus and tuple(stored["exclude"]) == exclude:
        return LogisticFits.from_dict(stored["fits"], where=f"{FITS_FILE} {label}")
    return fit_bundled_logistic(label, gpus, exclude)


def write_stored_fits(path: str | Path) -> Path:
    """Fit the paper's five models and write ``bundled_fits.json`` (run after editing the curves)."""
    models = {
        label: {
            "gpus_per_replica": spec.gpus_per_replica,
            "exclude": list(spec.fit_exclude_batch_sizes),
            "fits": fit_bundled_logistic(label, spec.gpus_per_replica, spec.fit_exclude_batch_sizes).to_dict(),
        }
        for label, spec in PAPER_MODELS.items()
        if label in CURVES
    }
    path = Path(path)
    path.write_text(json.dumps({"curves_sha256": _curves_digest(), "models": models}, indent=2, sort_keys=True) + "\n")
    return path


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


if __name__ == "__main__":  # python -m g2gsim.data.bundled: refresh the stored fits
    print(write_stored_fits(Path(__file__).with_name(FITS_FILE)))

"""Time to first token: a prefill roofline per model and GPU, with queueing at the batch in service.

Prefill of a P-token prompt on a replica of G GPUs takes the longer of its compute and its
memory traffic (a roofline)::

    compute = (2 N_active P + 2 layers P^2 heads head_dim) / (G peak eta_c)
    memory  = (weights + P kv_per_token) / (G bandwidth eta_m)

2 N_active P are the matrix multiplies of the activated parameters (a mixture of experts
computes only its routed experts but reads them all); 2 layers P^2 heads head_dim the causal
attention (QK^T and AV over half the P^2 pairs each). `peak` is the GPU's dense tensor
throughput at the weights' precision, `bandwidth` its HBM bandwidth; eta_c = 0.5 and
eta_m = 0.8 are assumed efficiencies (typical of a serving engine's prefill), not fitted.

Queueing at the batch b in service: a saturated server admits a new request each time one
finishes, so prefills arrive in proportion to decoding. Per request, decoding takes
output tokens x ITL(b) of engine time for b sequences together and its prefill s alone, so
prefill work is r = b s / (output tokens x ITL(b)) per unit of decode work and takes a share
rho = r / (1 + r) of the engine (the loop is closed: prefills slow decoding, which slows
admissions, so rho stays below 1). A request waits on average for half the decode step in
flight, then for the prefills ahead of it (the M/D/1 mean wait rho s / (2 (1 - rho)) = r s / 2),
then its own prefill::

    TTFT(b) = ITL(b) / 2 + s (1 + r / 2)

ITL(b) is the measured decode step (the latency fit), which already holds the prefill
interference of the benchmark's own request mix; the model adds the queueing of this mix.

Calibration: the model is UNCALIBRATED on the bundled data, which has no TTFT measurements.
:func:`calibrate` fits one scale factor (measured over modelled) to measured samples and
reports the error before and after; the power-budget controller corrects the same factor
online (an exponentially smoothed ratio) where a live site reports ``ttft_s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from g2gsim.data.spec import ModelSpec
from g2gsim.planning.architecture import GpuSpec, ModelArchitecture
from g2gsim.planning.memory import kv_bytes_per_token, weight_bytes
from g2gsim.planning.search import Bound

__all__ = [
    "BANDWIDTH_EFFICIENCY",
    "COMPUTE_EFFICIENCY",
    "TtftCalibration",
    "TtftModel",
    "TtftSample",
    "calibrate",
]

#: Assumed share of the dense tensor peak a prefill reaches.
COMPUTE_EFFICIENCY = 0.5
#: Assumed share of the HBM bandwidth a prefill reaches.
BANDWIDTH_EFFICIENCY = 0.8


@dataclass(frozen=True)
class TtftModel:
    """Prefill time and TTFT of one model on one GPU type (see the module text)."""

    label: str
    gpus: int
    active_params: float
    layers: int
    attention_width: int  # attention heads x head dim
    weights_bytes: float
    kv_per_token: float
    peak_flops: float  # per GPU, dense, at the weights' precision
    bandwidth: float  # bytes/s per GPU
    compute_efficiency: float = COMPUTE_EFFICIENCY
    bandwidth_efficiency: float = BANDWIDTH_EFFICIENCY
    scale: float = 1.0  # measured / modelled (1: uncalibrated)

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        arch: ModelArchitecture,
        gpu: GpuSpec,
        *,
        compute_efficiency: float = COMPUTE_EFFICIENCY,
        bandwidth_efficiency: float = BANDWIDTH_EFFICIENCY,
    ) -> TtftModel:
        """The model of a replica of `spec` on `gpu`."""
        for name, value in (("compute_efficiency", compute_efficiency), ("bandwidth_efficiency", bandwidth_efficiency)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        return cls(
            label=spec.model_label,
            gpus=spec.gpus_per_replica,
            active_params=arch.active_params_b * 1e9,
            layers=arch.layers,
            attention_width=arch.attention_heads * arch.head_dim,
            weights_bytes=weight_bytes(arch, spec.precision),
            kv_per_token=kv_bytes_per_token(arch, spec.tensor_parallel or spec.gpus_per_replica),
            peak_flops=gpu.peak_flops(spec.precision),
            bandwidth=gpu.bandwidth_tb_s * 1e12,
            compute_efficiency=compute_efficiency,
            bandwidth_efficiency=bandwidth_efficiency,
        )

    def prefill_flops(self, prompt_tokens: float) -> float:
        """FLOPs of one prefill: the activated parameters' matrix multiplies plus causal attention."""
        p = float(prompt_tokens)
        return 2.0 * self.active_params * p + 2.0 * self.layers * p * p * self.attention_width

    def prefill_bytes(self, prompt_tokens: float) -> float:
        """Bytes one prefill moves: every weight read once, the prompt's KV cache written."""
        return self.weights_bytes + float(prompt_tokens) * self.kv_per_token

    def prefill_s(self, prompt_tokens: float) -> float:
        """Prefill time of one prompt on an idle replica, s (roofline, unscaled)."""
        compute = self.prefill_flops(prompt_tokens) / (self.gpus * self.peak_flops * self.compute_efficiency)
        memory = self.prefill_bytes(prompt_tokens) / (self.gpus * self.bandwidth * self.bandwidth_efficiency)
        return max(compute, memory)

    def ttft_s(
        self,
        batch: float | np.ndarray,
        itl_s: float | np.ndarray,
        input_tokens: int,
        output_tokens: int,
        slowdown: float | np.ndarray = 1.0,
    ) -> float | np.ndarray:
        """TTFT at `batch` sequences in service decoding at `itl_s`, s (`slowdown`: a GPU cap's factor)."""
        b = np.asarray(batch, dtype=float)
        itl = np.asarray(itl_s, dtype=float)
        service = self.prefill_s(input_tokens) * np.asarray(slowdown, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = b * service / (float(output_tokens) * itl)  # prefill work per unit of decode work
            out = self.scale * (itl / 2.0 + service * (1.0 + ratio / 2.0))
        out = np.where(np.isfinite(itl) & (itl > 0), out, np.nan)
        return float(out) if out.ndim == 0 else out

    def bound(self, itl: Callable[[int], float], deadline_s: float, input_tokens: int, output_tokens: int) -> Bound:
        """The TTFT bound at given lengths, with `itl(batch)` the decode step at each batch."""
        return Bound(
            "ttft",
            lambda b: float(self.ttft_s(float(b), float(itl(b)), input_tokens, output_tokens)),
            deadline_s,
            unit="s",
        )


@dataclass(frozen=True)
class TtftSample:
    """One measured TTFT with the conditions it was measured at."""

    batch: int
    itl_s: float
    input_tokens: int
    output_tokens: int
    ttft_s: float


@dataclass(frozen=True)
class TtftCalibration:
    """A model scaled to measured samples, with the RMS relative error before and after."""

    model: TtftModel
    scale: float
    samples: int
    rms_error_before: float
    rms_error_after: float


def _rms_relative(model: TtftModel, samples: Sequence[TtftSample]) -> float:
    errors = [model.ttft_s(float(s.batch), s.itl_s, s.input_tokens, s.output_tokens) / s.ttft_s - 1.0 for s in samples]
    return math.sqrt(sum(e * e for e in errors) / len(errors))


def calibrate(model: TtftModel, samples: Sequence[TtftSample]) -> TtftCalibration:
    """Scale the model by the geometric mean of measured / modelled TTFT over usable samples.

    A sample is usable when its measured and modelled TTFT are finite and positive; with none,
    the error names why.
    """
    base = replace(model, scale=1.0)
    usable = []
    for sample in samples:
        predicted = float(base.ttft_s(float(sample.batch), sample.itl_s, sample.input_tokens, sample.output_tokens))
        if math.isfinite(predicted) and predicted > 0 and math.isfinite(sample.ttft_s) and sample.ttft_s > 0:
            usable.append((sample, math.log(sample.ttft_s / predicted)))
    if not usable:
        raise ValueError(
            f"TTFT calibration of {model.label!r}: none of {len(samples)} sample(s) has a finite, positive "
            "measured and modelled TTFT"
        )
    scale = math.exp(sum(log_ratio for _, log_ratio in usable) / len(usable))
    kept = [s for s, _ in usable]
    fitted = replace(model, scale=scale)
    return TtftCalibration(fitted, scale, len(kept), _rms_relative(base, kept), _rms_relative(fitted, kept))

"""Per-model batch plans under every bound: ITL (the spec's deadline), TTFT and KV-cache memory.

:class:`SloTargets` says what a plan must meet besides the ITL deadline: a TTFT deadline and
the input and output lengths the memory and TTFT bounds are taken at. :class:`ModelBounds`
turns a spec and its targets into the bounds (:mod:`~g2gsim.planning.memory`,
:mod:`~g2gsim.planning.ttft`); :func:`plan_model` runs the search of
:mod:`~g2gsim.planning.search` over the measured batch range (each bound's own limit, the
binding one, the largest integer batch) and over the feasible sizes (the largest feasible
batch, the best-throughput one). :func:`limit_spec` cuts a spec's feasible sizes at a limit,
the one place a planned limit reaches controllers and the datacenter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from pydantic import Field

from g2gsim.data.source import DataSource
from g2gsim.data.spec import ModelSpec
from g2gsim.kernel.registry import Section
from g2gsim.planning.architecture import GpuSpec, ModelArchitecture, architecture_of, gpu_of
from g2gsim.planning.memory import ACTIVATION_RESERVE_GB, GPU_MEMORY_UTILIZATION, MemoryModel
from g2gsim.planning.search import Bound, largest_batch_meeting
from g2gsim.planning.ttft import TtftModel

__all__ = ["BatchPlan", "ModelBounds", "SloTargets", "limit_spec", "plan_batches", "plan_model"]


def _unset(value: Any) -> bool:
    return value is None


class SloTargets(Section):
    """What a batch plan must meet besides the spec's ITL deadline, and the lengths it is taken at.

    Without lengths only the ITL bound applies; with lengths the memory bound applies too,
    and the TTFT bound when a TTFT deadline is given.
    """

    ttft_deadline_s: float | None = Field(default=None, gt=0, allow_inf_nan=False, exclude_if=_unset)
    """Time-to-first-token deadline, s (none: no TTFT bound)."""
    input_tokens: int | None = Field(default=None, gt=0, exclude_if=_unset)
    """Prompt length of a request, tokens."""
    output_tokens: int | None = Field(default=None, gt=0, exclude_if=_unset)
    """Completion length of a request, tokens."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1, exclude_if=_unset)
    """Share of GPU memory the serving engine may use (default 0.9, vLLM's)."""

    def problems(self) -> list[str]:
        """What keeps these targets from being planned with (empty when they are complete)."""
        out = []
        if (self.input_tokens is None) != (self.output_tokens is None):
            out.append("input_tokens and output_tokens go together: give both or neither")
        if self.ttft_deadline_s is not None and self.input_tokens is None:
            out.append("a ttft_deadline_s needs the lengths it is taken at: give input_tokens and output_tokens")
        return out

    def merged(self, other: SloTargets | None) -> Self:
        """These targets with every field `other` sets taking its value."""
        if other is None:
            return self
        own = {name: getattr(self, name) for name in type(self).model_fields}
        theirs = {
            name: getattr(other, name) for name in type(self).model_fields if getattr(other, name, None) is not None
        }
        return type(self)(**{**own, **theirs})

    @property
    def has_lengths(self) -> bool:
        """Whether input and output lengths are given (the memory and TTFT bounds need them)."""
        return self.input_tokens is not None and self.output_tokens is not None


@dataclass(frozen=True)
class ModelBounds:
    """Every bound of one model: the spec's ITL deadline, its targets, and the memory and TTFT models."""

    label: str
    itl_deadline_s: float
    targets: SloTargets
    memory: MemoryModel | None = None
    ttft: TtftModel | None = None

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        targets: SloTargets | None = None,
        *,
        source: DataSource | None = None,
        architecture: ModelArchitecture | None = None,
        gpu: GpuSpec | None = None,
    ) -> ModelBounds:
        """The bounds of `spec` under `targets` (architecture from `source` and the table unless given)."""
        targets = targets or SloTargets()
        problems = targets.problems()
        if problems:
            raise ValueError(f"model {spec.model_label!r}: {'; '.join(problems)}")
        if not targets.has_lengths:
            return cls(spec.model_label, float(spec.itl_deadline_s), targets)
        arch = architecture or architecture_of(spec, source)
        hardware = gpu or gpu_of(spec)
        utilization = targets.gpu_memory_utilization or GPU_MEMORY_UTILIZATION
        memory = MemoryModel.of(
            spec, arch, hardware, gpu_memory_utilization=utilization, activation_reserve_gb=ACTIVATION_RESERVE_GB
        )
        ttft = TtftModel.of(spec, arch, hardware) if targets.ttft_deadline_s is not None else None
        return cls(spec.model_label, float(spec.itl_deadline_s), targets, memory, ttft)

    def bounds(self, latency: Callable[[int], float]) -> list[Bound]:
        """The bounds as search bounds, with `latency(batch)` the model's ITL (s)."""
        out = [Bound("itl", latency, self.itl_deadline_s, unit="s")]
        t = self.targets
        if self.memory is not None and t.input_tokens is not None and t.output_tokens is not None:
            out.append(self.memory.bound(t.input_tokens, t.output_tokens))
        if self.ttft is not None and t.ttft_deadline_s is not None and t.input_tokens and t.output_tokens:
            out.append(self.ttft.bound(latency, t.ttft_deadline_s, t.input_tokens, t.output_tokens))
        return out

    @property
    def memory_batch(self) -> int | None:
        """Largest batch whose full-length sequences fit in memory (closed form; None without lengths)."""
        t = self.targets
        if self.memory is None or t.input_tokens is None or t.output_tokens is None:
            return None
        return self.memory.max_batch(t.input_tokens, t.output_tokens)

    def ttft_s(self, batch: np.ndarray, itl_s: np.ndarray, slowdown: np.ndarray | float = 1.0) -> np.ndarray:
        """Modelled TTFT per option, s (NaN without a TTFT model)."""
        t = self.targets
        if self.ttft is None or t.input_tokens is None or t.output_tokens is None:
            return np.full(np.shape(batch), np.nan)
        return np.asarray(self.ttft.ttft_s(batch, itl_s, t.input_tokens, t.output_tokens, slowdown))


@dataclass(frozen=True)
class BatchPlan:
    """One model's batch choices under its bounds (ITL only when no targets were given)."""

    model: str
    deadline_s: float
    limit_batch: int | None  # largest integer batch in the measured range meeting every bound
    max_batch: int | None  # largest feasible batch meeting every bound
    best_batch: int | None  # feasible batch with the highest throughput meeting every bound
    best_itl_s: float
    best_throughput_tps: float  # tokens/s per replica at best_batch
    best_power_w: float  # W per replica at best_batch
    limits: dict[str, int | None] = field(default_factory=dict)  # each bound's own largest integer batch
    binding: str = ""  # the bound with the smallest own limit ("range": none binds in the measured range)
    top_batch: int = 0  # the top of the measured range searched
    ttft_deadline_s: float | None = None
    best_ttft_s: float = math.nan
    memory_batch: int | None = None  # largest batch that fits in memory (closed form, unbounded by the range)

    def as_row(self) -> dict[str, Any]:
        """Plain mapping (for tables)."""
        return {
            "model": self.model,
            "deadline_s": self.deadline_s,
            "limit_batch": self.limit_batch,
            "max_batch": self.max_batch,
            "best_batch": self.best_batch,
            "itl_s": self.best_itl_s,
            "throughput_tps": self.best_throughput_tps,
            "power_w": self.best_power_w,
            "itl_limit": self.limits.get("itl"),
            "ttft_limit": self.limits.get("ttft"),
            "memory_limit": self.limits.get("memory"),
            "binding": self.binding,
            "top_batch": self.top_batch,
            "ttft_deadline_s": self.ttft_deadline_s,
            "ttft_s": self.best_ttft_s,
            "memory_batch": self.memory_batch,
        }


def _ranges(spec: Any) -> tuple[list[int], int, int]:
    sizes = sorted(int(b) for b in (getattr(spec, "feasible_batch_sizes", None) or spec.batch_sizes))
    measured = sorted(int(b) for b in (getattr(spec, "batch_sizes", None) or sizes))
    return sizes, min(sizes[0], measured[0]), max(sizes[-1], measured[-1])


def plan_model(spec: Any, fits: Any, bounds: ModelBounds | None = None) -> BatchPlan:
    """One model's plan: each bound's own limit and the binding one over the measured range, and
    the largest and the best-throughput feasible batch meeting every bound."""
    bounds = bounds or ModelBounds(spec.model_label, float(spec.itl_deadline_s), SloTargets())
    sizes, lo, hi = _ranges(spec)
    checks = bounds.bounds(lambda b: float(fits.latency.eval(b)))
    over_range = largest_batch_meeting(checks, lo, hi)
    over_sizes = largest_batch_meeting(checks, lo, hi, candidates=sizes)
    ok = [b for b in sizes if all(c.meets(b) for c in checks)]
    best = max(ok, key=lambda b: (fits.throughput.eval(b), -b)) if ok else None
    ttft = math.nan
    if best is not None and bounds.ttft is not None:
        ttft = float(bounds.ttft_s(np.array(float(best)), np.array(float(fits.latency.eval(best)))))
    return BatchPlan(
        model=spec.model_label,
        deadline_s=bounds.itl_deadline_s,
        limit_batch=over_range.batch,
        max_batch=over_sizes.batch,
        best_batch=best,
        best_itl_s=math.nan if best is None else float(fits.latency.eval(best)),
        best_throughput_tps=math.nan if best is None else float(fits.throughput.eval(best)),
        best_power_w=math.nan if best is None else float(fits.power.eval(best)),
        limits=over_range.limits,
        binding=over_range.binding,
        top_batch=hi,
        ttft_deadline_s=bounds.targets.ttft_deadline_s,
        best_ttft_s=ttft,
        memory_batch=bounds.memory_batch,
    )


def plan_batches(
    specs: Mapping[str, Any],
    fits: Mapping[str, Any],
    targets: SloTargets | Mapping[str, SloTargets] | None = None,
    *,
    source: DataSource | None = None,
) -> list[BatchPlan]:
    """Per model: each bound's limit, the binding one, the largest and the best-throughput feasible batch.

    `specs` are model specs by label (``itl_deadline_s`` and ``feasible_batch_sizes``); `fits`
    hold ``power``, ``latency`` and ``throughput`` logistic fits by label; `targets` (one for
    all models, or per label) add the TTFT and memory bounds, with architecture figures from
    `source` where it has them.
    """
    plans = []
    for label, spec in specs.items():
        own = targets.get(label) if isinstance(targets, Mapping) else targets
        bounds = ModelBounds.of(spec, own, source=source) if own is not None else None
        plans.append(plan_model(spec, fits[label], bounds))
    return plans


def limit_spec(spec: ModelSpec, limit: int, *, why: str = "") -> ModelSpec:
    """`spec` with its feasible batch sizes cut at `limit` (an error when none is left)."""
    kept = tuple(b for b in spec.feasible if b <= limit)
    if not kept:
        raise ValueError(
            f"model {spec.model_label!r}: no feasible batch size is at or below the batch limit {limit}"
            + (f" ({why})" if why else "")
            + f"; feasible sizes: {list(spec.feasible)}"
        )
    if kept == spec.feasible:
        return spec
    return ModelSpec.model_validate({**spec.model_dump(), "feasible_batch_sizes": kept})

"""Model specifications: what a served model is, how it was measured, and its deadline (SPEC 2.1).

A :class:`ModelSpec` carries two kinds of fields. Identity fields (model id, GPU, task,
precision, parallelism, measured batch sizes) say which benchmark runs describe the model;
their content hash names the model's data-cache folder, so two specs measured the same way
share one cache. Simulation knobs (label, ITL deadline, feasible batch sizes) do not change
the hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["PAPER_FEASIBLE_BATCHES", "PAPER_MODELS", "ModelSpec"]

#: Feasible batch sizes of the G2G paper's presets (SPEC 7).
PAPER_FEASIBLE_BATCHES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)


class ModelSpec(BaseModel):
    """One served model: identity of its measurements plus its serving constraints.

    Args:
        model_label: Short name used in scenarios, states and tables (e.g. ``Llama-3.1-8B``).
        model_id: HuggingFace id of the measured checkpoint.
        gpu_model: GPU the measurements ran on (upper case, e.g. ``H100``).
        task: Benchmark task (e.g. ``lm-arena-chat``, ``gpqa``).
        precision: Weight precision of the checkpoint.
        gpus_per_replica: GPUs one serving replica occupies.
        tensor_parallel / expert_parallel: Parallelism of the measured runs (default: TP over
            all GPUs of a replica, no EP).
        itl_deadline_s: Inter-token latency deadline, s.
        batch_sizes: Batch sizes (``max_num_seqs``) with measurements.
        feasible_batch_sizes: Sizes a controller may command (subset of ``batch_sizes``;
            default all of them).
        fit_exclude_batch_sizes: Sizes left out of the logistic fits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_label: str = Field(min_length=1)
    model_id: str = Field(default="", description="HuggingFace id, org/model")
    gpu_model: str = "H100"
    task: str = "lm-arena-chat"
    precision: Literal["bfloat16", "fp8"] = "bfloat16"
    gpus_per_replica: int = Field(default=1, ge=1)
    tensor_parallel: int | None = Field(default=None, ge=1)
    expert_parallel: int = Field(default=1, ge=1)
    itl_deadline_s: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    feasible_batch_sizes: tuple[int, ...] | None = None
    fit_exclude_batch_sizes: tuple[int, ...] = ()

    @field_validator("batch_sizes")
    @classmethod
    def _measured_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not sizes:
            raise ValueError("batch_sizes must list at least one measured batch size")
        bad = [b for b in sizes if b < 1]
        if bad:
            raise ValueError(f"batch_sizes must be positive integers, got {bad}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"batch_sizes has duplicates: {list(sizes)}")
        return tuple(sorted(sizes))

    @field_validator("gpu_model")
    @classmethod
    def _upper_gpu(cls, gpu: str) -> str:
        return gpu.upper()

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        given = self.batch_sizes if self.feasible_batch_sizes is None else self.feasible_batch_sizes
        feasible = tuple(sorted(set(given)))
        if not feasible:
            raise ValueError("feasible_batch_sizes must not be empty")
        outside = sorted(set(feasible) - set(self.batch_sizes))
        if outside:
            raise ValueError(
                f"feasible_batch_sizes {outside} of model {self.model_label!r} are not measured; "
                f"allowed: a subset of batch_sizes {list(self.batch_sizes)}"
            )
        object.__setattr__(self, "feasible_batch_sizes", feasible)
        if self.tensor_parallel is None:
            object.__setattr__(self, "tensor_parallel", self.gpus_per_replica)
        object.__setattr__(self, "fit_exclude_batch_sizes", tuple(sorted(set(self.fit_exclude_batch_sizes))))
        return self

    @property
    def feasible(self) -> tuple[int, ...]:
        """Feasible batch sizes, sorted (never None after validation)."""
        assert self.feasible_batch_sizes is not None
        return self.feasible_batch_sizes

    def identity(self) -> dict[str, object]:
        """The measurement-relevant fields, canonicalised (what the cache hash covers)."""
        return {
            "model_id": self.model_id,
            "gpu_model": self.gpu_model,
            "task": self.task,
            "precision": self.precision,
            "gpus_per_replica": self.gpus_per_replica,
            "tensor_parallel": self.tensor_parallel,
            "expert_parallel": self.expert_parallel,
            "batch_sizes": sorted(self.batch_sizes),
            "fit_exclude_batch_sizes": sorted(self.fit_exclude_batch_sizes),
        }

    def cache_hash(self) -> str:
        """First 16 hex digits of SHA-256 over the canonical JSON of :meth:`identity`.

        Names the spec's folder in a v0.2 data cache; matches OpenG2G's naming so its caches
        are read as-is.
        """
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _paper_model(
    label: str,
    model_id: str,
    task: str,
    gpus: int,
    deadline: float,
    precision: str = "bfloat16",
    batch_sizes: tuple[int, ...] = PAPER_FEASIBLE_BATCHES,
) -> ModelSpec:
    return ModelSpec(
        model_label=label,
        model_id=model_id,
        gpu_model="H100",
        task=task,
        precision=precision,
        gpus_per_replica=gpus,
        itl_deadline_s=deadline,
        batch_sizes=batch_sizes,
        feasible_batch_sizes=PAPER_FEASIBLE_BATCHES,
    )


#: The five models of the G2G paper (SPEC 7), keyed by label.
PAPER_MODELS: dict[str, ModelSpec] = {
    spec.model_label: spec
    for spec in (
        _paper_model("Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat", 1, 0.08),
        _paper_model("Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct", "lm-arena-chat", 4, 0.10),
        _paper_model("Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct-FP8", "lm-arena-chat", 8, 0.12, "fp8"),
        _paper_model("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B-Thinking-2507", "gpqa", 2, 0.06),
        _paper_model("Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B-Thinking-2507", "gpqa", 8, 0.14),
    )
}

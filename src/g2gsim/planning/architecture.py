"""Architecture figures of served models and GPUs, each with its source: what the memory and TTFT bounds need.

A model's KV cache per token needs its layers, KV heads and head dimension; its prefill needs
its parameters (total for the weights in memory, activated for the compute of a mixture of
experts) and attention heads. Parameters come from the data source where it has them
(ML.ENERGY runs carry ``total_params_billions`` and ``activated_params_billions`` from their
``model_info.json``); the rest comes from :data:`ARCHITECTURES`, the published model configs
of the G2G paper's five models. GPUs (memory, bandwidth, dense tensor throughput) come from
:data:`GPUS`, the vendor datasheets. A model or GPU without a figure is an error naming
what is missing, never a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from g2gsim.data.source import DataSource
from g2gsim.data.spec import ModelSpec

__all__ = [
    "ARCHITECTURES",
    "BYTES_PER_VALUE",
    "GPUS",
    "GpuSpec",
    "MissingFigureError",
    "ModelArchitecture",
    "architecture_of",
    "gpu_of",
]

#: Bytes per stored value by precision name.
BYTES_PER_VALUE: dict[str, float] = {"bfloat16": 2.0, "float16": 2.0, "fp8": 1.0}


class MissingFigureError(LookupError):
    """A model or GPU lacks a figure a bound needs; the message names the figures and where to add them."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelArchitecture:
    """What the memory and TTFT bounds need of one model (parameters in billions).

    `kv_precision` is the KV cache's element type: vLLM's default ``kv_cache_dtype="auto"``
    stores it in the model's activation dtype (bfloat16 for all five paper models, the FP8
    checkpoint included, whose FP8 is its weights'). `sources` names where each figure came
    from, by field name.
    """

    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    total_params_b: float
    active_params_b: float
    kv_precision: str = "bfloat16"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("layers", "attention_heads", "kv_heads", "head_dim"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ModelArchitecture.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 < self.active_params_b <= self.total_params_b:
            raise ValueError(
                f"ModelArchitecture: active_params_b ({self.active_params_b}) must be in (0, total_params_b "
                f"= {self.total_params_b}]"
            )
        if self.kv_precision not in BYTES_PER_VALUE:
            raise ValueError(f"ModelArchitecture.kv_precision {self.kv_precision!r}; known: {sorted(BYTES_PER_VALUE)}")

    @property
    def kv_bytes(self) -> float:
        """Bytes of one K or V element."""
        return BYTES_PER_VALUE[self.kv_precision]


def _hf(model_id: str, what: str) -> str:
    return f"{what} of {model_id} (https://huggingface.co/{model_id})"


def _paper_architecture(
    model_id: str, layers: int, heads: int, kv_heads: int, head_dim: int, total: float, active: float, card: str
) -> ModelArchitecture:
    config = _hf(model_id, "config.json")
    params = _hf(model_id, card)
    return ModelArchitecture(
        layers=layers,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        total_params_b=total,
        active_params_b=active,
        sources={
            "layers": f"{config}: num_hidden_layers",
            "attention_heads": f"{config}: num_attention_heads",
            "kv_heads": f"{config}: num_key_value_heads",
            "head_dim": f"{config}: head_dim (hidden_size / num_attention_heads)",
            "total_params_b": params,
            "active_params_b": params,
            "kv_precision": "vLLM kv_cache_dtype='auto': the model's activation dtype (torch_dtype bfloat16)",
        },
    )


#: The G2G paper's five models by Hugging Face id (published configs and model cards).
ARCHITECTURES: dict[str, ModelArchitecture] = {
    "meta-llama/Llama-3.1-8B-Instruct": _paper_architecture(
        "meta-llama/Llama-3.1-8B-Instruct", 32, 32, 8, 128, 8.03, 8.03, "model card and safetensors parameter count"
    ),
    "meta-llama/Llama-3.1-70B-Instruct": _paper_architecture(
        "meta-llama/Llama-3.1-70B-Instruct", 80, 64, 8, 128, 70.6, 70.6, "model card and safetensors parameter count"
    ),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": _paper_architecture(
        "meta-llama/Llama-3.1-405B-Instruct-FP8",
        126,
        128,
        8,
        128,
        405.9,
        405.9,
        "model card and safetensors parameter count",
    ),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": _paper_architecture(
        "Qwen/Qwen3-30B-A3B-Thinking-2507", 48, 32, 4, 128, 30.5, 3.3, "model card: 30.5B total, 3.3B activated"
    ),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": _paper_architecture(
        "Qwen/Qwen3-235B-A22B-Thinking-2507", 94, 64, 4, 128, 235.0, 22.0, "model card: 235B total, 22B activated"
    ),
}


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model: memory (GB = 1e9 bytes), memory bandwidth and dense tensor throughput per GPU."""

    name: str
    memory_gb: float
    bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None  # None: no FP8 tensor cores (FP8 weights compute at the BF16 rate)
    source: str

    def peak_flops(self, precision: str) -> float:
        """Dense tensor FLOP/s at a weight precision (FP8 falls back to BF16 where the GPU has no FP8)."""
        if precision == "fp8" and self.fp8_tflops is not None:
            return self.fp8_tflops * 1e12
        return self.bf16_tflops * 1e12


#: GPUs by the upper-case name a ModelSpec uses (vendor datasheets; dense, i.e. without sparsity).
GPUS: dict[str, GpuSpec] = {
    "H100": GpuSpec("H100", 80.0, 3.35, 989.4, 1978.9, "NVIDIA H100 SXM5 datasheet (80 GB HBM3)"),
    "H200": GpuSpec("H200", 141.0, 4.8, 989.4, 1978.9, "NVIDIA H200 SXM datasheet (141 GB HBM3e)"),
    "A100": GpuSpec("A100", 80.0, 2.039, 312.0, None, "NVIDIA A100 80GB SXM datasheet"),
    "B200": GpuSpec("B200", 180.0, 8.0, 2250.0, 4500.0, "NVIDIA DGX/HGX B200 datasheet (per GPU, dense)"),
}


def gpu_of(spec: ModelSpec, gpus: Mapping[str, GpuSpec] | None = None) -> GpuSpec:
    """The GPU a spec runs on; an unknown one is an error listing the known GPUs."""
    table = GPUS if gpus is None else gpus
    found = table.get(spec.gpu_model.upper())
    if found is None:
        raise MissingFigureError(
            f"model {spec.model_label!r}: no memory, bandwidth and throughput figures for GPU {spec.gpu_model!r}; "
            f"known GPUs: {sorted(table)} (add a GpuSpec to g2gsim.planning.GPUS)"
        )
    return found


def _measured_params(spec: ModelSpec, source: DataSource | None) -> dict[str, Any]:
    """Total and activated parameters the data source records for the spec (empty if it records none)."""
    from g2gsim.data.mlenergy import MLEnergySource

    if not isinstance(source, MLEnergySource):
        return {}
    try:
        runs = [run for group in source.select(spec).values() for run in group]
    except LookupError:
        return {}
    for run in runs:
        total = getattr(run, "total_params_billions", None)
        active = getattr(run, "activated_params_billions", None)
        if total and active:
            where = f"{source.description}: model_info of {run.model_id}"
            return {
                "total_params_b": float(total),
                "active_params_b": float(active),
                "sources": {"total_params_b": where, "active_params_b": where},
            }
    return {}


def architecture_of(
    spec: ModelSpec,
    source: DataSource | None = None,
    architectures: Mapping[str, ModelArchitecture] | None = None,
) -> ModelArchitecture:
    """A model's architecture: parameters from `source` where it has them, the rest from the table.

    The table is looked up by the spec's model id, then by its label. A model in neither
    raises :class:`MissingFigureError` naming every missing figure.
    """
    table = ARCHITECTURES if architectures is None else architectures
    known = table.get(spec.model_id) or table.get(spec.model_label)
    measured = _measured_params(spec, source)
    if known is None:
        have = [name for name in ("total_params_b", "active_params_b") if name in measured]
        missing = [f.name for f in fields(ModelArchitecture) if f.name not in (*have, "kv_precision", "sources")]
        raise MissingFigureError(
            f"model {spec.model_label!r} (model_id {spec.model_id!r}): no architecture figures for {missing}"
            + (f" (the data source gives {have})" if have else "")
            + f"; known models: {sorted(table)} (add a ModelArchitecture to g2gsim.planning.ARCHITECTURES)"
        )
    if not measured:
        return known
    sources = {**known.sources, **measured.pop("sources")}
    return replace(known, **measured, sources=sources)

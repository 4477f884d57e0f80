"""KV-cache memory of one replica: the largest batch whose sequences fit at given input and output lengths.

A replica of G GPUs keeps, per GPU, ``memory x gpu_memory_utilization`` for the serving engine
(vLLM's default 0.90: the rest holds the CUDA context, NCCL buffers, CUDA graphs and
fragmentation outside its pool), less an activation reserve (:data:`ACTIVATION_RESERVE_GB`
per GPU: the peak activations of one prefill chunk, a ballpark of what vLLM's profiling pass
sets aside for these models, not measured here). The weights take total parameters x bytes
per parameter at the spec's precision; the KV cache takes the rest.

One token of one sequence holds layers x KV heads x head dim x 2 (K and V) x bytes of KV
cache; with tensor parallelism each GPU holds ceil(KV heads / TP) heads, so a TP degree above
the KV heads replicates them (Qwen3-235B's 4 KV heads at TP 8 hold 8 heads' worth). A
sequence holds input + output tokens, rounded up to whole KV blocks of 16 tokens (vLLM's
default block size), when it finishes; the bound asks that every sequence of the batch fit
at full length at once (no preemption), the conservative reading of "fits".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from g2gsim.data.spec import ModelSpec
from g2gsim.planning.architecture import BYTES_PER_VALUE, GpuSpec, ModelArchitecture
from g2gsim.planning.search import Bound

__all__ = [
    "ACTIVATION_RESERVE_GB",
    "BLOCK_TOKENS",
    "GPU_MEMORY_UTILIZATION",
    "MemoryModel",
    "kv_bytes_per_token",
    "weight_bytes",
]

#: Share of each GPU's memory the serving engine may use (vLLM's default ``gpu_memory_utilization``).
GPU_MEMORY_UTILIZATION = 0.90
#: Memory per GPU kept for activations of a prefill chunk, GB (1e9 bytes).
ACTIVATION_RESERVE_GB = 1.0
#: Tokens per KV-cache block (vLLM's default ``block_size``).
BLOCK_TOKENS = 16


def weight_bytes(arch: ModelArchitecture, precision: str) -> float:
    """Bytes of the weights of one replica: total parameters x bytes per parameter at `precision`."""
    if precision not in BYTES_PER_VALUE:
        raise ValueError(f"weight precision {precision!r} has no byte size; known: {sorted(BYTES_PER_VALUE)}")
    return arch.total_params_b * 1e9 * BYTES_PER_VALUE[precision]


def kv_bytes_per_token(arch: ModelArchitecture, tensor_parallel: int = 1) -> float:
    """KV-cache bytes of one token over a replica: layers x held KV heads x head dim x 2 x bytes."""
    tp = max(int(tensor_parallel), 1)
    held_heads = math.ceil(arch.kv_heads / tp) * tp  # each GPU holds at least one head
    return float(arch.layers * held_heads * arch.head_dim * 2 * arch.kv_bytes)


@dataclass(frozen=True)
class MemoryModel:
    """The memory of one replica: what the engine may use, what the weights take, KV bytes per token."""

    label: str
    usable_bytes: float
    weights_bytes: float
    kv_per_token: float
    block_tokens: int = BLOCK_TOKENS

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        arch: ModelArchitecture,
        gpu: GpuSpec,
        *,
        gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
        activation_reserve_gb: float = ACTIVATION_RESERVE_GB,
    ) -> MemoryModel:
        """The memory of a replica of `spec` on `gpu`."""
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        per_gpu = gpu.memory_gb * gpu_memory_utilization - activation_reserve_gb
        return cls(
            label=spec.model_label,
            usable_bytes=spec.gpus_per_replica * per_gpu * 1e9,
            weights_bytes=weight_bytes(arch, spec.precision),
            kv_per_token=kv_bytes_per_token(arch, spec.tensor_parallel or spec.gpus_per_replica),
        )

    @property
    def kv_capacity_bytes(self) -> float:
        """Bytes left for the KV cache (negative: the weights do not fit)."""
        return self.usable_bytes - self.weights_bytes

    def tokens_per_sequence(self, input_tokens: int, output_tokens: int) -> int:
        """KV tokens one finished sequence holds, in whole blocks."""
        tokens = int(input_tokens) + int(output_tokens)
        return -(-tokens // self.block_tokens) * self.block_tokens

    def bytes_at(self, batch: int, input_tokens: int, output_tokens: int) -> float:
        """Memory a replica needs at `batch` sequences of full length: weights plus KV cache."""
        return self.weights_bytes + batch * self.tokens_per_sequence(input_tokens, output_tokens) * self.kv_per_token

    def max_batch(self, input_tokens: int, output_tokens: int) -> int:
        """Largest batch whose full-length sequences fit (closed form; 0 when none does)."""
        per_sequence = self.tokens_per_sequence(input_tokens, output_tokens) * self.kv_per_token
        batch = max(int(self.kv_capacity_bytes // per_sequence), 0)
        # agree with bytes_at exactly where floating point rounds at the boundary
        while batch > 0 and self.bytes_at(batch, input_tokens, output_tokens) > self.usable_bytes:
            batch -= 1
        while self.bytes_at(batch + 1, input_tokens, output_tokens) <= self.usable_bytes:
            batch += 1
        return batch

    def bound(self, input_tokens: int, output_tokens: int) -> Bound:
        """The memory bound at given lengths (bytes needed <= usable bytes)."""
        return Bound("memory", lambda b: self.bytes_at(b, input_tokens, output_tokens), self.usable_bytes, unit="bytes")

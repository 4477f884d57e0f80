"""What a live site publishes: the datacenter state plus what its real servers measured.

A :class:`LiveDatacenterState` is a :class:`~g2gsim.datacenter.state.DatacenterState` (so
every controller reads it unchanged): ``power_w`` and ``model_power_w`` are the *augmented*
power the grid sees. Next to it, the measured power of the real GPUs, the augmentation
factor and each server's Prometheus snapshot let a user check the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g2gsim.datacenter.state import DatacenterState

__all__ = ["PROMETHEUS_FIELDS", "LiveDatacenterState"]

#: The per-model Prometheus snapshot of a live state (vLLM's ``/metrics``, summed over labels).
PROMETHEUS_FIELDS = ("running", "waiting", "kv_cache_usage", "preemptions")


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class LiveDatacenterState(DatacenterState):
    """One live sample. Arrays are indexed like `models`; phases a, b, c.

    ``measured_power_w`` splits the real GPUs' total evenly over the phases (real GPUs have
    no phase; no base load is added). ``augmentation_factor`` is active virtual replicas /
    real replicas (real GPUs / GPUs per replica), so the augmented power of a model is about
    its measured power x factor x the mean server amplitude.
    """

    measured_power_w: np.ndarray  # (3,) real GPUs' power, split evenly over the phases, W
    measured_model_power_w: np.ndarray  # (n_models,) real GPUs' power per model, W
    augmentation_factor: np.ndarray  # (n_models,) active virtual replicas / real replicas
    running: np.ndarray  # (n_models,) requests running (vllm:num_requests_running)
    waiting: np.ndarray  # (n_models,) requests waiting (vllm:num_requests_waiting)
    kv_cache_usage: np.ndarray  # (n_models,) KV-cache usage, 0-1 (vllm:kv_cache_usage_perc)
    preemptions: np.ndarray  # (n_models,) preemptions so far (vllm:num_preemptions_total)
    stale: np.ndarray  # (n_models,) bool: the server is down or one of its meters is stale

    @property
    def augmented_model_power_w(self) -> np.ndarray:
        """Augmented power per model, W (the grid's view; same as ``model_power_w``)."""
        return self.model_power_w

    def prometheus_of(self, model: str) -> dict[str, float]:
        """The Prometheus snapshot of a model's server, by short name."""
        m = self.index(model)
        return {name: float(getattr(self, name)[m]) for name in PROMETHEUS_FIELDS}

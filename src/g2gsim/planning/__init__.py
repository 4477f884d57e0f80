"""SLO planning: the largest batch each model can serve within its ITL, TTFT and KV-cache memory bounds.

- :mod:`~g2gsim.planning.search`: one search (exponential, then binary, trusting only
  evaluated batches) for the largest batch meeting every monotone bound, and the closed form
  on a logistic ITL fit.
- :mod:`~g2gsim.planning.architecture`: model and GPU figures with their sources.
- :mod:`~g2gsim.planning.memory`: weights and KV cache against a replica's GPU memory.
- :mod:`~g2gsim.planning.ttft`: a prefill roofline with queueing at the batch in service.
- :mod:`~g2gsim.planning.plan`: per-model plans (``g2gsim plan-batch``) and the cut of a
  spec's feasible sizes at a planned limit (a scenario's ``batch_limit = "plan"``).
"""

from g2gsim.planning.architecture import (
    ARCHITECTURES,
    GPUS,
    GpuSpec,
    MissingFigureError,
    ModelArchitecture,
    architecture_of,
    gpu_of,
)
from g2gsim.planning.memory import MemoryModel, kv_bytes_per_token, weight_bytes
from g2gsim.planning.plan import BatchPlan, ModelBounds, SloTargets, limit_spec, plan_batches, plan_model
from g2gsim.planning.search import (
    Bound,
    SearchResult,
    largest_batch_meeting,
    largest_batch_under,
    logistic_batch_limit,
)
from g2gsim.planning.ttft import TtftCalibration, TtftModel, TtftSample, calibrate

__all__ = [
    "ARCHITECTURES",
    "GPUS",
    "BatchPlan",
    "Bound",
    "GpuSpec",
    "MemoryModel",
    "MissingFigureError",
    "ModelArchitecture",
    "ModelBounds",
    "SearchResult",
    "SloTargets",
    "TtftCalibration",
    "TtftModel",
    "TtftSample",
    "architecture_of",
    "calibrate",
    "gpu_of",
    "kv_bytes_per_token",
    "largest_batch_meeting",
    "largest_batch_under",
    "limit_spec",
    "logistic_batch_limit",
    "plan_batches",
    "plan_model",
    "weight_bytes",
]

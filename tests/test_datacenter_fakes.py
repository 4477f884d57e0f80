"""Small, fast stand-ins shared by the datacenter tests: specs, a deterministic data source,
site configurations and a probe controller that checks every published state.

Imported by the other ``test_datacenter_*`` modules; it holds no tests itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from mlenergy.data.modeling import ITLMixtureModel

from g2gsim.data.source import DataSource, PowerTemplate
from g2gsim.data.spec import ModelSpec
from g2gsim.data.training import TrainingTrace
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
    TrainingSchedule,
)
from g2gsim.kernel import Command, Controller

BATCHES = (8, 16, 32, 64, 128)


def make_spec(
    label: str, gpus_per_replica: int = 1, batches: Sequence[int] = BATCHES, deadline: float = 0.1
) -> ModelSpec:
    """A model spec with only what the datacenter needs (identity fields are placeholders)."""
    fields: dict[str, Any] = {
        "model_label": label,
        "model_id": f"test-org/{label}",
        "gpu_model": "H100",
        "task": "test",
        "gpus_per_replica": gpus_per_replica,
        "tensor_parallel": gpus_per_replica,
        "itl_deadline_s": deadline,
        "batch_sizes": tuple(batches),
        "feasible_batch_sizes": tuple(batches),
    }
    return ModelSpec(**{k: v for k, v in fields.items() if k in ModelSpec.model_fields})


def template_level(batch: int) -> float:
    """Mean per-GPU power of the fake templates at a batch size, W."""
    return 300.0 + 40.0 * math.log2(batch)


def itl_fit(batch: int) -> ITLMixtureModel:
    """The fake ITL mixture of a batch size (mean grows with the batch)."""
    return ITLMixtureModel(
        loc=0.002 * math.log2(batch),
        pi_steady=0.9,
        sigma_steady=0.2,
        scale_steady=0.01,
        pi_stall=0.1,
        sigma_stall=0.5,
        scale_stall=0.04,
    )


class FakeSource(DataSource):
    """Deterministic periodic templates (period 3.7 s) and fixed mixtures; dt is recorded.

    `dt_override` makes it return templates built for another step (to test the dt check);
    `no_itl` makes it return no latency fits.
    """

    def __init__(self, dt_override: Fraction | None = None, no_itl: bool = False) -> None:
        self.dt_override = dt_override
        self.no_itl = no_itl

    @property
    def description(self) -> str:
        return "fake test data"

    @property
    def is_synthetic(self) -> bool:
        return True

    def batch_sizes(self, spec: ModelSpec) -> tuple[int, ...]:
        return tuple(spec.batch_sizes)

    def power_template(self, spec: ModelSpec, batch: int, dt: Fraction, horizon_s: float) -> PowerTemplate:
        dt = Fraction(dt)
        used = self.dt_override or dt
        n = math.ceil(Fraction(repr(float(horizon_s))) / used) + 1
        t = np.arange(n) * float(used)
        watts = template_level(batch) + 60.0 * np.sin(2 * np.pi * t / 3.7) + 10.0 * (spec.gpus_per_replica - 1)
        return make_template(np.maximum(watts, 0.0), used)

    def itl_fit(self, spec: ModelSpec, batch: int) -> ITLMixtureModel | None:
        return None if self.no_itl else itl_fit(batch)

    def trace(self, spec: ModelSpec, batch: int):  # pragma: no cover - templates are built directly
        raise NotImplementedError("FakeSource builds its templates directly")

    def logistic_fits(self, spec: ModelSpec):  # pragma: no cover - not used by the datacenter
        raise NotImplementedError


def make_template(watts: np.ndarray, dt: Fraction) -> PowerTemplate:
    """A data-layer template from per-GPU watts sampled at dt."""
    return PowerTemplate(np.asarray(watts, dtype=float), Fraction(dt))


def flat_trace(watts: float = 250.0, span_s: float = 100.0) -> TrainingTrace:
    """A constant single-GPU training trace (so its rescaled power is the target peak)."""
    t = np.linspace(0.0, span_s, 11)
    return TrainingTrace(t, np.full(t.size, watts))


def site(
    replicas: dict[str, int | ReplicaSchedule] | None = None,
    *,
    gpus_per_replica: dict[str, int] | None = None,
    capacity_gpus: int = 240,
    base_kw_per_phase: float = 0.0,
    noise_fraction: float = 0.0,
    amplitude: tuple[float, float] = (1.0, 1.0),
    training: TrainingSchedule | None = None,
    initial_batch: int = 32,
    gpus_per_server: int = 8,
) -> DatacenterConfig:
    """A small site: by default two models, "a" (1 GPU) with 40 replicas and "b" (4 GPUs) with 10."""
    replicas = {"a": 40, "b": 10} if replicas is None else replicas
    per_replica = {"a": 1, "b": 4, **(gpus_per_replica or {})}
    deployments = [
        ModelDeployment(
            spec=make_spec(label, per_replica.get(label, 1)),
            initial_batch=initial_batch,
            replicas=count,
        )
        for label, count in replicas.items()
    ]
    return DatacenterConfig(
        deployments=deployments,
        capacity_gpus=capacity_gpus,
        facility=Facility(gpus_per_server=gpus_per_server, base_kw_per_phase=base_kw_per_phase),
        augmentation=PowerAugmentation(amplitude_scale_range=amplitude, noise_fraction=noise_fraction),
        training=training or TrainingSchedule(),
    )


class Script(Controller):
    """Sends given commands at given times (s): [(t, command), ...]; every 0.1 s."""

    def __init__(self, plan: Iterable[tuple[float, Command]], name: str = "script") -> None:
        super().__init__(name, Fraction(1, 10))
        self.plan = [(round(t * 10), c) for t, c in plan]

    def control(self, tick: int) -> list[Command]:
        step = round(self.ctx.seconds(tick) * 10)
        return [c for k, c in self.plan if k == step]


class Probe(Controller):
    """Runs `check(datacenter, state)` after every datacenter step (control phase, every 0.1 s)."""

    def __init__(self, site_name: str, check: Callable[[Any, Any], None], name: str = "probe") -> None:
        super().__init__(name, Fraction(1, 10))
        self.site_name = site_name
        self.check = check
        self.calls = 0

    def start(self) -> None:
        self._box = self.ctx.subscribe(self.site_name)
        self._site = self.ctx.lookup(self.site_name)

    def control(self, tick: int) -> list[Command]:
        self.check(self._site, self._box.value)
        self.calls += 1
        return []

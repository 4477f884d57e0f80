"""What a trace-driven site is made of: deployments, replica schedules, facility, training (SPEC 2.1).

Every object is a frozen pydantic model, validated once with errors that name the field, the
value and the allowed range. Times are plain seconds (floats): schedules are evaluated at the
datacenter's own exact step times, so they never need to be whole numbers of base ticks.

Capacity convention (as OpenG2G): ``capacity_gpus`` sizes the inference server pool; training
runs are a power overlay on GPUs outside that pool and do not count against it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    PrivateAttr,
    field_validator,
    model_validator,
)

from g2gsim.data.spec import ModelSpec
from g2gsim.data.training import TrainingTrace
from g2gsim.datacenter.power_cap import GpuPowerCaps

__all__ = [
    "DatacenterConfig",
    "Facility",
    "ModelDeployment",
    "PowerAugmentation",
    "ReplicaRamp",
    "ReplicaSchedule",
    "ScheduledTraining",
    "TraceReplay",
    "TrainingRun",
    "TrainingSchedule",
    "check_capacity",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _finite_seconds(name: str, value: float) -> float:
    """A finite, non-negative time in seconds, or an error naming the field and value."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite time >= 0 s, got {value!r}")
    return float(value)


# -- replica schedules ----------------------------------------------------------------------
class ReplicaRamp(_Frozen):
    """A linear change of the replica count to `target` over [t_start_s, t_end_s]."""

    target: int = Field(ge=0, description="replica count reached at t_end_s")
    t_start_s: float = Field(ge=0, allow_inf_nan=False)
    t_end_s: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaRamp:
        if self.t_end_s < self.t_start_s:
            raise ValueError(
                f"t_end_s = {self.t_end_s} must be >= t_start_s = {self.t_start_s} (a ramp cannot run backwards)"
            )
        return self


class ReplicaSchedule(_Frozen):
    """Replica count of one model over time: `initial`, then non-overlapping linear ramps.

    count(t) = initial before the first ramp, linear inside a ramp window, the ramp's target
    after it; windows may touch but not overlap. The datacenter uses round(count(t)).
    """

    initial: int = Field(ge=0, description="replica count before the first ramp")
    ramps: tuple[ReplicaRamp, ...] = ()

    @field_validator("ramps")
    @classmethod
    def _sorted_disjoint(cls, ramps: tuple[ReplicaRamp, ...]) -> tuple[ReplicaRamp, ...]:
        ordered = tuple(sorted(ramps, key=lambda r: (r.t_start_s, r.t_end_s)))
        for before, after in itertools.pairwise(ordered):
            if after.t_start_s < before.t_end_s:
                raise ValueError(
                    f"ramp windows [{before.t_start_s}, {before.t_end_s}] s and "
                    f"[{after.t_start_s}, {after.t_end_s}] s overlap (touching ends are allowed)"
                )
        return ordered

    def ramp_to(self, target: int, t_start: float, t_end: float) -> ReplicaSchedule:
        """A new schedule with one more ramp to `target` over [t_start, t_end] s."""
        ramp = ReplicaRamp(target=target, t_start_s=t_start, t_end_s=t_end)
        return ReplicaSchedule(initial=self.initial, ramps=(*self.ramps, ramp))

    def count(self, t: float) -> float:
        """Replica count (not rounded) at time t, s."""
        level = float(self.initial)
        for ramp in self.ramps:
            if t < ramp.t_start_s:
                return level
            if t <= ramp.t_end_s:
                if ramp.t_end_s == ramp.t_start_s:
                    return float(ramp.target)
                alpha = (t - ramp.t_start_s) / (ramp.t_end_s - ramp.t_start_s)
                return level + (ramp.target - level) * alpha
            level = float(ramp.target)
        return level

    def counts(self, t: ArrayLike) -> np.ndarray:
        """Vectorised :meth:`count`: the same arithmetic, element by element.

        As in the scalar rule, the first ramp whose end is not before t decides: its start
        level before its window, the interpolation inside it.
        """
        times = np.asarray(t, dtype=float)
        if not self.ramps:
            return np.full(times.shape, float(self.initial))
        starts = np.array([r.t_start_s for r in self.ramps])
        ends = np.array([r.t_end_s for r in self.ramps])
        targets = np.array([float(r.target) for r in self.ramps])
        before = np.concatenate(([float(self.initial)], targets[:-1]))
        index = np.minimum(np.searchsorted(ends, times, side="left"), len(self.ramps) - 1)
        start, end, target, level = starts[index], ends[index], targets[index], before[index]
        width = end - start
        alpha = (times - start) / np.where(width > 0, width, 1.0)
        inside = np.where(width > 0, level + (target - level) * alpha, target)
        value = np.where(times < start, level, inside)
        return np.where(times > ends[-1], targets[-1], value)

    def count_exact(self, t: Fraction) -> Fraction:
        """:meth:`count` in exact arithmetic (ramp times taken as the decimals they print as)."""
        level = Fraction(self.initial)
        for ramp in self.ramps:
            start, end = _exact(ramp.t_start_s), _exact(ramp.t_end_s)
            if t < start:
                return level
            if t <= end:
                if end == start:
                    return Fraction(ramp.target)
                return level + (ramp.target - level) * (t - start) / (end - start)
            level = Fraction(ramp.target)
        return level

    def changes(self, period: Fraction, n_steps: int) -> tuple[tuple[int, int], ...]:
        """Where round(count) changes at the steps k * period, k < n_steps: (first step, value).

        The first entry is step 0. Exact arithmetic (ramp times taken as the decimals they
        print as), halves rounded to even: inside a ramp from L to T the count crosses each
        half-integer h between them once, at tau = t_start + (h - L) (t_end - t_start) / (T - L),
        so each change step is a floor or a ceiling of tau / period; no step is visited.
        """
        period = Fraction(period)
        out: list[tuple[int, int]] = [(0, round(self.count_exact(Fraction(0))))]
        level = Fraction(self.initial)
        previous_end: Fraction | None = None
        for ramp in self.ramps:
            start, end = _exact(ramp.t_start_s), _exact(ramp.t_end_s)
            for step, value in _ramp_changes(level, ramp.target, start, end, period, touching=previous_end == start):
                if step >= n_steps:
                    break
                if step > 0:
                    _record_change(out, step, value)
            level, previous_end = Fraction(ramp.target), end
        return tuple(out)

    def boundaries(self) -> tuple[float, ...]:
        """Sorted distinct ramp start and end times, s."""
        return tuple(sorted({t for r in self.ramps for t in (r.t_start_s, r.t_end_s)}))

    def max_count(self) -> int:
        """Largest count the schedule ever asks for."""
        return max([self.initial, *(r.target for r in self.ramps)])


# -- deployments and facility ----------------------------------------------------------------
class ModelDeployment(_Frozen):
    """One model served at a site: its spec, starting batch size and replica schedule."""

    spec: ModelSpec
    initial_batch: int = Field(gt=0)
    replicas: ReplicaSchedule

    @field_validator("replicas", mode="before")
    @classmethod
    def _count_is_schedule(cls, value: Any) -> Any:
        """A bare integer means a constant replica count."""
        if isinstance(value, int) and not isinstance(value, bool):
            return ReplicaSchedule(initial=value)
        return value

    @model_validator(mode="after")
    def _feasible_batch(self) -> ModelDeployment:
        feasible = sorted(self.spec.feasible_batch_sizes or ())
        if self.initial_batch not in feasible:
            raise ValueError(
                f"initial_batch = {self.initial_batch} is not a feasible batch size of "
                f"{self.spec.model_label!r}; allowed: {feasible}"
            )
        return self

    @property
    def label(self) -> str:
        """The served model's label."""
        return self.spec.model_label


class Facility(_Frozen):
    """Physical site parameters."""

    gpus_per_server: int = Field(default=8, ge=1)
    base_kw_per_phase: float = Field(default=0.0, ge=0.0, allow_inf_nan=False, description="non-GPU load per phase")
    power_factor: float = Field(default=0.95, gt=0.0, le=1.0, description="lagging cos(phi) in (0, 1]")


class PowerAugmentation(_Frozen):
    """Per-server amplitude spread and additive noise that turn a few traces into a fleet."""

    amplitude_scale_range: tuple[float, float] = (1.0, 1.0)
    noise_fraction: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)

    @field_validator("amplitude_scale_range")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
            raise ValueError(f"amplitude_scale_range = ({lo}, {hi}) must satisfy 0 < lo <= hi (finite)")
        return (float(lo), float(hi))


def _is_default(value: object) -> bool:
    return value in (None, "sampled", "streams")


class TraceReplay(_Frozen):
    """How the traces are replayed: template length, observed ITL and the server layout's draw.

    The defaults are the model: each (model, batch) template spans the whole horizon, the
    observed ITL is drawn from the fitted mixture, and the layout comes from the site's own
    ``layout`` stream. The other settings reproduce OpenG2G exactly (``benchmarks/
    fidelity_exact.py``): ``template_s = 600`` is the length OpenG2G's presets build
    (``InferenceData.load``'s default), ``itl_mode = "mean"`` fixes every model's ITL at its
    mixture's mean (no randomness), ``layout = "openg2g"`` draws phases, staggers, amplitudes
    and priorities from ``numpy.random.default_rng(seed)`` as OpenG2G's datacenter does.

    Why the horizon is the better template length: a trace is a measured run that starts with
    a low-power warm-up; a template repeats the trace periodically, so a template of length
    T ends wherever the trace's cycle is at T. Over the horizon every server replays the
    trace's cycles in the measured proportion; a 600 s template cut mid-cycle over-represents
    the final partial cycle (often warm-up) on every wrap, which lowers mean inference power
    by about 0.2 % (0.35-0.39 % for the two Qwen models on the ML.ENERGY-derived data).
    """

    template_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        exclude_if=_is_default,
        description="length of each model's per-GPU power template, s; None: the run's horizon (OpenG2G: 600)",
    )
    itl_mode: Literal["sampled", "mean"] = Field(
        default="sampled",
        exclude_if=_is_default,
        description='"sampled": drawn from the fitted ITL mixture; "mean": the mixture\'s mean (deterministic)',
    )
    layout: Literal["streams", "openg2g"] = Field(
        default="streams",
        exclude_if=_is_default,
        description='server layout draw: "streams" (the site\'s layout stream) or "openg2g" (default_rng(seed))',
    )


# -- training --------------------------------------------------------------------------------
class TrainingRun(_Frozen):
    """A training job: a single-GPU trace replayed periodically on `n_gpus`, peak rescaled.

    The trace is shifted to start at 0 and rescaled so that its maximum equals
    `target_peak_w_per_gpu`; its period is its time span.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    trace: InstanceOf[TrainingTrace]
    n_gpus: int = Field(gt=0)
    target_peak_w_per_gpu: float = Field(default=400.0, gt=0.0, allow_inf_nan=False)

    _t: np.ndarray = PrivateAttr()
    _w: np.ndarray = PrivateAttr()
    _period: float = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        t = np.asarray(self.trace.t_s, dtype=float)
        w = np.asarray(self.trace.power_w, dtype=float)
        t = t - t[0]
        period = float(t[-1])
        if not period > 0:
            raise ValueError(f"training trace spans {period} s; it needs a positive time span")
        peak = float(np.max(w))
        if not peak > 0:
            raise ValueError(f"training trace peak is {peak} W; it must be > 0 to rescale to the target")
        self._t = t
        self._w = w * (self.target_peak_w_per_gpu / peak)
        self._period = period

    @property
    def period_s(self) -> float:
        """Length of one replay of the trace, s."""
        return self._period

    def at(self, t_start: float, t_end: float) -> TrainingSchedule:
        """Schedule this run over [t_start, t_end] s."""
        return TrainingSchedule(entries=(ScheduledTraining(run=self, t_start_s=t_start, t_end_s=t_end),))

    def power(self, t_local: ArrayLike) -> np.ndarray:
        """Total power (W over all GPUs) at times since the run started (periodic replay)."""
        return self.power_function()(t_local)

    def power_function(self) -> Callable[[ArrayLike], np.ndarray]:
        """:meth:`power` as a plain function of the times (for repeated calls: no attribute
        lookups on the model)."""
        t, w, period, n_gpus = self._t, self._w, self._period, self.n_gpus

        def power(t_local: ArrayLike) -> np.ndarray:
            return n_gpus * np.interp(np.mod(np.asarray(t_local, dtype=float), period), t, w)

        return power


class ScheduledTraining(_Frozen):
    """One training run active over [t_start_s, t_end_s]."""

    run: TrainingRun
    t_start_s: float = Field(ge=0, allow_inf_nan=False)
    t_end_s: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> ScheduledTraining:
        if self.t_end_s < self.t_start_s:
            raise ValueError(f"t_end_s = {self.t_end_s} must be >= t_start_s = {self.t_start_s}")
        return self


class TrainingSchedule(_Frozen):
    """Training runs over time; compose with ``run_a.at(0, 10) | run_b.at(5, 20)``."""

    entries: tuple[ScheduledTraining, ...] = ()

    @field_validator("entries")
    @classmethod
    def _by_start(cls, entries: tuple[ScheduledTraining, ...]) -> tuple[ScheduledTraining, ...]:
        return tuple(sorted(entries, key=lambda e: (e.t_start_s, e.t_end_s)))

    def __or__(self, other: TrainingSchedule) -> TrainingSchedule:
        if not isinstance(other, TrainingSchedule):
            return NotImplemented
        return TrainingSchedule(entries=(*self.entries, *other.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def power(self, t: ArrayLike) -> np.ndarray:
        """Total training power, W, at times t (zero outside every run's window)."""
        times = np.asarray(t, dtype=float)
        total = np.zeros(times.shape)
        for entry in self.entries:
            active = (times >= entry.t_start_s) & (times <= entry.t_end_s)
            if np.any(active):
                total[active] += entry.run.power(times[active] - entry.t_start_s)
        return total


# -- the site --------------------------------------------------------------------------------
class DatacenterConfig(_Frozen):
    """Everything that defines a trace-driven site, checked for GPU capacity over time.

    Deployments are kept sorted by label (the order of every state array). The GPUs the
    schedules ask for, and the servers they need, must fit the site at t = 0 and at every
    ramp boundary.
    """

    deployments: tuple[ModelDeployment, ...] = Field(min_length=1)
    capacity_gpus: int = Field(gt=0)
    facility: Facility = Facility()
    augmentation: PowerAugmentation = PowerAugmentation()
    training: TrainingSchedule = TrainingSchedule()
    seed: int | None = None
    gpu_power: GpuPowerCaps = GpuPowerCaps()
    """GPU power-cap grid, rated power and performance floors (SetPowerCap)."""
    replay: TraceReplay = TraceReplay()
    """Template length, ITL mode and layout draw (defaults: horizon, sampled, the layout stream)."""

    @field_validator("deployments")
    @classmethod
    def _unique_sorted(cls, deployments: tuple[ModelDeployment, ...]) -> tuple[ModelDeployment, ...]:
        labels = [d.label for d in deployments]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"each model can be deployed once per site; repeated labels: {repeated}")
        return tuple(sorted(deployments, key=lambda d: d.label))

    @model_validator(mode="after")
    def _fits_capacity(self) -> DatacenterConfig:
        times = sorted({0.0, *(t for d in self.deployments for t in d.replicas.boundaries())})
        for t in times:
            check_capacity(self, t, {d.label: round(d.replicas.count(t)) for d in self.deployments})
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        """Served model labels, sorted."""
        return tuple(d.label for d in self.deployments)

    @property
    def specs(self) -> dict[str, ModelSpec]:
        """Served model specs by label, sorted by label."""
        return {d.label: d.spec for d in self.deployments}

    @property
    def num_servers(self) -> int:
        """Servers in the pool: ceil(capacity_gpus / gpus_per_server)."""
        return math.ceil(self.capacity_gpus / self.facility.gpus_per_server)

    def deployment(self, label: str) -> ModelDeployment:
        """A deployment by model label, with an error naming the served labels."""
        for deployment in self.deployments:
            if deployment.label == label:
                return deployment
        raise KeyError(f"no model {label!r} at this site; models: {list(self.labels)}")


def gpu_demand(config: DatacenterConfig, replicas: Mapping[str, int]) -> dict[str, int]:
    """GPUs each model needs for the given replica counts."""
    return {label: int(n) * config.deployment(label).spec.gpus_per_replica for label, n in replicas.items()}


def check_capacity(config: DatacenterConfig, t: float, replicas: Mapping[str, int]) -> None:
    """Raise a ValueError naming the time and the numbers if replicas do not fit the site."""
    demand = gpu_demand(config, replicas)
    used = sum(demand.values())
    per_server = config.facility.gpus_per_server
    servers = sum(math.ceil(g / per_server) for g in demand.values())
    detail = ", ".join(
        f"{label} {replicas[label]} x {config.deployment(label).spec.gpus_per_replica}" for label in demand
    )
    if used > config.capacity_gpus:
        raise ValueError(
            f"at t = {t:g} s the replicas need {used} GPUs ({detail}) but capacity_gpus = {config.capacity_gpus}"
        )
    if servers > config.num_servers:
        raise ValueError(
            f"at t = {t:g} s the replicas need {servers} servers of {per_server} GPUs ({detail}) "
            f"but the site has {config.num_servers} (capacity_gpus = {config.capacity_gpus})"
        )


def _ramp_changes(
    level: Fraction, target: int, start: Fraction, end: Fraction, period: Fraction, *, touching: bool
) -> Iterator[tuple[int, int]]:
    """(step, round(count)) of one ramp from `level`, at each step where the rounded count moves.

    A zero-width ramp jumps at its start, or just after it when the previous ramp ends there
    (that ramp still rules its own end time). Otherwise the count passes value v's rounding
    threshold h = v -+ 1/2 at tau; at exactly h, half-to-even rounding reaches v only if v is
    even, so the step is the first k with k * period >= tau (v even) or > tau (v odd).
    """
    if end == start:
        step = math.floor(start / period) + 1 if touching else math.ceil(start / period)
        yield step, target
        return
    if target == level:
        return
    sign = 1 if target > level else -1
    slope = (end - start) / (target - level)
    value = int(level)  # levels are whole replica counts
    while value != target:
        value += sign
        tau = start + (value - Fraction(sign, 2) - level) * slope
        yield (math.ceil(tau / period) if value % 2 == 0 else math.floor(tau / period) + 1), value


def _record_change(changes: list[tuple[int, int]], step: int, value: int) -> None:
    """Append (step, value) to a change list, folding changes that land on the same step."""
    if changes[-1][0] == step:
        changes.pop()
    if changes[-1][1] != value:
        changes.append((step, value))


def _exact(seconds: float) -> Fraction:
    """A float time as the decimal it prints as (0.1 -> 1/10)."""
    return Fraction(repr(float(seconds)))

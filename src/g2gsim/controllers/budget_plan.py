"""The exact plan of a power-budget controller and its online correction.

The problem, per re-plan, for the models i of one site::

    max  sum_i w_i n_i R_i(b_i) / s_i(b_i, c_i)
    s.t. U + sum_i G_i(n_i) min(r_i^P P_i(b_i) / g_i, c_i) <= B (1 - margin)
         r_i^L L_i(b_i) s_i(b_i, c_i) <= deadline_i (1 - latency_margin)   for every i
         r_i^T T_i(b_i, c_i) <= ttft_deadline_i (1 - latency_margin)     where a TTFT bound is given
         b_i <= memory_batch_i                                           where a memory bound is given

with, per model, the batch b_i (from its feasible set), the active replicas n_i = N_i -
round(f N_i) for a stand-down fraction f, and the GPU power cap c_i (from the site's cap
grid, or none); g_i GPUs per replica; G_i(n) the GPUs the site powers for n replicas
(whole servers: ceil(n g_i / gpus_per_server) gpus_per_server, holding G_i / g_i
replicas); P_i, L_i, R_i the logistic fits of power (W per replica), ITL (s) and
throughput (tokens/s per replica); T_i the TTFT model of :mod:`g2gsim.planning.ttft` (prefill
slowed by the cap as decoding is, queueing at the option's ITL) and memory_batch_i the largest
batch whose sequences fit in a replica's memory (:class:`~g2gsim.planning.ModelBounds`, the
same bounds a scenario's ``batch_limit = "plan"`` uses); s_i = max(1, floor_i / c_i) the
cap slowdown of :mod:`g2gsim.datacenter.power_cap`; U the uncontrolled load (base load,
training: the site's power minus its models' power, its maximum over a recent window);
r_i^P, r_i^L and r_i^T the online corrections. Knobs that are not allowed stay at their observed
values.

Solution (exact, no heuristic): the per-model choices are enumerated (a few hundred per
model), the deadline-infeasible ones dropped, and each model's options reduced to its Pareto
frontier of (power, value). Frontiers are merged model by model (a dynamic program over
models whose states are the non-dominated (power, value) pairs of the models so far; states
that cannot fit even with every remaining model at its minimum power are dropped). This is
the exact optimum of the discrete problem. A model with no deadline-feasible option uses its
lowest-ITL option. If nothing fits the budget, the plan is the least-power plan.

Online correction: after each step the controller compares observation with prediction:
r^P from the model's measured power over the predicted *uncapped* power, r^L from the
observed ITL over the predicted ITL, r^T (where a live site reports TTFT) from the observed TTFT
over the TTFT modelled at the observed batch and ITL; each is smoothed exponentially (weight 0.3) and clipped
to [0.5, 2]. A power sample taken while the model is held at its cap (the cap is below the
draw the model predicts, or the measured draw sits at the cap) is *censored*: it only says
the true ratio is at least the observed one, so it can raise the estimate but never lower it
(:class:`RatioEstimator`). A naive estimator that takes it at face value learns the cap, not
the model, and can never find out that it under-predicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.planning import ModelBounds

__all__ = [
    "FlexibilityBand",
    "ModelOptions",
    "ModelPlanSpec",
    "Plan",
    "PlanInputs",
    "RatioEstimator",
    "flexibility_band",
    "model_options",
    "plan_exact",
]


# -- the online correction ---------------------------------------------------------------------
class RatioEstimator:
    """Exponentially smoothed observed/predicted ratio, clipped, with censored samples.

    ``update(observed, predicted, censored)``: an uncensored sample moves the estimate by
    ``smoothing`` toward observed / predicted; a censored one (observed is only a lower
    bound of the truth) moves it only if it lies above the estimate. ``naive=True`` treats
    every sample as uncensored (for comparison).
    """

    __slots__ = ("hi", "lo", "naive", "smoothing", "value")

    def __init__(
        self, smoothing: float = 0.3, lo: float = 0.5, hi: float = 2.0, *, naive: bool = False, initial: float = 1.0
    ) -> None:
        self.smoothing = float(smoothing)
        self.lo, self.hi = float(lo), float(hi)
        self.naive = bool(naive)
        self.value = float(initial)

    def update(self, observed: float, predicted: float, censored: bool = False) -> float:
        """Fold in one sample; returns the new estimate (non-finite or non-positive samples are skipped)."""
        if not (math.isfinite(observed) and math.isfinite(predicted) and predicted > 0 and observed >= 0):
            return self.value
        sample = observed / predicted
        if censored and not self.naive and sample <= self.value:
            return self.value  # a lower bound below the estimate says nothing new
        value = (1.0 - self.smoothing) * self.value + self.smoothing * sample
        self.value = min(max(value, self.lo), self.hi)
        return self.value


# -- planning -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPlanSpec:
    """What the planner knows of one model."""

    label: str
    gpus_per_replica: int
    deadline_s: float
    fits: Any  # .power (W/replica), .latency (s), .throughput (tokens/s/replica) vs log2(batch)
    weight: float = 1.0
    gpus_per_server: int | None = None  # the site powers whole servers (None: exact GPU counts)
    bounds: ModelBounds | None = None  # TTFT and memory bounds (None: ITL only)
    ttft_deadline_s: float = math.inf  # TTFT the plan must meet, margin applied (inf: none)

    @property
    def memory_batch(self) -> int | None:
        """Largest batch that fits in a replica's memory (None: no memory bound)."""
        return None if self.bounds is None else self.bounds.memory_batch

    @property
    def has_ttft(self) -> bool:
        """Whether the plan bounds this model's TTFT."""
        return self.bounds is not None and self.bounds.ttft is not None and math.isfinite(self.ttft_deadline_s)


@dataclass(frozen=True)
class PlanInputs:
    """One planning problem: per-model choices and corrections, the budget and the load outside."""

    models: tuple[ModelPlanSpec, ...]
    available: tuple[int, ...]  # N_i, replicas that can run
    batches: tuple[tuple[int, ...], ...]  # allowed batches per model
    standdown: tuple[tuple[float, ...], ...]  # allowed stand-down fractions per model
    caps_w: tuple[tuple[float, ...], ...]  # allowed caps per model, W per GPU (inf: none)
    power_ratio: tuple[float, ...]
    itl_ratio: tuple[float, ...]
    uncontrolled_kw: float
    budget_kw: float  # the limit the plan must meet (margin already applied)
    gpu_power: GpuPowerCaps = field(default_factory=GpuPowerCaps)
    ttft_ratio: tuple[float, ...] = ()  # TTFT corrections per model (empty: all 1)


@dataclass(frozen=True)
class ModelOptions:
    """Every choice of one model with its predicted power (kW), value, ITL and throughput."""

    batch: np.ndarray
    replicas: np.ndarray
    cap_w: np.ndarray
    power_kw: np.ndarray
    value: np.ndarray
    itl_s: np.ndarray
    throughput: np.ndarray  # tokens/s of the model (unweighted)
    feasible: np.ndarray  # ITL within the deadline (and TTFT and memory where bounded)
    ttft_s: np.ndarray | None = None  # modelled TTFT (None: no TTFT bound)


def model_options(
    spec: ModelPlanSpec,
    available: int,
    batches: Sequence[int],
    standdown: Sequence[float],
    caps_w: Sequence[float],
    power_ratio: float,
    itl_ratio: float,
    gpu_power: GpuPowerCaps,
    ttft_ratio: float = 1.0,
) -> ModelOptions:
    """Enumerate batch x stand-down x cap for one model (vectorised)."""
    b = np.asarray(sorted(set(int(x) for x in batches)), dtype=np.int64)
    x = np.log2(b.astype(float))
    p_rep = np.array([spec.fits.power.eval_x(v) for v in x]) * power_ratio  # W per replica, uncapped
    lat = np.array([spec.fits.latency.eval_x(v) for v in x]) * itl_ratio
    thr = np.array([spec.fits.throughput.eval_x(v) for v in x])
    n = np.array(sorted({int(available) - int(round(f * available)) for f in standdown}), dtype=np.int64)
    c = np.asarray(sorted(set(float(v) for v in caps_w)), dtype=float)
    g = float(spec.gpus_per_replica)
    draw = p_rep / g  # W per GPU
    fixed = gpu_power.floor_w.get(spec.label)
    floor = draw if fixed is None else np.minimum(draw, fixed)
    gps = spec.gpus_per_server
    if gps:  # the site allocates whole servers: powered GPUs and the replicas they hold
        powered = -(-(n * spec.gpus_per_replica) // gps) * gps
        effective = powered // spec.gpus_per_replica
    else:
        powered, effective = n * spec.gpus_per_replica, n
    B, K, C = np.meshgrid(np.arange(b.size), np.arange(n.size), c, indexing="ij")
    B, K, C = B.ravel(), K.ravel(), C.ravel()
    N, G, E = n[K], powered[K].astype(float), effective[K].astype(float)
    finite = np.isfinite(C)
    slow = np.where(finite, np.maximum(1.0, floor[B] / np.where(finite, C, 1.0)), 1.0)
    per_gpu = np.minimum(draw[B], C)
    power_kw = G * per_gpu / 1e3
    itl = lat[B] * slow
    throughput = E * thr[B] / slow
    feasible = itl <= spec.deadline_s * (1 + 1e-12)
    ttft = None
    if spec.has_ttft:
        assert spec.bounds is not None
        ttft = spec.bounds.ttft_s(b[B].astype(float), itl, slow) * ttft_ratio
        feasible &= ttft <= spec.ttft_deadline_s * (1 + 1e-12)
    if spec.memory_batch is not None:
        feasible &= b[B] <= spec.memory_batch
    return ModelOptions(
        batch=b[B],
        replicas=N,
        cap_w=C,
        power_kw=power_kw,
        value=spec.weight * throughput,
        itl_s=itl,
        throughput=throughput,
        feasible=feasible,
        ttft_s=ttft,
    )


@dataclass(frozen=True)
class Plan:
    """A solution: per-model batch, active replicas and cap, with predictions."""

    batch: dict[str, int]
    replicas: dict[str, int]
    cap_w: dict[str, float | None]
    power_kw: float  # predicted site power, incl. the uncontrolled load
    value: float
    throughput: dict[str, float]
    itl_s: dict[str, float]
    fits_budget: bool
    band_kw: tuple[float, float]  # flexibility band (site power, kW)
    infeasible_models: tuple[str, ...] = ()
    ttft_s: dict[str, float] = field(default_factory=dict)  # modelled TTFT of TTFT-bounded models


def _pareto(power: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (min power, max value) points, by increasing power."""
    order = np.lexsort((-value, power))
    v = value[order]
    best = np.maximum.accumulate(v)
    keep = np.ones(v.size, dtype=bool)
    keep[1:] = v[1:] > best[:-1]
    return order[keep]


def _candidates(opts: ModelOptions) -> tuple[np.ndarray, bool]:
    """Deadline-feasible options (or the lowest-ITL ones when none is feasible)."""
    idx = np.flatnonzero(opts.feasible)
    if idx.size:
        return idx, True
    best = np.flatnonzero(np.isclose(opts.itl_s, opts.itl_s.min()))
    return best, False


def plan_exact(inputs: PlanInputs) -> Plan:
    """The exact optimum of the discrete problem (Pareto dynamic program over models)."""
    ttft_ratio = inputs.ttft_ratio or (1.0,) * len(inputs.models)
    options = [
        model_options(spec, n, b, s, c, rp, rl, inputs.gpu_power, rt)
        for spec, n, b, s, c, rp, rl, rt in zip(
            inputs.models,
            inputs.available,
            inputs.batches,
            inputs.standdown,
            inputs.caps_w,
            inputs.power_ratio,
            inputs.itl_ratio,
            ttft_ratio,
            strict=True,
        )
    ]
    frontiers = []
    infeasible = []
    for spec, opts in zip(inputs.models, options, strict=True):
        cand, ok = _candidates(opts)
        if not ok:
            infeasible.append(spec.label)
        front = cand[_pareto(opts.power_kw[cand], opts.value[cand])]
        frontiers.append(front)
    mins = [float(opts.power_kw[f].min()) for opts, f in zip(options, frontiers, strict=True)]
    maxs = [float(opts.power_kw[f].max()) for opts, f in zip(options, frontiers, strict=True)]
    band = (inputs.uncontrolled_kw + sum(mins), inputs.uncontrolled_kw + sum(maxs))
    room = inputs.budget_kw - inputs.uncontrolled_kw
    rest_min = np.concatenate([np.cumsum(mins[::-1])[::-1][1:], [0.0]])  # min power of later models

    # DP state arrays: power, value, and one chosen option index per model so far
    power = np.zeros(1)
    value = np.zeros(1)
    choice = np.zeros((1, 0), dtype=np.int64)
    fits = True
    for i, (opts, front) in enumerate(zip(options, frontiers, strict=True)):
        p = (power[:, None] + opts.power_kw[front][None, :]).ravel()
        v = (value[:, None] + opts.value[front][None, :]).ravel()
        parent = np.repeat(np.arange(power.size), front.size)
        pick = np.tile(front, power.size)
        within = p + rest_min[i] <= room + 1e-9
        if not within.any():
            fits = False
            within = np.zeros(p.size, dtype=bool)
            within[np.argmin(p)] = True  # keep the least power (plus its best value below)
            low = p[within][0]
            within = np.isclose(p, low)
        keep = np.flatnonzero(within)
        keep = keep[_pareto(p[keep], v[keep])]
        power, value = p[keep], v[keep]
        choice = np.column_stack([choice[parent[keep]], pick[keep]])
    if fits:
        best = int(np.argmax(value))
    else:
        best = int(np.lexsort((-value, power))[0])
    chosen = _relax_caps(options, choice[best].copy(), room if fits else -math.inf)
    labels = [m.label for m in inputs.models]
    pick_of = {label: int(j) for label, j in zip(labels, chosen, strict=True)}
    total = inputs.uncontrolled_kw + float(sum(o.power_kw[pick_of[lb]] for o, lb in zip(options, labels, strict=True)))
    return Plan(
        batch={lb: int(o.batch[pick_of[lb]]) for o, lb in zip(options, labels, strict=True)},
        replicas={lb: int(o.replicas[pick_of[lb]]) for o, lb in zip(options, labels, strict=True)},
        cap_w={
            lb: (float(o.cap_w[pick_of[lb]]) if math.isfinite(o.cap_w[pick_of[lb]]) else None)
            for o, lb in zip(options, labels, strict=True)
        },
        power_kw=total,
        value=float(value[best]),
        throughput={lb: float(o.throughput[pick_of[lb]]) for o, lb in zip(options, labels, strict=True)},
        itl_s={lb: float(o.itl_s[pick_of[lb]]) for o, lb in zip(options, labels, strict=True)},
        fits_budget=bool(fits and total <= inputs.budget_kw + 1e-6),
        band_kw=band,
        infeasible_models=tuple(infeasible),
        ttft_s={
            lb: float(o.ttft_s[pick_of[lb]]) for o, lb in zip(options, labels, strict=True) if o.ttft_s is not None
        },
    )


def _relax_caps(options: Sequence[ModelOptions], chosen: np.ndarray, room: float) -> np.ndarray:
    """Among optimal plans, prefer the least intrusive caps: raise each model's cap as far as
    it goes (up to none) without changing its batch, replicas or value and while the plan still
    fits. The objective value is unchanged, so the plan stays optimal; it just leaves headroom
    unused instead of capping GPUs for nothing."""
    used = float(sum(o.power_kw[j] for o, j in zip(options, chosen, strict=True)))
    for i, opts in enumerate(options):
        j = int(chosen[i])
        same = np.flatnonzero(
            (opts.batch == opts.batch[j])
            & (opts.replicas == opts.replicas[j])
            & (opts.value >= opts.value[j])
            & (opts.cap_w > opts.cap_w[j])
            & (opts.feasible | ~opts.feasible[j])
        )
        if same.size == 0:
            continue
        extra = opts.power_kw[same] - opts.power_kw[j]
        ok = same[used + extra <= room + 1e-9]
        if ok.size == 0:
            continue
        k = int(ok[np.argmax(opts.cap_w[ok])])
        used += float(opts.power_kw[k] - opts.power_kw[j])
        chosen[i] = k
    return chosen


def flexibility_band(inputs: PlanInputs) -> tuple[float, float]:
    """Lowest and highest site power (kW) reachable within deadlines."""
    return plan_exact(inputs).band_kw


@dataclass(frozen=True, slots=True)
class FlexibilityBand:
    """What the site can do now: site power range within deadlines, the budget and the plan (kW)."""

    site: str
    time_s: float
    low_kw: float
    high_kw: float
    budget_kw: float
    planned_kw: float

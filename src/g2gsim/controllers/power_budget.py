"""Power-budget controller: keep a site under a time-varying power budget (SPEC 5.6).

The controller solves, at each re-plan, the exact discrete problem of
:mod:`g2gsim.controllers.budget_plan` (batch, stand-down fraction and GPU power cap per model,
maximising weighted throughput under the budget and every ITL deadline, and the TTFT and
memory bounds where the scenario gives SLO targets: the same bounds ``batch_limit = "plan"``
uses) with the online corrections of :class:`~g2gsim.controllers.budget_plan.RatioEstimator`
(power, ITL, and TTFT where the site reports it).

Re-planning: at once when the budget moves by more than 5 % from the one the plan used (a
budget publish is a kernel event; the controller waits on it, not on its clock); when a
correction (or the uncontrolled load) has drifted more than 15 % from the value the plan
used for 3 consecutive steps, once 300 s have passed since the last plan; and, as a safety
net for the constraints, when the measured site power has been above the budget, or some
model's observed ITL above its deadline (plus a 1 % tolerance), for 3 steps after a settling
time (at most every 30 s). Otherwise the plan is held. The margins (3 % of the budget, 5 %
of each deadline) absorb the template power swings and ITL noise the mean models omit.
An optional ramp limit (kW/s) makes the power the planner works to (its target) move from the
previous plan's power toward the budget no faster than that, re-planning at every poll until
it arrives; each discrete plan lies at or just under its target.

The controller publishes its flexibility band (the lowest and the highest site power it can
reach within deadlines, mailbox ``flexibility``) and records it with the budget, planned
and measured power in table ``budget_control``.

:class:`~g2gsim.controllers.proportional_curtailment.ProportionalCurtailment` is the naive
baseline it is compared with.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from g2gsim.controllers.base import (
    BuildContext,
    ControllerSection,
    config_or_default,
    register_controller,
    renamed_keyword,
)
from g2gsim.controllers.batching import feasible_sizes, state_columns
from g2gsim.controllers.budget import BudgetFollower
from g2gsim.controllers.budget_plan import (
    FlexibilityBand,
    ModelPlanSpec,
    Plan,
    PlanInputs,
    RatioEstimator,
    flexibility_band,
    model_options,
    plan_exact,
)
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.kernel.commands import Command
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.registry import Section
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike
from g2gsim.planning import ModelBounds

__all__ = [
    "FlexibilityBand",
    "ModelPlanSpec",
    "Plan",
    "PlanInputs",
    "PowerBudgetConfig",
    "PowerBudgetController",
    "PowerBudgetSection",
    "RatioEstimator",
    "flexibility_band",
    "model_options",
    "plan_exact",
]

_MOVED = {"ProportionalCurtailment", "ProportionalCurtailmentSection", "proportional_caps"}


def __getattr__(name: str) -> Any:
    """The naive baseline moved to :mod:`g2gsim.controllers.proportional_curtailment`."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"g2gsim.controllers.power_budget.{name} moved to g2gsim.controllers.proportional_curtailment.{name}; "
        "the old path goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    from g2gsim.controllers import proportional_curtailment

    return getattr(proportional_curtailment, name)


Knob = Literal["batch", "replicas", "caps"]


class PowerBudgetConfig(Section):
    """Tuning of :class:`PowerBudgetController`: the ``params`` of a ``power_budget`` section."""

    knobs: tuple[Knob, ...] = Field(
        default=("batch", "replicas", "caps"), description="what it may change: batch, replicas, caps"
    )
    weights: dict[str, float] = Field(default_factory=dict, description="w_i per model label (default 1)")
    smoothing: float = Field(default=0.3, gt=0, le=1, description="smoothing of the power and ITL ratio estimates")
    ratio_min: float = Field(default=0.5, gt=0, description="lowest ratio estimate (measured / modelled)")
    ratio_max: float = Field(default=2.0, gt=0, description="highest ratio estimate (measured / modelled)")
    drift_threshold: float = Field(default=0.15, gt=0, description="relative drift of a correction that re-plans")
    drift_steps: int = Field(default=3, ge=1, description="steps a drift must last to re-plan")
    cooldown_s: float = Field(default=300.0, ge=0, description="least time between drift re-plans, s")
    budget_change_threshold: float = Field(default=0.05, ge=0, description="relative budget change that re-plans")
    margin: float = Field(default=0.03, ge=0, lt=1, description="plan to budget * (1 - margin)")
    latency_margin: float = Field(default=0.05, ge=0, lt=1, description="plan ITL to deadline * (1 - margin)")
    ramp_kw_per_s: float | None = Field(default=None, gt=0, description="ramp limit of the planned power, kW/s")
    standdown_levels: tuple[float, ...] = Field(
        default=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), description="fractions of a model's replicas it may stand down"
    )
    cap_levels_w: tuple[float, ...] | None = Field(default=None, description="None: the site's cap grid")
    censor_tolerance: float = Field(default=0.03, ge=0, lt=1, description="how near a cap a reading is censored")
    uncontrolled_window_s: float = Field(default=60.0, ge=0, description="window of the uncontrolled-load maximum, s")
    settle_s: float = Field(default=5.0, ge=0, description="no corrections this long after a command")
    overshoot_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="relative excess of power over budget, or ITL over deadline, the safety net tolerates",
    )
    safety_cooldown_s: float = Field(default=30.0, ge=0, description="least time between safety re-plans, s")

    @model_validator(mode="after")
    def _consistent(self) -> PowerBudgetConfig:
        if self.ratio_min >= self.ratio_max:
            raise ValueError(f"ratio_min ({self.ratio_min}) must be below ratio_max ({self.ratio_max})")
        if not self.knobs:
            raise ValueError("at least one knob (batch, replicas, caps) is needed")
        if any(not 0 <= f < 1 for f in self.standdown_levels) or 0.0 not in self.standdown_levels:
            raise ValueError(f"standdown_levels must lie in [0, 1) and include 0, got {self.standdown_levels}")
        if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
            raise ValueError(f"weights must be finite and >= 0, got {self.weights}")
        if len(set(self.knobs)) != len(self.knobs):
            raise ValueError(f"knobs must not repeat, got {list(self.knobs)}")
        if self.cap_levels_w is not None and any(not (math.isfinite(c) and c > 0) for c in self.cap_levels_w):
            raise ValueError(f"cap_levels_w must be positive powers in W, got {list(self.cap_levels_w)}")
        return self


class PowerBudgetSection(ControllerSection):
    """Keeps a site under the budget of a budget component (``type = "power_budget"``)."""

    type: Literal["power_budget"] = "power_budget"
    """Always "power_budget"."""
    site: str
    """The site it controls."""
    budget: str
    """The budget component it follows (a ``budget`` or ``grid_operator`` section)."""
    params: PowerBudgetConfig = Field(default_factory=PowerBudgetConfig)
    """Tuning (knobs, weights, margins, re-plan thresholds)."""


@runtime_checkable
class SloContext(Protocol):
    """A build context that knows each site's SLO bounds (a scenario's, with its SLO targets)."""

    def slo_bounds(self, site: str) -> Mapping[str, ModelBounds]:
        """The bounds of each model of a site that has SLO targets."""
        ...


@dataclass(frozen=True, slots=True)
class _Observation:
    """One reading of the site: per model (label order) in Python numbers, and its totals."""

    batch: list[int]
    replicas: list[int]
    itl: list[float]  # s (NaN: not observed)
    ttft: list[float]  # s (NaN: not reported)
    power: list[float]  # inference power, W
    cap: list[float]  # GPU power cap, W (inf: none)
    total_kw: float
    uncontrolled_kw: float  # the site's power outside inference (base load, training)


# -- the controller ---------------------------------------------------------------------------
class PowerBudgetController(BudgetFollower):
    """Keeps one site under the budget of a :class:`BudgetSource` (see the module text).

    Args:
        name: Component name.
        site: The site to control (``datacenter=``: deprecated name).
        budget: The budget source component (publishes mailbox ``budget``).
        config: Tuning.
        period: Polling period for corrections and drift checks, s.
        fits: Logistic fits per model label (default: the site's data source).
        bounds: TTFT and memory bounds per model label (default: none, ITL only).
    """

    @renamed_keyword("datacenter", "site")
    def __init__(
        self,
        name: str,
        site: str,
        budget: str,
        config: PowerBudgetConfig | None = None,
        period: TimeLike | None = Fraction(1),
        *,
        fits: Mapping[str, Any] | None = None,
        bounds: Mapping[str, ModelBounds] | None = None,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        super().__init__(
            name, site, budget, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger
        )
        self.config = config_or_default(name, config, PowerBudgetConfig)
        self.fits = None if fits is None else dict(fits)
        self.bounds = dict(bounds or {})

    @classmethod
    def from_config(cls, section: PowerBudgetSection, context: BuildContext) -> PowerBudgetController:
        """From its scenario section (a live site may not use the caps knob)."""
        knobs = list(section.params.knobs)
        if "caps" in knobs and context.site_is_live(section.site):
            raise ValueError(
                f"controllers.{section.name}.params.knobs: {knobs} includes 'caps', but live site {section.site!r} "
                "cannot apply GPU power caps; allowed there: 'batch', 'replicas'"
            )
        bounds = context.slo_bounds(section.site) if isinstance(context, SloContext) else None
        return cls(
            section.name,
            section.site,
            section.budget,
            section.params,
            section.period_s,
            bounds=bounds,
            **section.controller_keywords(),
        )

    # -- lifecycle --------------------------------------------------------------------------
    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._flex_box = ctx.mailbox("flexibility")
        self._plan: Plan | None = None
        self._plan_time = -math.inf
        self._plan_budget = math.nan
        self._plan_ratios: np.ndarray | None = None  # (3, M) power, ITL and TTFT ratios the plan used
        self._plan_uncontrolled = math.nan
        self._command_time = -math.inf
        self._drift_count = 0
        self._over_count = 0
        self._late_count = 0
        self._safety_time = -math.inf
        self._standdown: dict[str, int] = {}
        self._ramp_from: float | None = None
        self._ramp_t0 = 0.0
        self._uncontrolled: deque[tuple[float, float]] = deque()  # (time, kW) over the window
        self._uncontrolled_peaks: deque[tuple[float, float]] = deque()  # its non-NaN running maxima
        self._log: list[tuple[float, ...]] = []
        self._ratio_log: list[np.ndarray] = []
        self.replans = 0
        self.replan_reasons: list[tuple[float, str]] = []

    def start(self) -> None:
        super().start()
        site = self._site
        assert isinstance(site, Datacenter)
        specs = dict(site.specs)
        cfg = self.config
        for what, named in (("params.weights", cfg.weights), ("bounds", self.bounds)):
            unknown = sorted(set(named) - set(specs))
            if unknown:
                raise ValueError(
                    f"power budget controller {self.name!r}: {what} names {unknown}, not models of site "
                    f"{self.site!r}; its models: {sorted(specs)}"
                )
        facility = getattr(getattr(site, "config", None), "facility", None)
        gps = getattr(facility, "gpus_per_server", None)
        models = []
        for label, spec in specs.items():
            fits = self.fits[label] if self.fits is not None else site.data.logistic_fits(spec)
            bounds = self.bounds.get(label)
            ttft = bounds.targets.ttft_deadline_s if bounds is not None else None
            models.append(
                ModelPlanSpec(
                    label,
                    int(spec.gpus_per_replica),
                    float(spec.itl_deadline_s) * (1.0 - cfg.latency_margin),
                    fits,
                    float(cfg.weights.get(label, 1.0)),
                    gps,
                    bounds,
                    math.inf if ttft is None else float(ttft) * (1.0 - cfg.latency_margin),
                )
            )
        self._models = tuple(models)
        self._deadline = np.array([float(specs[label].itl_deadline_s) for label in self._labels])
        self._ttft_deadline = np.array([m.ttft_deadline_s / (1.0 - cfg.latency_margin) for m in self._models])
        over = 1 + cfg.overshoot_tolerance  # the safety net's limits, as Python floats (same products)
        self._late_itl_s = (self._deadline * over).tolist()
        self._late_ttft_s = (self._ttft_deadline * over).tolist()
        self._sizes = tuple(feasible_sizes(specs[label]) for label in self._labels)
        caps = cfg.cap_levels_w or self._gpu_power.levels()
        self._cap_grid = tuple(sorted({self._gpu_power.quantise(c) for c in caps}))
        self._power_est = [RatioEstimator(cfg.smoothing, cfg.ratio_min, cfg.ratio_max) for _ in self._labels]
        self._itl_est = [RatioEstimator(cfg.smoothing, cfg.ratio_min, cfg.ratio_max) for _ in self._labels]
        self._ttft_est = [RatioEstimator(cfg.smoothing, cfg.ratio_min, cfg.ratio_max) for _ in self._labels]

    # -- inspection -------------------------------------------------------------------------
    @property
    def plan(self) -> Plan | None:
        """The plan in force."""
        return self._plan

    @property
    def ratios(self) -> dict[str, tuple[float, float]]:
        """(power ratio, ITL ratio) per model."""
        return {lb: (p.value, q.value) for lb, p, q in zip(self._labels, self._power_est, self._itl_est, strict=True)}

    @property
    def ttft_ratios(self) -> dict[str, float]:
        """Observed over modelled TTFT per TTFT-bounded model (1 until a site reports TTFT)."""
        return {m.label: e.value for m, e in zip(self._models, self._ttft_est, strict=True) if m.has_ttft}

    def _all_ratios(self) -> np.ndarray:
        """(3, M): the power, ITL and TTFT ratios."""
        return np.array([[e.value for e in est] for est in (self._power_est, self._itl_est, self._ttft_est)])

    # -- observation ------------------------------------------------------------------------
    def _observe(self, state: Any) -> _Observation:
        cols = state_columns(state, self._labels, owner=f"power budget {self.name!r}")
        n = len(cols)
        caps = getattr(state, "power_cap_w", None)
        cap = [math.inf] * n if caps is None else np.asarray(caps, dtype=float)[cols].tolist()
        total = float(np.sum(state.power_w))
        ttft = getattr(state, "ttft_s", None)  # reported by live sites
        return _Observation(
            batch=np.asarray(state.batch, dtype=np.int64)[cols].tolist(),
            replicas=np.asarray(state.replicas, dtype=np.int64)[cols].tolist(),
            itl=np.asarray(state.itl_s, dtype=float)[cols].tolist(),
            ttft=[math.nan] * n if ttft is None else np.asarray(ttft, dtype=float)[cols].tolist(),
            power=np.asarray(state.model_power_w, dtype=float)[cols].tolist(),
            cap=[c if math.isfinite(c) else math.inf for c in cap],
            total_kw=total / 1e3,
            uncontrolled_kw=(total - float(np.sum(state.model_power_w))) / 1e3,
        )

    def _correct(self, obs: _Observation) -> None:
        """Update the power and ITL ratios from one observation."""
        tol = self.config.censor_tolerance
        replicas, batches, caps, powers, itls, ttfts = obs.replicas, obs.batch, obs.cap, obs.power, obs.itl, obs.ttft
        for i, spec in enumerate(self._models):
            n = replicas[i]
            if n <= 0:
                continue
            batch = batches[i]
            x = math.log2(max(batch, 1))
            g = spec.gpus_per_replica
            predicted = n * spec.fits.power.eval_x(x)  # uncapped, W
            cap = caps[i]
            measured = powers[i]
            estimator = self._power_est[i]
            draw_model = estimator.value * predicted / (n * g)
            draw_seen = measured / (n * g)
            censored = math.isfinite(cap) and (cap <= draw_model * (1 + tol) or draw_seen >= cap * (1 - tol))
            estimator.update(measured, predicted, censored)
            itl = itls[i]
            if math.isfinite(itl):
                draw = estimator.value * predicted / (n * g)
                floor = self._gpu_power.floor(spec.label, draw)
                slow = max(1.0, floor / cap) if math.isfinite(cap) else 1.0
                self._itl_est[i].update(itl, spec.fits.latency.eval_x(x) * slow)
                self._correct_ttft(i, batch, itl, ttfts[i], slow)

    def _correct_ttft(self, i: int, batch: int, itl: float, ttft: float, slow: float) -> None:
        """Update the TTFT ratio from an observed TTFT, against the model at the observed batch and ITL."""
        spec = self._models[i]
        if not (spec.has_ttft and math.isfinite(ttft)):
            return
        assert spec.bounds is not None
        predicted = spec.bounds.ttft_s(np.array(float(batch)), np.array(itl), slow)
        self._ttft_est[i].update(ttft, float(predicted))

    def _uncontrolled_kw(self, now: float, value: float) -> float:
        """The largest uncontrolled load over the window, as ``max`` of the window's values
        gives it (the oldest of equal maxima; NaN when the oldest value is NaN), kept as a
        running maximum instead of a scan of the window at every step."""
        window, peaks = self._uncontrolled, self._uncontrolled_peaks
        window.append((now, value))
        if value == value:  # not NaN (max never moves from a value to a NaN)
            while peaks and peaks[-1][1] < value:
                peaks.pop()
            peaks.append((now, value))
        cutoff = now - self.config.uncontrolled_window_s
        while window and window[0][0] < cutoff:
            window.popleft()
        while peaks and peaks[0][0] < cutoff:
            peaks.popleft()
        oldest = window[0][1]
        return oldest if oldest != oldest or not peaks else peaks[0][1]

    # -- planning ---------------------------------------------------------------------------
    def _inputs(self, obs: _Observation, budget_kw: float, uncontrolled_kw: float) -> PlanInputs:
        knobs = set(self.config.knobs)
        batches, standdown, caps, available = [], [], [], []
        for i, label in enumerate(self._labels):
            current_b = obs.batch[i]
            batches.append(self._sizes[i] if "batch" in knobs else (current_b,))
            n_avail = obs.replicas[i] + self._standdown.get(label, 0)
            available.append(max(n_avail, 0))
            standdown.append(
                self.config.standdown_levels
                if "replicas" in knobs
                else (self._standdown.get(label, 0) / n_avail if n_avail else 0.0,)
            )
            caps.append((*self._cap_grid, math.inf) if "caps" in knobs else (obs.cap[i],))
        return PlanInputs(
            models=self._models,
            available=tuple(available),
            batches=tuple(batches),
            standdown=tuple(standdown),
            caps_w=tuple(caps),
            power_ratio=tuple(e.value for e in self._power_est),
            itl_ratio=tuple(e.value for e in self._itl_est),
            ttft_ratio=tuple(e.value for e in self._ttft_est),
            uncontrolled_kw=uncontrolled_kw,
            budget_kw=budget_kw * (1.0 - self.config.margin),
            gpu_power=self._gpu_power,
        )

    def _target_budget(self, now: float, budget_kw: float) -> float:
        """The budget to plan for now: the real one, or a ramp-limited step toward it."""
        rate = self.config.ramp_kw_per_s
        if rate is None or self._plan is None:
            self._ramp_from = None
            return budget_kw
        if self._ramp_from is None:
            self._ramp_from, self._ramp_t0 = self._plan.power_kw, now
        reach = rate * (now - self._ramp_t0)
        start = self._ramp_from
        target = min(max(budget_kw, start - reach), start + reach)
        if math.isclose(target, budget_kw) or (start <= budget_kw and target >= min(budget_kw, self._plan_band_high())):
            self._ramp_from = None
            return budget_kw
        return target

    def _plan_band_high(self) -> float:
        return math.inf if self._plan is None else self._plan.band_kw[1]

    def _replan(self, tick: int, obs: _Observation, reason: str) -> list[Command]:
        ctx = self.ctx
        now = ctx.seconds(tick)
        budget = self._budget_box.value.kw
        uncontrolled = self._uncontrolled_kw(now, obs.uncontrolled_kw)
        target = self._target_budget(now, budget)
        plan = plan_exact(self._inputs(obs, target, uncontrolled))
        self._plan = plan
        self._plan_time = now
        self._plan_budget = budget
        self._plan_uncontrolled = uncontrolled
        self._plan_ratios = self._all_ratios()
        self._drift_count = 0
        self._over_count = 0
        self._late_count = 0
        self.replans += 1
        self.replan_reasons.append((now, reason))
        payload = {
            "reason": reason,
            "budget_kw": budget,
            "target_kw": target,
            "planned_kw": plan.power_kw,
            "fits_budget": plan.fits_budget,
            "batch": plan.batch,
            "replicas": plan.replicas,
            "cap_w": plan.cap_w,
            "band_kw": list(plan.band_kw),
            "infeasible_models": list(plan.infeasible_models),
        }
        if plan.ttft_s:
            payload["ttft_s"] = plan.ttft_s
        ctx.event("budget_plan", payload)
        return self._commands(obs, plan)

    def _commands(self, obs: _Observation, plan: Plan) -> list[Command]:
        knobs = set(self.config.knobs)
        out: list[Command] = []
        if "batch" in knobs:
            changed = {lb: b for i, (lb, b) in enumerate(plan.batch.items()) if obs.batch[i] != b}
            if changed:
                out.append(SetBatchSize(batch=changed, target=self.site))
        if "replicas" in knobs:
            for i, label in enumerate(self._labels):
                n_avail = obs.replicas[i] + self._standdown.get(label, 0)
                want = max(n_avail - plan.replicas[label], 0)
                delta = self._standdown.get(label, 0) - want
                if delta:
                    out.append(ShiftReplicas(model=label, delta=delta, target=self.site))
                    self._standdown[label] = want
        if "caps" in knobs:
            caps: dict[str, float | None] = {}
            for i, label in enumerate(self._labels):
                new = plan.cap_w[label]
                old = obs.cap[i]
                if (new is None) != (not math.isfinite(old)) or (new is not None and new != old):
                    caps[label] = new
            if caps:
                out.append(SetPowerCap(cap_w=caps, target=self.site))
        if out:
            self._command_time = self.ctx.now_s
        return out

    # -- steps ------------------------------------------------------------------------------
    def react(self, tick: int) -> Iterable[Command]:
        """A budget publish: re-plan at once if it moved more than the threshold."""
        if not self._dc_box.has_value:
            return ()
        budget = self._budget_box.value.kw
        moved = (
            not math.isfinite(self._plan_budget)
            or abs(budget - self._plan_budget) > self.config.budget_change_threshold * self._plan_budget
        )
        if not moved:
            self.ctx.event("budget_hold", {"budget_kw": budget, "plan_budget_kw": self._plan_budget})
            return ()
        self._ramp_from = None
        return self._replan(tick, self._observe(self._dc_box.value), "budget")

    def settled(self) -> bool:
        """Settled unless a ramp is being followed or a drift, overshoot or deadline count is
        running toward a re-plan (an event-triggered follower then keeps stepping)."""
        counting = self._drift_count or self._over_count or self._late_count
        return self._ramp_from is None and not counting

    def control(self, tick: int) -> Iterable[Command]:
        if not self._dc_box.has_value:
            return ()
        cfg = self.config
        ctx = self.ctx
        now = ctx.seconds(tick)
        obs = self._observe(self._dc_box.value)
        settled = now - self._command_time >= cfg.settle_s
        if settled and self._plan is not None:
            self._correct(obs)
        uncontrolled = self._uncontrolled_kw(now, obs.uncontrolled_kw)
        commands: list[Command] = []
        if not self._budget_box.has_value:
            self._record(now, math.nan, obs, uncontrolled)
            return ()
        budget = self._budget_box.value.kw
        if self._plan is None:
            commands = self._replan(tick, obs, "initial")
        elif self._ramp_from is not None:
            commands = self._replan(tick, obs, "ramp")
        else:
            # drift of a correction (or of the uncontrolled load) from what the plan used
            assert self._plan_ratios is not None
            drift = np.abs(self._all_ratios() / self._plan_ratios - 1.0).max()
            u_drift = abs(uncontrolled - self._plan_uncontrolled) / max(self._plan_uncontrolled, 1e-9)
            if settled and max(drift, u_drift) > cfg.drift_threshold:
                self._drift_count += 1
            else:
                self._drift_count = 0
            over = obs.total_kw > budget * (1 + cfg.overshoot_tolerance)
            self._over_count = self._over_count + 1 if (over and settled) else 0
            late = self._late(obs)
            self._late_count = self._late_count + 1 if (late and settled) else 0
            if self._drift_count >= cfg.drift_steps and now - self._plan_time >= cfg.cooldown_s:
                commands = self._replan(tick, obs, "drift")
            elif max(self._over_count, self._late_count) >= cfg.drift_steps and (
                now - self._safety_time >= cfg.safety_cooldown_s
            ):
                self._safety_time = now
                reason = "overshoot" if self._over_count >= cfg.drift_steps else "deadline"
                commands = self._replan(tick, obs, reason)
        self._record(now, budget, obs, uncontrolled)
        return commands

    def _late(self, obs: _Observation) -> bool:
        """Whether some model's observed ITL, or TTFT where bounded, is past its deadline (plus the tolerance)."""
        return any(t > limit for t, limit in zip(obs.itl, self._late_itl_s, strict=True) if math.isfinite(t)) or any(
            t > limit for t, limit in zip(obs.ttft, self._late_ttft_s, strict=True) if math.isfinite(t)
        )

    def _record(self, now: float, budget: float, obs: _Observation, uncontrolled: float) -> None:
        plan = self._plan
        if plan is not None:
            base = plan.band_kw
            shift = uncontrolled - self._plan_uncontrolled
            low, high = base[0] + shift, base[1] + shift
            planned = plan.power_kw + shift
        else:
            low = high = planned = math.nan
        self._log.append((now, budget, planned, obs.total_kw, low, high, float(self.replans)))
        self._ratio_log.append(self._all_ratios().ravel())
        self._flex_box.publish(self.ctx.now, FlexibilityBand(self.site, now, low, high, budget, planned))

    # -- results ----------------------------------------------------------------------------
    def tables(self) -> dict[str, pd.DataFrame]:
        """``budget_control``: time_s, budget_kw, planned_kw, measured_kw, flex_low_kw, flex_high_kw,
        replans, and the power and ITL ratios per model (and the TTFT ratio of TTFT-bounded models)."""
        if not self._log:
            return {}
        data = np.array(self._log)
        columns: dict[str, Any] = {
            name: data[:, j]
            for j, name in enumerate(
                ("time_s", "budget_kw", "planned_kw", "measured_kw", "flex_low_kw", "flex_high_kw", "replans")
            )
        }
        ratios = np.array(self._ratio_log)
        m = len(self._labels)
        for i, label in enumerate(self._labels):
            columns[f"power_ratio.{label}"] = ratios[:, i]
            columns[f"itl_ratio.{label}"] = ratios[:, m + i]
            if self._models[i].has_ttft:
                columns[f"ttft_ratio.{label}"] = ratios[:, 2 * m + i]
        return {"budget_control": pd.DataFrame(columns)}

    def summary(self) -> dict[str, Any]:
        return {"replans": self.replans, "reasons": [r for _, r in self.replan_reasons]}


register_controller("power_budget", PowerBudgetSection)(PowerBudgetController)

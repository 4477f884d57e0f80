"""Primal-dual Online Feedback Optimization of LLM batch sizes (SPEC 5.2).

One controller per datacenter. Symbols, as in SPEC 5.2:

- v        voltage vector (pu), one entry per (bus, phase) of the grid's v_index (SPEC 4.4)
- H        dv/dp (n_v x 3, pu per kW) of the site's three phase loads (SPEC 4.5)
- lambda_under, lambda_over   voltage duals, one per v entry; eta = lambda_over - lambda_under
- mu_i     latency dual of model i; l_i its observed ITL (s); deadline_i its ITL deadline
- x_i      log2(batch_i), continuous; x_prev_i its previous value
- w_i      active replicas; e_i phase share (sums to 1)
- P_i, L_i, R_i   logistic fits of power (W per replica), ITL (s), throughput (tokens/s per
           replica) against x, from ``mlenergy.data.modeling.LogisticModel``
           (y = b0 + L sigmoid(k (x - x0)))

Each step:

1. H: ask the grid once (or every `sensitivity_update_interval` steps) with a
   SensitivityRequest through the command link; its reply comes through the measurement
   link (see "Sensitivity" below);
2. lambda_under <- max(lambda_under + rho_v (v_min - v), 0),
   lambda_over  <- max(lambda_over + rho_v (v - v_max), 0);
3. mu_i <- max(mu_i + rho_l (l_i - deadline_i), 0) where w_i > 0 and l_i is finite;
4. grad_i = -w_T dR_i + k_v g_v,i dP_i + mu_i L_i'(x_i) + w_switch (x_i - x_prev_i), with
   g_v,i = eta . (H e_i), dP_i = w_i P_i'(x_i) / 1000, dR_i = w_i R_i'(x_i) / R_i(x_max,i);
   x_i <- clip(x_i - rho_x grad_i, log2 min B_i, log2 max B_i); batch_i = feasible batch
   nearest 2^x_i;
5. one SetBatchSize to the datacenter and an ``ofo_step`` event with batches and duals.

Models are vectorised: every per-model quantity above is an array in the datacenter's model
order (sorted labels).

Sensitivity: the request goes to the grid like any command and the reply
(``sensitivity/<site>`` of the grid) comes back like any measurement, so link delays and
losses apply. With instant links the reply is there in the same step. Until the first reply
the primal step has no voltage term (g_v = 0; the duals are still updated). A reply that
arrives is adopted at the next step (an ``ofo_sensitivity`` event); a lost request or reply
leaves the old H in use (the link records the drop), and a request unanswered after
`sensitivity_timeout_s` is sent again (an ``ofo_sensitivity_timeout`` event).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field

from g2gsim.controllers.base import (
    ControllerSection,
    VoltageLimits,
    register_controller,
    renamed_keyword,
)
from g2gsim.controllers.batching import FeasibleBatches, state_columns
from g2gsim.controllers.site_batch import SiteBatchController
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.grid.base import Grid
from g2gsim.grid.commands import SensitivityRequest
from g2gsim.kernel.commands import Command
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike

_METRICS = ("power", "latency", "throughput")

#: Largest move of any x_i = log2(batch_i) in one step (with no active dual) at which an
#: event-triggered OFO counts as settled: a batch 0.07 % away from where it was.
SETTLE_TOLERANCE = 1e-3


class OFOConfig(VoltageLimits):
    """OFO tuning (SPEC 5.2; defaults are OpenG2G's): the ``params`` of an ``ofo`` section.

    The step sizes act once per control step: with a longer period the same tuning moves
    the batches more slowly in time, so retune them when the period changes.
    """

    primal_step_size: float = Field(default=0.05, gt=0, description="rho_x, step of x = log2(batch) per control step")
    w_throughput: float = Field(default=0.1, ge=0, description="w_T, weight of the normalised throughput")
    w_switch: float = Field(default=0.0, ge=0, description="weight of the switching term (x - x_prev)")
    voltage_gradient_scale: float = Field(default=1e6, ge=0, description="k_v, scale of the voltage term")
    voltage_dual_step_size: float = Field(default=0.5, ge=0, description="rho_v, voltage dual step per control step")
    latency_dual_step_size: float = Field(default=1.0, ge=0, description="rho_l, latency dual step per control step")
    sensitivity_update_interval: int = Field(
        default=0, ge=0, description="0: estimate H once; N: re-estimate every N steps"
    )
    sensitivity_perturbation_kw: float = Field(default=100.0, gt=0, description="Delta of SPEC 4.5, kW")
    sensitivity_timeout_s: float = Field(
        default=10.0, gt=0, description="send the request again when no reply came within this, s"
    )
    union_feasible_sets: bool = Field(
        default=False, description="OpenG2G compatibility: every model uses the union of all feasible sets"
    )


class OFOSection(ControllerSection):
    """Primal-dual OFO of one site's batch sizes against the grid's voltages (``type = "ofo"``)."""

    type: Literal["ofo"] = "ofo"
    """Always "ofo"."""
    site: str
    """The datacenter site whose batch sizes it sets."""
    grid: str = "grid"
    """The grid whose voltages it reads and whose sensitivity it estimates."""
    params: OFOConfig = Field(default_factory=OFOConfig)
    """Tuning (step sizes, weights, limits); v_min / v_max default to the scenario's."""


class FitTriple(Protocol):
    """The three logistic fits of one model (the data layer's ``LogisticFits``)."""

    @property
    def power(self) -> Any: ...
    @property
    def latency(self) -> Any: ...
    @property
    def throughput(self) -> Any: ...


def _parameter(fit: Any, name: str) -> float:
    value = fit[name] if isinstance(fit, Mapping) else getattr(fit, name)
    return float(value)


class LogisticCurves:
    """``LogisticModel`` y = b0 + L sigmoid(k (x - x0)) for several models at once.

    Evaluates and differentiates with the same arithmetic as ``LogisticModel.eval_x`` and
    ``deriv_wrt_x``, element-wise over models.
    """

    __slots__ = ("L", "b0", "k", "x0")

    def __init__(self, fits: Sequence[Any]) -> None:
        self.L = np.array([_parameter(f, "L") for f in fits], dtype=float)
        self.x0 = np.array([_parameter(f, "x0") for f in fits], dtype=float)
        self.k = np.array([_parameter(f, "k") for f in fits], dtype=float)
        self.b0 = np.array([_parameter(f, "b0") for f in fits], dtype=float)

    def _sigmoid(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.k * (np.asarray(x, dtype=float) - self.x0))

    def value(self, x: np.ndarray) -> np.ndarray:
        """y(x) per model."""
        return self.b0 + self.L * self._sigmoid(x)

    def slope(self, x: np.ndarray) -> np.ndarray:
        """dy/dx per model."""
        s = self._sigmoid(x)
        return self.L * (self.k * s * (1.0 - s))

    def finite(self) -> np.ndarray:
        """Per model: all four parameters finite."""
        return np.isfinite(self.L) & np.isfinite(self.x0) & np.isfinite(self.k) & np.isfinite(self.b0)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """Numerically stable 1 / (1 + e^-a), element-wise."""
    ea = np.exp(-np.abs(a))
    denominator = 1.0 + ea
    return np.where(a >= 0, 1.0 / denominator, ea / denominator)


class _StackedSlopes:
    """dy/dx of several :class:`LogisticCurves` (same models) in one vectorised pass.

    Row j of :meth:`at` is ``curves[j].slope(x)``, with the same element-wise arithmetic,
    so the per-step cost is one set of NumPy calls instead of one per curve.
    """

    __slots__ = ("L", "_L_list", "_k_list", "k", "x0")

    def __init__(self, curves: Sequence[LogisticCurves]) -> None:
        self.L = np.stack([c.L for c in curves])
        self.x0 = np.stack([c.x0 for c in curves])
        self.k = np.stack([c.k for c in curves])
        self._L_list, self._k_list = self.L.tolist(), self.k.tolist()

    def at(self, x: np.ndarray) -> np.ndarray:
        """(n_curves, n_models) slopes at x (one x per model)."""
        s = _sigmoid(self.k * (x - self.x0))
        return self.L * (self.k * s * (1.0 - s))

    def at_lists(self, x: np.ndarray) -> list[list[float]]:
        """:meth:`at` as one list of floats per curve: the exponentials in one NumPy call, the
        rest of :func:`_sigmoid` and the slope in Python floats (the same IEEE operations)."""
        a = self.k * (x - self.x0)
        ea = np.exp(-np.abs(a))
        out = []
        for a_row, ea_row, l_row, k_row in zip(a.tolist(), ea.tolist(), self._L_list, self._k_list, strict=True):
            row = []
            for ai, e, li, ki in zip(a_row, ea_row, l_row, k_row, strict=True):
                d = 1.0 + e
                s = 1.0 / d if ai >= 0 else e / d
                row.append(li * (ki * s * (1.0 - s)))
            out.append(row)
        return out


def _fit_part(fit: Any, metric: str, label: str, owner: str) -> Any:
    part = fit.get(metric) if isinstance(fit, Mapping) else getattr(fit, metric, None)
    if part is None:
        raise KeyError(f"{owner}: the logistic fits of model {label!r} have no {metric} fit")
    return part


class OFOBatchController(SiteBatchController):
    """Primal-dual OFO of one datacenter's batch sizes against the grid's voltages (SPEC 5.2).

    Args:
        name: Component name.
        site: Name of the :class:`Datacenter` it controls (reads its ``state``);
            ``datacenter=`` is its deprecated name.
        grid: Name of the :class:`Grid` it observes (reads ``state``, estimates H).
        config: Tuning; defaults are OpenG2G's.
        period: Control period, s.
        fits: Logistic fits per model label (objects with ``power``, ``latency``,
            ``throughput`` LogisticModel-like members, or mappings with those keys). None:
            ``datacenter.data.logistic_fits(spec)`` per model.

    Lifecycle: :meth:`reset` clears duals, x and H; :meth:`start` subscribes and builds the
    model tables; the first step initialises x from the observed batch sizes.
    """

    kind = "OFO controller"
    config_type = OFOConfig
    config: OFOConfig

    @renamed_keyword("datacenter", "site")
    def __init__(
        self,
        name: str,
        site: str,
        grid: str,
        config: OFOConfig | None = None,
        period: TimeLike | None = Fraction(1),
        *,
        fits: Mapping[str, FitTriple] | None = None,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        super().__init__(
            name,
            site,
            grid,
            config,
            period,
            command_link=command_link,
            measurement_link=measurement_link,
            trigger=trigger,
        )
        self.fits = None if fits is None else dict(fits)

    # -- lifecycle ------------------------------------------------------------------------
    def _clear(self) -> None:
        self._labels: tuple[str, ...] = ()
        self._batches: FeasibleBatches | None = None
        self._deadline = np.zeros(0)
        self._power: LogisticCurves | None = None
        self._latency: LogisticCurves | None = None
        self._throughput: LogisticCurves | None = None
        self._r_max = np.zeros(0)  # R_i(x_max,i), the throughput normaliser
        self._slopes: _StackedSlopes | None = None  # P', L', R' in one pass
        self._coupling = _VoltageCoupling()
        self._h: np.ndarray | None = None  # H, (n_v, 3) pu/kW
        self._reply: Any = None  # the SensitivityReply H came from
        self._requested_s: float | None = None  # when the unanswered request was sent
        self._lambdas: np.ndarray | None = None  # (2, n_v): lambda_under, lambda_over
        self._mu = np.zeros(0)
        self._x: np.ndarray | None = None
        self._x_prev: np.ndarray | None = None
        self._steps = 0
        # records, one row per step (preallocated in start)
        self._rec_time = np.zeros(0)
        self._rec_batch = np.zeros((0, 0), dtype=np.int64)
        self._rec_x = np.zeros((0, 0))
        self._rec_mu = np.zeros((0, 0))
        self._rec_lambda = np.zeros((0, 2))  # max lambda_under, max lambda_over

    def start(self) -> None:
        """Subscribe to the site and the grid; build feasible sets, deadlines and fits."""
        ctx = self.ctx
        site = ctx.lookup(self.site)
        grid = ctx.lookup(self.grid)
        assert isinstance(site, Datacenter) and isinstance(grid, Grid)
        if self.site not in grid.sites:
            raise LookupError(
                f"OFO {self.name!r}: site {self.site!r} is not attached to grid {self.grid!r}; "
                f"attached: {sorted(grid.sites)}"
            )
        self._site = site
        self._owner = f"OFO {self.name!r}"
        specs = dict(site.specs)
        self._labels = tuple(specs)
        self._batches = FeasibleBatches.from_specs(specs, union=self.config.union_feasible_sets)
        self._deadline = np.array([float(specs[m].itl_deadline_s) for m in self._labels])
        self._power, self._latency, self._throughput = self._curves(specs)
        self._slopes = _StackedSlopes((self._power, self._latency, self._throughput))
        # R_i(x_max,i); <= 0 or non-finite -> 1 (SPEC 5.2)
        r_max = self._throughput.value(self._batches.x_max)
        self._r_max = np.where(np.isfinite(r_max) & (r_max > 0), r_max, 1.0)
        self._mu = np.zeros(len(self._labels))
        self._deadline_list = self._deadline.tolist()
        self._r_max_list = self._r_max.tolist()
        self._x_bounds = (self._batches.x_min.tolist(), self._batches.x_max.tolist())
        self._gap_signs = np.array([[-1.0], [1.0]])  # the voltage gaps as sign * v + offset
        self._gap_offsets = np.array([[self.config.v_min], [-self.config.v_max]])
        n, m = self.max_steps(), len(self._labels)
        self._rec_time = np.zeros(n)
        self._rec_batch = np.zeros((n, m), dtype=np.int64)
        self._rec_x = np.zeros((n, m))
        self._rec_mu = np.zeros((n, m))
        self._rec_lambda = np.zeros((n, 2))
        self._dc_box = ctx.subscribe(self.site, wake=False)  # published every site step: read, never woken by
        self._grid_box = ctx.subscribe(self.grid)
        self._reply_box = ctx.subscribe(self.grid, f"sensitivity/{self.site}")

    def _curves(self, specs: Mapping[str, Any]) -> tuple[LogisticCurves, LogisticCurves, LogisticCurves]:
        """P_i, L_i, R_i for every model, from the given fits or the site's data source."""
        owner = f"OFO {self.name!r}"
        triples = []
        for label, spec in specs.items():
            if self.fits is not None:
                if label not in self.fits:
                    raise KeyError(f"{owner}: no logistic fits for model {label!r}; fits given for {sorted(self.fits)}")
                triples.append(self.fits[label])
            else:
                triples.append(self._site.data.logistic_fits(spec))
        curves = tuple(
            LogisticCurves([_fit_part(t, metric, label, owner) for t, label in zip(triples, specs, strict=True)])
            for metric in _METRICS
        )
        for metric, curve in zip(_METRICS, curves, strict=True):
            bad = [label for label, ok in zip(specs, curve.finite(), strict=True) if not ok]
            if bad:
                raise ValueError(f"{owner}: the {metric} fit of model(s) {bad} has non-finite parameters")
        return curves  # type: ignore[return-value]

    # -- inspection -----------------------------------------------------------------------
    @property
    def latency_duals(self) -> dict[str, float]:
        """mu_i per model."""
        return dict(zip(self._labels, self._mu.tolist(), strict=True))

    @property
    def voltage_duals(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(lambda_under, lambda_over) copies, or None before the first step."""
        if self._lambdas is None:
            return None
        return self._lambdas[0].copy(), self._lambdas[1].copy()

    @property
    def log_batch(self) -> dict[str, float]:
        """x_i = log2(batch_i) per model (empty before the first step)."""
        if self._x is None:
            return {}
        return {m: float(v) for m, v in zip(self._labels, self._x, strict=True)}

    @property
    def sensitivity(self) -> np.ndarray | None:
        """The H in use (copy), or None before the first estimate."""
        return None if self._h is None else self._h.copy()

    # -- event triggers --------------------------------------------------------------------
    def settled(self) -> bool:
        """Settled once no voltage or latency dual is active and the last primal step moved
        no x_i by more than :data:`SETTLE_TOLERANCE` (log2 units): until then an
        event-triggered OFO keeps stepping at its minimum interval (e.g. while duals decay
        and release a batch). Before its first observation it has nothing to do."""
        if self._requested_s is not None:
            return False  # waiting for H (and for its timeout)
        if self._x is None or self._x_prev is None:
            return True
        if self._mu.any() or (self._lambdas is not None and self._lambdas.any()):
            return False
        return bool(np.abs(self._x - self._x_prev).max(initial=0.0) <= SETTLE_TOLERANCE)

    def watched_values(self) -> np.ndarray | None:
        """The grid's voltage vector as last observed (a threshold trigger watches it)."""
        if not self._grid_box.has_value:
            return None
        return np.asarray(self._grid_box.value.voltages, dtype=float)

    def watched_band(self) -> tuple[float, float]:
        return (self.config.v_min, self.config.v_max)

    # -- one step -------------------------------------------------------------------------
    def control(self, tick: int) -> Iterable[Command]:
        if not (self._dc_box.has_value and self._grid_box.has_value):
            return ()  # nothing observed yet (e.g. behind a delayed measurement link)
        batches = self._batches
        assert batches is not None
        state = self._dc_box.value
        voltages = np.asarray(self._grid_box.value.voltages, dtype=float)
        cols = state_columns(state, self._labels, owner=self._owner)
        replicas = np.asarray(state.replicas, dtype=float)[cols].tolist()
        itl = np.asarray(state.itl_s, dtype=float)[cols].tolist()
        if self._x is None:
            observed = np.maximum(np.asarray(state.batch, dtype=float)[cols], 1.0)
            self._x = batches.clip(np.log2(observed))
            self._x_prev = self._x.copy()
        assert self._x_prev is not None

        estimated = self._refresh_sensitivity(len(voltages))  # 1.
        h = self._h
        if h is not None and h.shape[0] != voltages.shape[0]:
            raise ValueError(
                f"OFO {self.name!r}: H has {h.shape[0]} rows but the voltage vector has {voltages.shape[0]} entries"
            )

        eta = self._update_voltage_duals(voltages)  # 2.
        self._update_latency_duals(replicas, itl)  # 3.
        chosen = self._primal_step(state, cols, replicas, eta, h)  # 4.
        return self._emit(tick, chosen, estimated)  # 5.

    def _update_voltage_duals(self, voltages: np.ndarray) -> np.ndarray:
        """Step 2: lambda_under, lambda_over (an entry with no finite voltage keeps its duals); eta.

        Both duals as the rows of one (2, n_v) array: the gaps v_min - v and v - v_max are
        (-v) + v_min and v + (-v_max), which IEEE arithmetic defines as the same numbers."""
        cfg = self.config
        lambdas = self._lambdas
        if lambdas is None:
            lambdas = np.zeros((2, len(voltages)))
        gaps = self._gap_signs * voltages
        gaps += self._gap_offsets
        seen = np.isfinite(voltages)
        if not seen.all():
            gaps = np.where(seen, gaps, 0.0)
        gaps *= cfg.voltage_dual_step_size
        gaps += lambdas
        lambdas = np.maximum(gaps, 0.0, out=gaps)
        self._lambdas = lambdas
        return lambdas[1] - lambdas[0]

    def _update_latency_duals(self, replicas: list[float], itl: list[float]) -> None:
        """Step 3: mu_i, where the model runs and its ITL is observed.

        In Python floats: a handful of models, and the same IEEE arithmetic as NumPy's
        element-wise ufuncs (``max(v, 0.0)`` keeps NaN and -0.0 as ``np.maximum`` does)."""
        step = self.config.latency_dual_step_size
        mu = self._mu.tolist()
        for i, (r, t, d) in enumerate(zip(replicas, itl, self._deadline_list, strict=True)):
            if r > 0 and math.isfinite(t):
                mu[i] = max(mu[i] + step * (t - d), 0.0)
        self._mu = np.array(mu)

    def _primal_step(
        self, state: Any, cols: np.ndarray, replicas: list[float], eta: np.ndarray, h: np.ndarray | None
    ) -> list[int]:
        """Step 4: the gradient in x = log2(batch), the clipped step, the nearest feasible batches.

        The exponentials and the voltage coupling are NumPy calls; the rest is per-model
        Python float arithmetic in the same order as the vectorised form (same values)."""
        cfg = self.config
        batches, slopes = self._batches, self._slopes
        assert batches is not None and slopes is not None and self._x is not None and self._x_prev is not None
        x, x_prev = self._x, self._x_prev
        w = [r if math.isfinite(r) and r > 0 else 0.0 for r in replicas]  # w_i
        if h is None:  # no H yet: no voltage term
            g_v = [0.0] * len(cols)
        else:  # g_v,i = eta . (H e_i)
            g_v = (eta @ self._coupling.he(h, getattr(state, "phase_share", None), cols)).tolist()
        p_slope, l_slope, r_slope = slopes.at_lists(x)
        scale, w_t, w_s, mu = cfg.voltage_gradient_scale, -cfg.w_throughput, cfg.w_switch, self._mu.tolist()
        grad = [
            w_t * (w[i] * r_slope[i] / self._r_max_list[i])
            + scale * g_v[i] * (w[i] * p_slope[i] / 1000.0)
            + mu[i] * l_slope[i]
            + w_s * (xi - xp)
            for i, (xi, xp) in enumerate(zip(x.tolist(), x_prev.tolist(), strict=True))
        ]
        if not all(math.isfinite(g) for g in grad):
            bad = [m for m, g in zip(self._labels, grad, strict=True) if not math.isfinite(g)]
            raise FloatingPointError(
                f"OFO {self.name!r}: non-finite gradient for model(s) {bad} (check H, the fits and the voltages)"
            )
        step = cfg.primal_step_size
        x_new = [min(max(xi - step * g, lo), hi) for xi, g, lo, hi in zip(x.tolist(), grad, *self._x_bounds)]
        self._x_prev, self._x = x, np.array(x_new)
        return batches.nearest(x_new)

    def _emit(self, tick: int, chosen: list[int], estimated: bool) -> tuple[Command, ...]:
        """Step 5: one record row, one ``ofo_step`` event, one SetBatchSize."""
        lambdas = self._lambdas
        assert lambdas is not None
        row = self._steps
        self._steps += 1
        batch = dict(zip(self._labels, chosen, strict=True))
        under_max, over_max = lambdas.max(axis=1, initial=0.0).tolist()
        under_sum, over_sum = lambdas.sum(axis=1).tolist()  # row by row, as each row's own sum
        self._rec_time[row] = self.ctx.seconds(tick)
        self._rec_batch[row] = chosen
        self._rec_x[row] = self._x
        self._rec_mu[row] = self._mu
        self._rec_lambda[row] = (under_max, over_max)
        self.ctx.event(
            "ofo_step",
            {
                "batch": dict(batch),  # the command keeps its own
                "latency_dual": self.latency_duals,
                "voltage_dual_under_max": under_max,
                "voltage_dual_over_max": over_max,
                "voltage_dual_under_sum": under_sum,
                "voltage_dual_over_sum": over_sum,
                "sensitivity_estimated": bool(estimated),
            },
            plain=True,
        )
        return (SetBatchSize(batch=batch, target=self.site),)

    def _refresh_sensitivity(self, n_v: int) -> bool:
        """Step 1: ask for H when it is due (none yet, or every `interval` steps) and no request is
        open, or again after the timeout; adopt a new reply. True when H changed at this step."""
        cfg = self.config
        now_s = self.ctx.now_s
        if self._requested_s is not None and now_s - self._requested_s >= cfg.sensitivity_timeout_s:
            self.ctx.event("ofo_sensitivity_timeout", {"requested_s": self._requested_s})
            self._requested_s = None
            due = True
        else:
            interval = cfg.sensitivity_update_interval
            due = self._h is None or (interval > 0 and self._steps % interval == 0)
        if due and self._requested_s is None:
            self._requested_s = now_s
            request = SensitivityRequest(site=self.site, delta_kw=cfg.sensitivity_perturbation_kw, target=self.grid)
            self.ctx.send(request)  # with instant links the reply is published before this returns
        return self._adopt_reply(n_v)

    def _adopt_reply(self, n_v: int) -> bool:
        """Take H from a reply not seen yet."""
        reply = self._reply_box.get()
        if reply is None or reply is self._reply:
            return False
        h = np.asarray(reply.h, dtype=float)
        if h.ndim != 2 or h.shape != (n_v, 3):
            raise ValueError(
                f"OFO {self.name!r}: grid {self.grid!r} returned H of shape {h.shape}, expected ({n_v}, 3)"
            )
        self._reply, self._h, self._requested_s = reply, h, None
        self._coupling.clear()
        self.ctx.event("ofo_sensitivity", {"min": float(h.min()), "max": float(h.max())})
        return True

    # -- results --------------------------------------------------------------------------
    def tables(self) -> dict[str, pd.DataFrame]:
        """``ofo``: time_s, then batch/x/mu per model, and the largest voltage duals."""
        n = self._steps
        if n == 0:
            return {}
        columns: dict[str, Any] = {"time_s": self._rec_time[:n].copy()}
        for i, label in enumerate(self._labels):
            columns[f"batch.{label}"] = self._rec_batch[:n, i].copy()
            columns[f"x.{label}"] = self._rec_x[:n, i].copy()
            columns[f"mu.{label}"] = self._rec_mu[:n, i].copy()
        columns["lambda_under_max"] = self._rec_lambda[:n, 0].copy()
        columns["lambda_over_max"] = self._rec_lambda[:n, 1].copy()
        return {"ofo": pd.DataFrame(columns)}

    def summary(self) -> dict[str, Any]:
        return {"steps": self._steps}


register_controller("ofo", OFOSection)(OFOBatchController)


class _VoltageCoupling:
    """H e_i^T for every model (n_v, n_models), recomputed only when H or the shares change.

    The phase shares of a site change only with its allocation, so most steps reuse the
    previous product. The cache key is the exact bytes of the shares and columns, so a
    datacenter that publishes new arrays with the same values still hits it, and one that
    changes values never does.
    """

    __slots__ = ("_he", "_key")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget the cached product (call when H changes)."""
        self._key: tuple[Any, ...] | None = None
        self._he = np.zeros((0, 0))

    def he(self, h: np.ndarray, share: Any, cols: np.ndarray) -> np.ndarray:
        """H @ e.T with e = :func:`_phase_shares` (share, cols)."""
        if share is None:
            key: tuple[Any, ...] = (None, cols.tobytes())
        else:
            share = np.asarray(share, dtype=float)
            key = (share.shape, share.tobytes(), cols.tobytes())
        if key != self._key:
            self._he = h @ _phase_shares(share, cols).T
            self._key = key
        return self._he


def _phase_shares(share: Any, cols: np.ndarray) -> np.ndarray:
    """e_i per model (n_models, 3), each row normalised to sum 1; uniform where unknown."""
    uniform = np.full((len(cols), 3), 1.0 / 3.0)
    if share is None:
        return uniform
    share = np.asarray(share, dtype=float)
    if share.ndim != 2 or share.shape[1] != 3 or share.shape[0] <= int(cols.max(initial=-1)):
        return uniform
    rows = share[cols]
    total = rows.sum(axis=1)
    ok = np.isfinite(total) & (total > 0) & np.all(np.isfinite(rows), axis=1)
    return np.where(ok[:, None], rows / np.where(ok, total, 1.0)[:, None], uniform)

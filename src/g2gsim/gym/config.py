"""What an environment observes and how it is rewarded: two validated configurations.

The observation vector, in order (:attr:`G2GEnv.observation_names` names every entry):

1. voltages (``voltages``): every observed (bus, phase) in pu ("all"), the lowest and highest
   phase of every observed bus ("bus_minmax"), or nothing ("none"); observed buses are
   ``voltage_buses`` (a zone) or all buses of the grid's voltage index;
2. violation summary (``summary``): over the observed voltages ("global") or per named zone
   ("zones"): worst undervoltage (pu below v_min), worst overvoltage (pu above v_max) and the
   fraction of bus-phases outside [v_min, v_max];
3. per model of the agent's site (``models``), in the site's sorted label order: batch size on
   a log2 scale normalised to [0, 1] over its feasible sizes, ITL / deadline clipped to [0, 3]
   (0 when unknown), active replicas / the most it is scheduled to have, and the change of the
   commanded batch at the last step (log2 levels / the feasible log2 range, in [-1, 1]);
   then the site's total power in MW;
4. ``time``: elapsed fraction of the episode.

The reward of one step is the sum of its terms (each reported in ``info["reward"]``):
voltage ``-w_voltage * sum(under^2 + over^2)`` over every bus-phase (minus the same penalty of
an OFO run of the same scenario at the same instant with ``relative_to_ofo``), in-band bonus
``w_in_band * fraction within limits``, throughput ``w_throughput * sum_i R_i(b_i) / R_i(b_max)``
(``throughput="fit"``, the fitted throughput curve) or ``sum_i log2 b_i / log2 b_max``
(``"log_batch"``), latency ``-w_latency * sum_i max(ITL_i - d_i, 0) / d_i``, and switching
``-w_switch * sum_i |log2 b_i - log2 b'_i|`` ("magnitude"), ``-w_switch * #changes``
("binary") or ``-w_switch * sum over changes of exp(-steps since that model's previous
change / tau)`` ("cooldown"). With ``clip``, the total is floored at ``-clip``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from g2gsim.kernel.registry import Section

__all__ = ["ObservationConfig", "RewardConfig"]


class ObservationConfig(Section):
    """What the agent sees each step (layout in :mod:`g2gsim.gym.config`)."""

    voltages: Literal["all", "bus_minmax", "none"] = "all"
    """Per-phase voltages, the per-bus lowest and highest phase, or none."""
    voltage_buses: tuple[str, ...] | None = None
    """Observe only these buses (a zone); None: every bus of the voltage index."""
    summary: Literal["global", "zones", "none"] = "global"
    """Violation summary over the observed voltages, per zone, or none."""
    zones: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Named zones (bus lists) for ``summary = "zones"``."""
    models: bool = True
    """Per-model features of the agent's site and its total power."""
    time: bool = False
    """The elapsed fraction of the episode."""
    v_min: float | None = Field(default=None, gt=0)
    """Lower voltage limit of the summary, pu (None: the scenario's)."""
    v_max: float | None = Field(default=None, gt=0)
    """Upper voltage limit of the summary, pu (None: the scenario's)."""

    @model_validator(mode="after")
    def _consistent(self) -> ObservationConfig:
        if self.summary == "zones" and not self.zones:
            raise ValueError('summary = "zones" needs at least one entry in zones')
        if self.v_min is not None and self.v_max is not None and self.v_min >= self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        return self


class RewardConfig(Section):
    """How one step is rewarded (terms in :mod:`g2gsim.gym.config`)."""

    w_voltage: float = Field(default=1000.0, ge=0)
    """Weight of the squared voltage violation."""
    w_in_band: float = Field(default=0.0, ge=0)
    """Bonus per step for the fraction of bus-phases within limits."""
    w_throughput: float = Field(default=0.01, ge=0)
    """Weight of the normalised throughput."""
    throughput: Literal["fit", "log_batch"] = "fit"
    """Throughput from the site's fitted curves, or from log2 batch sizes."""
    w_latency: float = Field(default=10.0, ge=0)
    """Weight of the relative ITL deadline excess."""
    w_switch: float = Field(default=0.1, ge=0)
    """Weight of the switching cost."""
    switch_mode: Literal["magnitude", "binary", "cooldown"] = "magnitude"
    """Switching cost per change: its size in log2 levels, one, or decaying with the time since
    the model's previous change."""
    cooldown_steps: float = Field(default=30.0, gt=0)
    """Time constant tau of ``switch_mode = "cooldown"``, steps."""
    clip: float | None = Field(default=None, gt=0)
    """Floor the reward of a step at -clip (None: no floor)."""
    relative_to_ofo: bool = False
    """Voltage term relative to an OFO run of the same scenario (positive when doing better)."""
    v_min: float | None = Field(default=None, gt=0)
    """Lower voltage limit, pu (None: the scenario's)."""
    v_max: float | None = Field(default=None, gt=0)
    """Upper voltage limit, pu (None: the scenario's)."""

    @model_validator(mode="after")
    def _consistent(self) -> RewardConfig:
        if self.v_min is not None and self.v_max is not None and self.v_min >= self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        return self

"""GPU power caps of a trace-driven site: the configurable performance model.

A :class:`~g2gsim.datacenter.commands.SetPowerCap` sets a cap in W per GPU for every GPU of a model
(``None`` removes it). The site applies it with this model:

- caps are rounded *down* to the cap grid (``step_w``, 25 W by default) and clipped to
  [``min_cap_w``, ``rated_w``]: a cap never exceeds the GPU's rated power (700 W, H100 SXM);
- power: every GPU draws min(template power, cap) -- the per-GPU template value (times the
  server's amplitude scale) is clipped at the cap before measurement noise is added;
- performance: a model has a *power floor* f (W per GPU), the power its kernels need to
  run at full speed. Above the floor a cap costs nothing; below it the GPU clocks down and
  every token takes longer: ITL is multiplied by f / cap, so throughput (batch / ITL) is
  divided by the same factor. By default f is the mean per-GPU template power of the
  model's current operating point (batch), i.e. capping below what the model draws on
  average slows it in proportion; ``floor_w`` sets a fixed floor per model label instead
  (the effective floor is then min(fixed floor, mean draw): a GPU that draws less than a
  cap is never slowed by it).

The same formulas are used by the power-budget planner (:mod:`g2gsim.controllers.power_budget`).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["GpuPowerCaps", "cap_slowdown"]


class GpuPowerCaps(BaseModel):
    """Cap grid, limits and performance floors of a site's GPUs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rated_w: float = Field(default=700.0, gt=0, allow_inf_nan=False, description="rated (maximum) GPU power, W")
    step_w: float = Field(default=25.0, gt=0, allow_inf_nan=False, description="cap granularity, W")
    min_cap_w: float = Field(default=200.0, gt=0, allow_inf_nan=False, description="lowest settable cap, W")
    floor_w: dict[str, float] = Field(
        default_factory=dict, description="fixed performance floor per model label, W per GPU"
    )

    @model_validator(mode="after")
    def _consistent(self) -> GpuPowerCaps:
        if self.min_cap_w > self.rated_w:
            raise ValueError(f"min_cap_w ({self.min_cap_w} W) must not exceed rated_w ({self.rated_w} W)")
        for label, value in self.floor_w.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"floor_w[{label!r}] must be a positive power in W, got {value!r}")
        return self

    def quantise(self, cap_w: float) -> float:
        """The cap actually applied: rounded down to the grid, within [min_cap_w, rated_w]."""
        cap = float(cap_w)
        if math.isnan(cap) or cap <= 0:
            raise ValueError(f"a GPU power cap must be a positive number of W, got {cap_w!r}")
        if cap >= self.rated_w:
            return float(self.rated_w)
        stepped = math.floor(cap / self.step_w + 1e-9) * self.step_w
        return float(min(max(stepped, self.min_cap_w), self.rated_w))

    def levels(self) -> tuple[float, ...]:
        """Every settable cap, increasing (the grid from min_cap_w up to rated_w)."""
        first = math.ceil(self.min_cap_w / self.step_w - 1e-9) * self.step_w
        out = []
        cap = first
        while cap < self.rated_w - 1e-9:
            out.append(float(cap))
            cap += self.step_w
        out.append(float(self.rated_w))
        if self.min_cap_w < first:
            out.insert(0, float(self.min_cap_w))
        return tuple(out)

    def floor(self, label: str, mean_draw_w: float) -> float:
        """Effective performance floor of a model drawing `mean_draw_w` per GPU on average."""
        fixed = self.floor_w.get(label)
        return float(mean_draw_w) if fixed is None else min(float(fixed), float(mean_draw_w))


def cap_slowdown(floor_w: float, cap_w: float) -> float:
    """ITL multiplier of a cap: max(1, floor / cap) (1 when uncapped or the floor is unknown)."""
    if not (math.isfinite(cap_w) and cap_w > 0) or not math.isfinite(floor_w):
        return 1.0
    return max(1.0, floor_w / cap_w)

"""The reward of one environment step (terms in :mod:`g2gsim.gym.config`)."""

from __future__ import annotations

import numpy as np

from g2gsim.controllers.ofo import LogisticCurves
from g2gsim.datacenter.state import DatacenterState
from g2gsim.gym.config import RewardConfig
from g2gsim.gym.observation import ModelTable, VoltageCheck

__all__ = ["Reward", "voltage_penalty"]


def voltage_penalty(v: np.ndarray, v_min: float, v_max: float) -> float:
    """sum over bus-phases of under^2 + over^2 (pu^2), NaN entries ignored."""
    return VoltageCheck.of(v, v_min, v_max).penalty


class Reward:
    """Scores steps for one episode; :meth:`reset` at the start of each episode.

    Batch sizes are given as levels (positions in each model's feasible sizes, see
    :class:`~g2gsim.gym.actions.Actions`); `log2` holds log2 of every model's sizes, one row
    per model. Throughput per level is computed once.
    """

    def __init__(
        self,
        config: RewardConfig,
        models: ModelTable,
        log2: np.ndarray,
        *,
        v_min: float,
        v_max: float,
        throughput: LogisticCurves | None = None,
    ) -> None:
        self.config = config
        self.v_min = config.v_min if config.v_min is not None else v_min
        self.v_max = config.v_max if config.v_max is not None else v_max
        self._deadline = models.deadline_s
        self._log2 = log2
        self._rows = np.arange(len(log2))
        self._gain = self._gains(log2, throughput)
        self._since_change = np.full(len(log2), np.inf)

    def _gains(self, log2: np.ndarray, curves: LogisticCurves | None) -> np.ndarray:
        """Normalised throughput of every (model, level)."""
        top = np.nanmax(log2, axis=1)
        if self.config.throughput == "log_batch":
            return log2 / top[:, None]
        if curves is None:
            raise ValueError('throughput = "fit" needs the site\'s fitted throughput curves')
        best = curves.value(top)
        best = np.where(np.isfinite(best) & (best > 0), best, 1.0)
        return np.column_stack([curves.value(np.nan_to_num(column, nan=0.0)) / best for column in log2.T])

    def reset(self) -> None:
        """Forget the previous episode's changes."""
        self._since_change = np.full(len(self._deadline), np.inf)

    def check(self, voltages: np.ndarray) -> VoltageCheck:
        """The voltages against the reward's limits."""
        return VoltageCheck.of(voltages, self.v_min, self.v_max)

    def __call__(
        self,
        check: VoltageCheck,
        site: DatacenterState | None,
        levels: np.ndarray,
        previous: np.ndarray,
        baseline_penalty: float | None = None,
    ) -> tuple[float, dict[str, float]]:
        """The reward and its terms, for the voltage check (:meth:`check`) and site state after a
        step that moved the commanded levels from `previous` to `levels`."""
        cfg = self.config
        penalty = check.penalty if baseline_penalty is None else check.penalty - baseline_penalty
        terms = {
            "voltage": -cfg.w_voltage * penalty,
            "in_band": cfg.w_in_band * (1.0 - check.outside),
            "throughput": cfg.w_throughput * float(self._gain[self._rows, levels].sum()),
            "latency": -cfg.w_latency * self._latency(site),
            "switch": -cfg.w_switch * self._switching(levels, previous),
        }
        total = terms["voltage"] + terms["in_band"] + terms["throughput"] + terms["latency"] + terms["switch"]
        if cfg.clip is not None:
            total = max(total, -cfg.clip)
        return float(total), terms

    def _latency(self, site: DatacenterState | None) -> float:
        if site is None:
            return 0.0
        excess = (site.itl_s - self._deadline) / self._deadline
        return float(np.fmax(excess, 0.0).sum())  # fmax drops NaN (an unknown ITL)

    def _switching(self, levels: np.ndarray, previous: np.ndarray) -> float:
        changed = levels != previous
        if not changed.any():
            self._since_change += 1.0
            return 0.0
        mode = self.config.switch_mode
        if mode == "magnitude":
            cost = float(np.abs(self._log2[self._rows, levels] - self._log2[self._rows, previous]).sum())
        elif mode == "binary":
            cost = float(np.count_nonzero(changed))
        else:
            cost = float(np.exp(-self._since_change[changed] / self.config.cooldown_steps).sum())
        self._since_change = np.where(changed, 0.0, self._since_change + 1.0)
        return cost

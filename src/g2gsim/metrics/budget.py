"""Power-budget tracking of sites: time and energy above the budget a budget source published."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Keys of the budget summary, present only in runs that recorded a budget.
BUDGET_METRICS = ("budget_violation_s", "budget_excess_kwh")


def budget_metrics(state: pd.DataFrame, budget: pd.DataFrame, *, grace_s: float = 5.0) -> dict[str, float]:
    """Budget tracking of one site.

    `state` is the site's state table (time_s, power_a_w, power_b_w, power_c_w); `budget`
    the budget source's table (time_s, budget_kw; a step function from each row on). Each
    site sample holds for one step dt (median spacing). A sample counts only after a grace
    period of `grace_s` from the latest budget change (including the first publish):

    - budget_violation_s = dt * #{samples with site power > budget};
    - budget_excess_kwh = sum of (power - budget)+ * dt / 3600 over those samples.
    """
    if state.empty or budget.empty or len(state) < 2:
        return {"budget_violation_s": 0.0, "budget_excess_kwh": 0.0}
    t = state["time_s"].to_numpy(dtype=float)
    power_kw = state[["power_a_w", "power_b_w", "power_c_w"]].to_numpy(dtype=float).sum(axis=1) / 1e3
    dt = float(np.median(np.diff(t)))
    changes = budget["time_s"].to_numpy(dtype=float)
    levels = budget["budget_kw"].to_numpy(dtype=float)
    order = np.argsort(changes, kind="stable")
    changes, levels = changes[order], levels[order]
    idx = np.searchsorted(changes, t, side="right") - 1
    known = idx >= 0
    limit = np.where(known, levels[np.maximum(idx, 0)], np.inf)
    since = np.where(known, t - changes[np.maximum(idx, 0)], 0.0)
    counted = known & (since >= grace_s)
    excess = np.where(counted, np.maximum(power_kw - limit, 0.0), 0.0)
    return {
        "budget_violation_s": float(dt * np.count_nonzero(excess > 0)),
        "budget_excess_kwh": float(excess.sum() * dt / 3600.0),
    }


def budget_summary(
    budgets: Mapping[str, pd.DataFrame], states: Mapping[str, pd.DataFrame], sites: Mapping[str, str]
) -> dict[str, float]:
    """:func:`budget_metrics` summed over a run's budget tables (none recorded: no keys).

    `budgets` maps each budget source to its ``budget`` table (``RunResult.tables_of("budget")``),
    `states` each site to its state table and `sites` each budget source to the site it limits.
    """
    if not budgets:
        return {}
    out = dict.fromkeys(BUDGET_METRICS, 0.0)
    for source, budget in budgets.items():
        site = sites.get(source)
        if site is not None and site in states:
            for key, value in budget_metrics(states[site], budget).items():
                out[key] += value
    return out

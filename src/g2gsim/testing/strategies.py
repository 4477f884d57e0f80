"""Hypothesis strategies for controller property tests (needs the ``hypothesis`` package).

Each strategy draws one input a controller sees or lives with: voltage vectors and per-step
voltage scripts, batch sizes, inter-token latencies around their deadlines, link specs in
whole ticks, and a whole :class:`~g2gsim.testing.grids.ScriptedGrid` with drawn voltages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from g2gsim.kernel.links import LinkSpec
from g2gsim.kernel.time import TimeLike, as_period
from g2gsim.testing.grids import ScriptedGrid, three_phase
from g2gsim.testing.sites import BATCHES, Scripted

__all__ = [
    "batch_sizes",
    "batches",
    "itl_scripts",
    "itl_values",
    "link_specs",
    "scripted_grids",
    "voltage_scripts",
    "voltages",
]


def voltages(
    n: int, *, low: float = 0.90, high: float = 1.10, allow_nan: bool = False
) -> st.SearchStrategy[np.ndarray]:
    """One voltage vector of `n` entries in [low, high] pu (some NaN, an absent phase, if allowed)."""
    element = st.floats(low, high, allow_nan=False, allow_infinity=False)
    if allow_nan:
        element = st.one_of(element, element, element, st.just(float("nan")))
    return hnp.arrays(np.float64, n, elements=element)


def voltage_scripts(
    n: int, *, steps: tuple[int, int] = (1, 20), low: float = 0.90, high: float = 1.10, allow_nan: bool = False
) -> st.SearchStrategy[np.ndarray]:
    """A (steps, n) table of voltages, one row per grid step (the last row repeats)."""
    return st.integers(*steps).flatmap(
        lambda k: st.lists(voltages(n, low=low, high=high, allow_nan=allow_nan), min_size=k, max_size=k).map(np.stack)
    )


def batch_sizes(feasible: Sequence[int] = BATCHES) -> st.SearchStrategy[int]:
    """One batch size from a feasible set."""
    return st.sampled_from(tuple(feasible))


def batches(
    models: Sequence[str], feasible: Sequence[int] | Mapping[str, Sequence[int]] = BATCHES
) -> st.SearchStrategy[dict[str, int]]:
    """A batch size per model label, each from its feasible set (one set for all, or one per model)."""

    def options(model: str) -> Sequence[int]:
        return feasible[model] if isinstance(feasible, Mapping) else feasible

    return st.fixed_dictionaries({model: batch_sizes(options(model)) for model in models})


def itl_values(deadlines_s: Sequence[float], *, allow_nan: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Observed ITL per model, s: from 0 to three times each model's deadline (NaN: not observed)."""

    def one(deadline: float) -> st.SearchStrategy[float]:
        value = st.floats(0.0, 3.0 * deadline, allow_nan=False, allow_infinity=False)
        return st.one_of(value, value, value, st.just(float("nan"))) if allow_nan else value

    return st.tuples(*(one(d) for d in deadlines_s)).map(lambda values: np.array(values, dtype=float))


def itl_scripts(
    deadlines_s: Sequence[float], *, steps: tuple[int, int] = (1, 20), allow_nan: bool = True
) -> st.SearchStrategy[Scripted]:
    """A per-step ITL script for :class:`~g2gsim.testing.sites.FakeSite` (``itl=``)."""
    return st.integers(*steps).flatmap(
        lambda k: st.lists(itl_values(deadlines_s, allow_nan=allow_nan), min_size=k, max_size=k).map(Scripted)
    )


def link_specs(
    *,
    tick_s: TimeLike = Fraction(1, 10),
    max_delay_ticks: int = 20,
    jitter: bool = True,
    loss: bool = True,
) -> st.SearchStrategy[LinkSpec]:
    """A command or measurement link: delay and jitter in whole ticks of `tick_s`, a loss
    probability below one half (instant links included)."""
    tick = as_period(tick_s, name="tick_s")
    ticks = st.integers(0, max_delay_ticks)
    return st.builds(
        LinkSpec,
        delay_s=ticks.map(lambda n: n * tick),
        jitter_s=ticks.map(lambda n: n * tick) if jitter else st.just(Fraction(0)),
        loss_probability=st.sampled_from([0.0, 0.0, 0.1, 0.5]) if loss else st.just(0.0),
    )


def scripted_grids(
    buses: Sequence[str],
    *,
    sites: Mapping[str, str],
    name: str = "grid",
    period: TimeLike = Fraction(1),
    steps: tuple[int, int] = (1, 20),
    low: float = 0.90,
    high: float = 1.10,
) -> st.SearchStrategy[ScriptedGrid]:
    """A :class:`ScriptedGrid` over three-phase `buses` whose voltages per step are drawn."""
    entries = three_phase(buses)
    return voltage_scripts(len(entries), steps=steps, low=low, high=high).map(
        lambda table: ScriptedGrid(name, entries, table, sites=sites, period=period)
    )

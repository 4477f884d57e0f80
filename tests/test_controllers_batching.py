"""Reading a site's state by model: the column positions controllers use, and their checks."""

from __future__ import annotations

import numpy as np
import pytest

from g2gsim.controllers.batching import state_columns
from g2gsim.datacenter.state import DatacenterState


def _state(models: tuple[str, ...], *, replicas: object = None, site: str = "dc") -> DatacenterState:
    n = len(models)
    per_model = np.arange(1.0, n + 1.0)
    return DatacenterState(
        site,
        0.0,
        models,
        np.zeros(3),
        per_model,
        per_model,
        per_model if replicas is None else replicas,  # type: ignore[arg-type]
        per_model,
        np.full((n, 3), 1 / 3),
    )


def test_columns_follow_the_controllers_labels_in_the_states_order() -> None:
    state = _state(("a", "b", "c"))
    assert state_columns(state, ("c", "a"), owner="x").tolist() == [2, 0]
    assert state_columns(state, ("b",), owner="x").tolist() == [1]
    columns = state_columns(state, ("c", "a"), owner="x")
    assert columns is state_columns(_state(("a", "b", "c")), ["c", "a"], owner="x")  # asked again: the same
    with pytest.raises(ValueError):
        columns[0] = 1  # shared between calls: read-only


def test_every_state_is_checked_even_when_its_columns_are_known() -> None:
    """The positions are remembered per (models, labels); the per-model arrays of each state
    are still checked, so a short array published later is an error naming the model."""
    state_columns(_state(("a", "b")), ("a", "b"), owner="OFO 'o'")
    short = _state(("a", "b"), replicas=np.array([4.0]))
    with pytest.raises(
        ValueError, match=r"OFO 'o': the state of site 'dc' has no replicas value for model\(s\) \['b'\]"
    ):
        state_columns(short, ("a", "b"), owner="OFO 'o'")
    listed = _state(("a", "b"), replicas=[4, 5])  # not an array: converted, and fine
    assert state_columns(listed, ("a", "b"), owner="x").tolist() == [0, 1]


def test_a_model_the_state_does_not_report_is_named() -> None:
    with pytest.raises(KeyError, match=r"reports no replicas/ITL for model\(s\) \['z'\]; it reports \['a', 'b'\]"):
        state_columns(_state(("a", "b")), ("a", "z"), owner="x")

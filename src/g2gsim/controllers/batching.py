"""Feasible batch sizes in log2 space, shared by the batch-size controllers (SPEC 5.2-5.4).

The batch-size controllers move a continuous x_i = log2(batch_i) per model, clip it to
[log2 min B_i, log2 max B_i] and command the feasible batch nearest to 2^x_i. This module
holds that bookkeeping, plus the lookup of a model's columns in a :class:`DatacenterState`
with errors that name the missing model.

B_i is the site's spec of the model (:func:`feasible_sizes`), the same set the datacenter
accepts: a scenario's ``batch_limit`` (a number, or ``"plan"``: the largest batch meeting the
ITL, TTFT and KV-cache memory bounds of :mod:`g2gsim.planning`) cuts the spec's feasible
sizes when the site is built, so every controller that builds its sets here (OFO,
rule-based, load shifting, the power budget) stays at or below the limit, and the site
refuses a command above it (a batch schedule's, say) with an error listing the sizes allowed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from g2gsim.datacenter.state import DatacenterState


def feasible_sizes(spec: Any) -> tuple[int, ...]:
    """A spec's feasible batch sizes, sorted (its measured sizes when none are singled out)."""
    sizes = getattr(spec, "feasible_batch_sizes", None) or getattr(spec, "batch_sizes", None)
    if not sizes:
        label = getattr(spec, "model_label", repr(spec))
        raise ValueError(f"model {label!r} has no feasible batch sizes")
    out = tuple(sorted({int(b) for b in sizes}))
    if out[0] <= 0:
        raise ValueError(f"model {getattr(spec, 'model_label', spec)!r}: batch sizes must be positive, got {out}")
    return out


def nearest_batch(sizes: Sequence[int], x: float) -> int:
    """The size in sorted `sizes` nearest to 2^x (linear distance; a tie goes to the smaller)."""
    target = 2.0 ** float(x)
    i = bisect.bisect_left(sizes, target)
    if i == 0:
        return int(sizes[0])
    if i == len(sizes):
        return int(sizes[-1])
    lower, upper = sizes[i - 1], sizes[i]
    return int(upper) if upper - target < target - lower else int(lower)


@dataclass(frozen=True, slots=True, eq=False)
class FeasibleBatches:
    """Per-model feasible sets B_i and their log2 bounds, in a fixed model order.

    With `union=True` every model uses the union of all models' sets (OpenG2G's behaviour,
    kept as a compatibility switch; SPEC 9 lists it as a flaw).
    """

    labels: tuple[str, ...]
    sizes: tuple[tuple[int, ...], ...]
    x_min: np.ndarray  # (n_models,) log2 min B_i
    x_max: np.ndarray  # (n_models,) log2 max B_i

    @classmethod
    def from_specs(cls, specs: Mapping[str, Any], *, union: bool = False) -> FeasibleBatches:
        """Sets from model specs keyed by label (the order of `specs` is kept)."""
        labels = tuple(specs)
        if not labels:
            raise ValueError("a batch-size controller needs at least one model")
        own = [feasible_sizes(specs[label]) for label in labels]
        if union:
            merged = tuple(sorted({b for sizes in own for b in sizes}))
            own = [merged] * len(labels)
        x_min = np.array([math.log2(s[0]) for s in own])
        x_max = np.array([math.log2(s[-1]) for s in own])
        return cls(labels, tuple(own), x_min, x_max)

    def __len__(self) -> int:
        return len(self.labels)

    def clip(self, x: np.ndarray) -> np.ndarray:
        """x clipped to [log2 min B_i, log2 max B_i] per model (NaN stays NaN).

        ``minimum(maximum(x, lo), hi)``: the same values as ``np.clip`` without its
        Python-level dispatch, which dominates for a handful of models.
        """
        return np.minimum(np.maximum(x, self.x_min), self.x_max)

    def nearest(self, x: Iterable[float]) -> list[int]:
        """The feasible batch nearest to 2^x_i for every model."""
        if isinstance(x, np.ndarray):
            x = x.tolist()  # Python floats: the same values, cheaper to convert one by one
        return [nearest_batch(sizes, xi) for sizes, xi in zip(self.sizes, x, strict=True)]

    def at_min(self, label: str, batch: int) -> bool:
        """Whether `batch` is at or below the model's smallest feasible size."""
        return batch <= self.sizes[self.labels.index(label)][0]

    def at_max(self, label: str, batch: int) -> bool:
        """Whether `batch` is at or above the model's largest feasible size."""
        return batch >= self.sizes[self.labels.index(label)][-1]


#: Per-model fields of a state that controllers read by column.
_PER_MODEL_FIELDS = ("replicas", "itl_s", "batch")
#: Column positions by (state models, controller labels): a run asks the same question every
#: control step. Bounded, for processes that run many differently labelled sites.
_COLUMNS: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}
_COLUMNS_KEPT = 256


def state_columns(state: DatacenterState, labels: Sequence[str], *, owner: str) -> np.ndarray:
    """Positions of `labels` in a state's per-model arrays (read-only; the same array for the
    same models and labels).

    A model the state does not report, or per-model arrays (replicas, ITL, batch) shorter
    than the state's model list, is an error naming the model and the controller.
    """
    models = state.models
    key = (tuple(models), tuple(labels))
    columns = _COLUMNS.get(key)
    if columns is None:
        missing = [label for label in labels if label not in models]
        if missing:
            raise KeyError(
                f"{owner}: the state of site {state.site!r} reports no replicas/ITL for model(s) "
                f"{missing}; it reports {list(models)}"
            )
        columns = np.array([models.index(label) for label in labels], dtype=np.intp)
        columns.flags.writeable = False
        if len(_COLUMNS) < _COLUMNS_KEPT:
            _COLUMNS[key] = columns
    shape = (len(models),)
    for field in _PER_MODEL_FIELDS:
        values = getattr(state, field)
        if type(values) is np.ndarray and values.shape == shape:
            continue  # the usual case, checked without a conversion
        values = np.asarray(values)
        if values.ndim != 1 or values.shape[0] != len(models):
            short = [m for i, m in enumerate(models) if values.ndim != 1 or i >= values.shape[0]]
            raise ValueError(
                f"{owner}: the state of site {state.site!r} has no {field} value for model(s) "
                f"{[m for m in short if m in labels] or short}"
            )
    return columns

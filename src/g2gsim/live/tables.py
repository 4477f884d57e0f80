"""The live site's recording: per-step columns of what it published and what it measured.

Three tables, append-only (so a run streamed in chunks keeps every row):

- ``state``: the trace-driven site's columns (``power_a_w``.., ``<model>.batch``,
  ``.replicas``, ``.itl_s``, ``.power_w`` = augmented) plus the measured power
  (``measured_power_a_w``.., ``<model>.measured_power_w``), ``<model>.augmentation_factor``,
  ``<model>.ttft_s``, the Prometheus snapshot (``<model>.running``, ``.waiting``,
  ``.kv_cache_usage``, ``.preemptions``), the failure flags ``<model>.server_down`` and
  ``<model>.power_stale``, and ``power_age_s``;
- ``gpu_power``: every metered GPU's newest reading at each step (:func:`gpu_column` names);
- ``itl_samples``: up to :data:`ITL_SAMPLES_PER_STEP` per model and step, evenly spread over
  the tokens that arrived since the previous step (each token's seconds: its chunk's gap over
  the chunk's tokens), with the batch the server ran and the tokens each sample stands for
  (a step's tokens over its kept samples: weigh by it to average over tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from g2gsim.datacenter.pool import PHASES
from g2gsim.live.state import PROMETHEUS_FIELDS, LiveDatacenterState

__all__ = ["ITL_SAMPLES_PER_STEP", "MODEL_COLUMNS", "LiveRecorder", "gpu_column"]

#: ITL samples kept per model and step for the recording.
ITL_SAMPLES_PER_STEP = 8

#: Per-model columns of the ``state`` table, in order (``<model>.<name>``).
MODEL_COLUMNS = (
    "batch",
    "replicas",
    "itl_s",
    "ttft_s",
    "power_w",
    "measured_power_w",
    "augmentation_factor",
    *PROMETHEUS_FIELDS,
    "server_down",
    "power_stale",
)
_INTEGER = {"batch", "replicas"}
_FLAGS = {"server_down", "power_stale"}
_PHASES = ("a", "b", "c")


def gpu_column(model: str, endpoint: str, gpu: int) -> str:
    """Column of the ``gpu_power`` table holding one metered GPU's power, W."""
    return f"{model}.{endpoint}.gpu{gpu}_w"


def _state_source(state: LiveDatacenterState, name: str) -> np.ndarray:
    sources = {"power_w": state.model_power_w, "measured_power_w": state.measured_model_power_w}
    if name in sources:
        return sources[name]
    if name == "ttft_s":
        return state.ttft_s if state.ttft_s is not None else np.full(len(state.models), math.nan)
    return np.asarray(getattr(state, name))


class LiveRecorder:
    """Preallocated per-step buffers of one run of a live site, and the tables they make.

    Args:
        labels: Model labels (state order).
        gpu_columns: Column names of the metered GPUs, in power-buffer row order.
        times: Step times, s.
    """

    def __init__(self, labels: Sequence[str], gpu_columns: Sequence[str], times: np.ndarray) -> None:
        n, m = times.size, len(labels)
        self.labels = tuple(labels)
        self.gpu_columns = tuple(gpu_columns)
        self.times = times
        self.rows = 0
        self._model: dict[str, np.ndarray] = {}
        for name in MODEL_COLUMNS:
            if name in _INTEGER:
                self._model[name] = np.zeros((n, m), dtype=np.int64)
            elif name in _FLAGS:
                self._model[name] = np.zeros((n, m), dtype=bool)
            else:
                self._model[name] = np.full((n, m), math.nan)
        self._power = np.zeros((n, PHASES))
        self._measured = np.zeros((n, PHASES))
        self._gpu = np.full((n, len(self.gpu_columns)), math.nan)
        self._age = np.full(n, math.nan)
        self._itl = np.full((n, m, ITL_SAMPLES_PER_STEP), math.nan)
        self._itl_tokens = np.zeros((n, m))  # tokens each kept sample stands for

    def record(
        self,
        k: int,
        state: LiveDatacenterState,
        gpu_w: np.ndarray,
        power_age_s: float,
        down: np.ndarray,
        power_stale: np.ndarray,
    ) -> None:
        """Step k: the published state, each GPU's reading, the newest reading's age, the flags."""
        for name in MODEL_COLUMNS:
            if name == "server_down":
                self._model[name][k] = down
            elif name == "power_stale":
                self._model[name][k] = power_stale
            else:
                self._model[name][k] = _state_source(state, name)
        self._power[k] = state.power_w
        self._measured[k] = state.measured_power_w
        self._gpu[k] = gpu_w
        self._age[k] = power_age_s
        self.rows = k + 1

    def record_itl(self, k: int, m: int, samples: Sequence[tuple[float, int]]) -> None:
        """Keep up to :data:`ITL_SAMPLES_PER_STEP` per-token ITLs of model m, evenly spread over
        the tokens of the (seconds per token, tokens) samples, so each token weighs the same."""
        if not samples:
            return
        pairs = np.asarray(samples, dtype=float).reshape(-1, 2)
        values = np.repeat(pairs[:, 0], np.maximum(pairs[:, 1], 1).astype(np.int64))
        tokens = values.size
        if values.size > ITL_SAMPLES_PER_STEP:
            values = values[np.linspace(0, values.size - 1, ITL_SAMPLES_PER_STEP).round().astype(np.int64)]
        self._itl[k, m, : values.size] = values
        self._itl_tokens[k, m] = tokens / values.size

    def stale_steps(self) -> dict[str, np.ndarray]:
        """Per flag ("server_down", "power_stale", "stale" = either): steps flagged per model."""
        rows = self.rows
        down = self._model["server_down"][:rows]
        power = self._model["power_stale"][:rows]
        return {"server_down": down.sum(axis=0), "power_stale": power.sum(axis=0), "stale": (down | power).sum(axis=0)}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``state``, ``gpu_power`` and ``itl_samples`` (see the module docstring)."""
        rows = self.rows
        times = self.times[:rows].copy()
        state: dict[str, np.ndarray] = {"time_s": times}
        for p, phase in enumerate(_PHASES):
            state[f"power_{phase}_w"] = self._power[:rows, p].copy()
        for m, label in enumerate(self.labels):
            for name in MODEL_COLUMNS:
                state[f"{label}.{name}"] = self._model[name][:rows, m].copy()
        for p, phase in enumerate(_PHASES):
            state[f"measured_power_{phase}_w"] = self._measured[:rows, p].copy()
        state["power_age_s"] = self._age[:rows].copy()
        gpu = {"time_s": times.copy(), **{c: self._gpu[:rows, i].copy() for i, c in enumerate(self.gpu_columns)}}
        return {"state": pd.DataFrame(state), "gpu_power": pd.DataFrame(gpu), "itl_samples": self._itl_table(rows)}

    def _itl_table(self, rows: int) -> pd.DataFrame:
        """Long table of the kept ITL samples: time_s, model, batch, itl_s, tokens (time order)."""
        values = self._itl[:rows]
        k, m, _ = np.nonzero(np.isfinite(values))
        labels = np.asarray(self.labels, dtype=object)
        return pd.DataFrame(
            {
                "time_s": self.times[k],
                "model": labels[m] if k.size else np.zeros(0, dtype=object),
                "batch": self._model["batch"][k, m],
                "itl_s": values[np.isfinite(values)],
                "tokens": self._itl_tokens[k, m],
            }
        )

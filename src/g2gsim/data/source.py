"""The one interface every data backend offers (SPEC 8); :mod:`g2gsim.data.open` opens one.

A :class:`DataSource` answers, per model spec and batch size: the measured power trace, the
per-GPU template for a run's step and horizon, the ITL mixture fit, and per model the
logistic fits OFO needs. Backends: the bundled synthetic dataset, OpenG2G's v0.1 and v0.2
caches, and ML.ENERGY benchmark runs through ``mlenergy-data``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from fractions import Fraction
from typing import TYPE_CHECKING

from g2gsim.data.fits import LogisticFits
from g2gsim.data.traces import PowerTemplate, PowerTrace, build_template
from g2gsim.kernel.time import TimeLike, as_period, as_seconds

if TYPE_CHECKING:
    from mlenergy.data.modeling import ITLMixtureModel

    from g2gsim.data.spec import ModelSpec

__all__ = ["DataSource", "LogisticFits", "MissingDataError", "PowerTemplate"]


class MissingDataError(LookupError):
    """A data source has nothing for a (model, batch) that a run asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataSource(ABC):
    """Power traces, templates, ITL mixtures and logistic fits, per model spec.

    Subclasses implement :meth:`trace`, :meth:`itl_fit`, :meth:`logistic_fits` and
    :meth:`batch_sizes`; templates are derived here and cached per (spec, batch, dt, horizon)
    because every run of a sweep asks for the same ones.
    """

    #: Seconds of warm-up dropped from every trace before it becomes a template.
    steady_skip_s: float = 0.0

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str, int, Fraction, Fraction], PowerTemplate] = {}

    @property
    @abstractmethod
    def description(self) -> str:
        """One line naming the data (shown in run metadata and plots)."""

    @property
    def is_synthetic(self) -> bool:
        """True for generated data (labelled as such wherever results are shown)."""
        return False

    @abstractmethod
    def batch_sizes(self, spec: ModelSpec) -> tuple[int, ...]:
        """Batch sizes with a power trace for this model, sorted."""

    @abstractmethod
    def trace(self, spec: ModelSpec, batch: int) -> PowerTrace:
        """The measured power trace of one (model, batch)."""

    @abstractmethod
    def itl_fit(self, spec: ModelSpec, batch: int) -> ITLMixtureModel | None:
        """ITL mixture of one (model, batch); None when the source has no latency data."""

    @abstractmethod
    def logistic_fits(self, spec: ModelSpec) -> LogisticFits:
        """Power / latency / throughput logistic fits of one model."""

    def power_template(self, spec: ModelSpec, batch: int, dt: TimeLike, horizon_s: TimeLike) -> PowerTemplate:
        """Per-GPU template of one (model, batch) on the grid 0, dt, ... over the horizon."""
        step = as_period(dt, name="dt")
        horizon = as_seconds(horizon_s, name="horizon_s")
        key = (spec.cache_hash(), spec.model_label, int(batch), step, horizon)
        template = self._templates.get(key)
        if template is None:
            template = build_template(self.trace(spec, batch), step, horizon, steady_skip_s=self.steady_skip_s)
            self._templates[key] = template
        return template

    def missing(self, spec: ModelSpec, batch: int | None, what: str) -> MissingDataError:
        """The error for absent data, naming the model, the batch and what the source has."""
        has = list(self.batch_sizes(spec)) if batch is not None else []
        at = f" at batch {batch}" if batch is not None else ""
        known = f"; batch sizes with data: {has}" if batch is not None else ""
        return MissingDataError(f"{self.description}: no {what} for model {spec.model_label!r}{at}{known}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.description}>"

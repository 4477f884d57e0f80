"""Where power and latency come from (SPEC 8): one interface over several backends.

- :mod:`~g2gsim.data.source`: the :class:`DataSource` interface; :mod:`~g2gsim.data.open`: :func:`open_data_source`.
- :mod:`~g2gsim.data.spec`: model specs (:class:`ModelSpec`) and the paper's five models.
- :mod:`~g2gsim.data.bundled`: the bundled synthetic dataset (the default).
- :mod:`~g2gsim.data.caches`: OpenG2G v0.1 / v0.2 caches (read) and v0.2 (write).
- :mod:`~g2gsim.data.mlenergy`: ML.ENERGY benchmark runs through ``mlenergy-data``.
- :mod:`~g2gsim.data.traces`, :mod:`~g2gsim.data.fits`, :mod:`~g2gsim.data.training`.
"""

from g2gsim.data.fits import LogisticFits
from g2gsim.data.open import data_fingerprint, open_data_source
from g2gsim.data.source import DataSource, MissingDataError
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.data.traces import PowerTemplate, PowerTrace
from g2gsim.data.training import TrainingTrace, synthetic_training_trace

__all__ = [
    "PAPER_MODELS",
    "DataSource",
    "LogisticFits",
    "MissingDataError",
    "ModelSpec",
    "PowerTemplate",
    "PowerTrace",
    "TrainingTrace",
    "data_fingerprint",
    "open_data_source",
    "synthetic_training_trace",
]

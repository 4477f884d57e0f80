"""The grid: OpenDSS feeders coupled to load sites, solved once per grid step.

The public contract: a grid is a :class:`Grid` component that publishes a :class:`GridState`
in its ``state`` mailbox after every solve (layout: its :class:`VoltageIndex`, known before
the run), reads the power of its attached sites (:mod:`~g2gsim.grid.sites`) and accepts
:class:`SetTaps`, :class:`SetStoragePower` and :class:`ResolveGrid`.

Modules:

- :mod:`~g2gsim.grid.base`, :mod:`~g2gsim.grid.state`, :mod:`~g2gsim.grid.commands`,
  :mod:`~g2gsim.grid.sites`: the contract (role, published state, commands, what a grid
  reads of its sites);
- :mod:`~g2gsim.grid.config`: feeder options, attachments, profiles and storage (pydantic);
- :mod:`~g2gsim.grid.feeders`: bundled IEEE feeders and user ``.dss`` files
  (:mod:`~g2gsim.grid.feeder_tables`: the rows of a feeder's tables);
- :mod:`~g2gsim.grid.engine`: one private OpenDSS context per engine (C-API fast path);
- :mod:`~g2gsim.grid.circuit`: OpenDSS calls beyond the engine (attachments, regulators, storage);
- :mod:`~g2gsim.grid.loads`: the batched per-step load writes and profile injections;
- :mod:`~g2gsim.grid.reuse`: compiled-circuit reuse for sweeps;
- :mod:`~g2gsim.grid.recording`: the per-step rows a grid records;
- :mod:`~g2gsim.grid.opendss`: the :class:`OpenDSSGrid` component;
- :mod:`~g2gsim.grid.linearized`: :class:`LinearizedOpenDSSGrid`, a linear model for screening;
- :mod:`~g2gsim.grid.topology`: the compiled feeder as a graph;
- :mod:`~g2gsim.grid.errors`: :class:`GridError` and :class:`FeederDefinitionError`.

The names backed by OpenDSS or networkx (:class:`OpenDSSGrid`, :class:`LinearizedOpenDSSGrid`,
:func:`load_feeder`, :class:`FeederTopology`) load on first use, so importing the contract
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from g2gsim.grid.base import Grid
from g2gsim.grid.commands import ResolveGrid, SensitivityRequest, SetStoragePower, SetTaps
from g2gsim.grid.config import (
    ConstantProfile,
    CsvProfile,
    GeneratorAttachment,
    GridConfig,
    GridOptions,
    LoadAttachment,
    Profile,
    SiteAttachment,
    StorageSpec,
    SyntheticLoad,
    SyntheticPV,
    from_openg2g_per_phase,
    tap_pu,
)
from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.grid.sites import LoadSite, SitePower
from g2gsim.grid.state import GridState, SensitivityReply, VoltageIndex

if TYPE_CHECKING:
    from g2gsim.grid.feeders import Feeder, load_feeder
    from g2gsim.grid.linearized import LinearizedOpenDSSGrid
    from g2gsim.grid.opendss import OpenDSSGrid
    from g2gsim.grid.topology import FeederTopology

__all__ = [
    "ConstantProfile",
    "CsvProfile",
    "Feeder",
    "FeederDefinitionError",
    "FeederTopology",
    "GeneratorAttachment",
    "Grid",
    "GridConfig",
    "GridError",
    "GridOptions",
    "GridState",
    "LinearizedOpenDSSGrid",
    "LoadAttachment",
    "LoadSite",
    "OpenDSSGrid",
    "Profile",
    "ResolveGrid",
    "SensitivityReply",
    "SensitivityRequest",
    "SetStoragePower",
    "SetTaps",
    "SiteAttachment",
    "SitePower",
    "StorageSpec",
    "SyntheticLoad",
    "SyntheticPV",
    "VoltageIndex",
    "from_openg2g_per_phase",
    "load_feeder",
    "tap_pu",
]

#: Exports loaded on first use: name -> module.
_LAZY = {
    "Feeder": "g2gsim.grid.feeders",
    "load_feeder": "g2gsim.grid.feeders",
    "OpenDSSGrid": "g2gsim.grid.opendss",
    "LinearizedOpenDSSGrid": "g2gsim.grid.linearized",
    "FeederTopology": "g2gsim.grid.topology",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

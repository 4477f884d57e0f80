"""The grid: OpenDSS engines, feeder definitions, the grid component and feeder topology.

Modules: :mod:`~g2gsim.grid.engine` (one private OpenDSS context per engine),
:mod:`~g2gsim.grid.feeders` (bundled IEEE feeders and user ``.dss`` files),
:mod:`~g2gsim.grid.topology` (the compiled feeder as a graph).
"""

"""Errors of the grid package: OpenDSS failures and invalid feeder definitions."""

from __future__ import annotations


class GridError(RuntimeError):
    """OpenDSS refused a command, a feeder failed to compile, or a power flow did not converge.

    The message names the feeder and, where there is one, the simulation time and OpenDSS's
    own error text, so a failure deep inside a run can be traced to its cause.
    """


class FeederDefinitionError(ValueError):
    """A feeder definition (``feeder.toml`` and its CSV tables) is invalid.

    The message names the feeder, the file, the row and the field at fault.
    """

"""Configuration of a live site and the errors of a live run.

The configuration models live in :mod:`g2gsim.datacenter.live_config` (plain data, so a
scenario validates them without the ``live`` extra); they are re-exported here.
"""

from __future__ import annotations

from g2gsim.datacenter.live_config import LiveServerConfig, LiveSiteConfig

__all__ = ["LiveServerConfig", "LiveServerError", "LiveSiteConfig", "LiveStartupError"]


class LiveStartupError(RuntimeError):
    """The live site could not start (a server or meter unreachable, warm-up timed out, ...)."""


class LiveServerError(RuntimeError):
    """A live server failed during a run and the site is configured to stop on failures."""

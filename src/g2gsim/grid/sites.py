"""The load-site protocol: what a grid needs of the components attached to it as loads.

A grid attaches a site (a datacenter, or any stand-in) by component name and reads, at each
solve, the newest value the site published in its ``state`` mailbox (or, with
``coupling = "mean"``, the mean of the values since the last solve). It needs only two things:

- of the component: :attr:`LoadSite.power_factor`, read once at start unless the attachment
  sets its own (:attr:`~g2gsim.grid.config.SiteAttachment.power_factor`);
- of each published value: :attr:`SitePower.power_w`, the site's power per phase a, b, c in W
  (shape ``(3,)``; kW = W / 1000, kvar = kW * tan(acos(pf))).

:class:`~g2gsim.datacenter.DatacenterState` and :class:`~g2gsim.datacenter.Datacenter` satisfy
both; the grid never imports them, so a grid can be tested against any object with these
attributes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LoadSite", "SitePower"]


class SitePower(Protocol):
    """A value a site publishes in its ``state`` mailbox, as far as the grid reads it."""

    @property
    def power_w(self) -> np.ndarray:
        """Power per phase a, b, c, W (shape ``(3,)``, finite)."""
        ...


@runtime_checkable
class LoadSite(Protocol):
    """An attached site component, as far as the grid reads it."""

    @property
    def power_factor(self) -> float:
        """Lagging power factor cos(phi) in (0, 1] of the site's load."""
        ...

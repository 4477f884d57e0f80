"""Hardware in the loop (SPEC 3): a datacenter whose power and latency come from real servers.

- :class:`~g2gsim.live.datacenter.LiveDatacenter` talks to vLLM OpenAI-compatible servers
  (load generation, ITL, queue metrics, batch-size control) and to Zeus ``zeusd`` power
  meters, and augments the few real GPUs to the simulated fleet through the server pool.
- :mod:`g2gsim.live.fakes` ships fake vLLM and zeusd HTTP servers that follow the data
  layer's fitted curves, with fault injection, to rehearse without GPUs.
- :mod:`g2gsim.live.scenario` re-points a live scenario at endpoints, serves fakes for it and
  runs it (:func:`~g2gsim.live.scenario.run_live`, behind ``g2gsim run --live``).
- :mod:`g2gsim.live.state` and :mod:`g2gsim.live.tables`: what a live site publishes
  (:class:`~g2gsim.live.state.LiveDatacenterState`: measured and augmented power, the
  augmentation factor, each server's Prometheus snapshot) and records.
- :mod:`g2gsim.live.replay` writes a live run's measurements as an offline data source and
  reruns the scenario offline from it (``g2gsim replay``).

Importing this package registers the site kind "live" (a scenario site with a
``[sites.live]`` table); the scenario builder finds it through the ``g2gsim.plugins`` entry
point. Running a live site needs the ``live`` extra (aiohttp, prometheus-client, zeus).
"""

from __future__ import annotations

from g2gsim.datacenter.live_config import GpuEndpoint
from g2gsim.kernel.component import Component
from g2gsim.kernel.registry import ComponentKind, register
from g2gsim.live.config import LiveServerConfig, LiveSiteConfig, LiveStartupError
from g2gsim.live.state import LiveDatacenterState
from g2gsim.scenarios.build import ScenarioContext
from g2gsim.scenarios.model import SiteSection

__all__ = [
    "GpuEndpoint",
    "LiveDatacenterState",
    "LiveServerConfig",
    "LiveSiteConfig",
    "LiveStartupError",
    "build_live_site",
]


def build_live_site(site: SiteSection, context: ScenarioContext) -> Component:
    """The live datacenter of a site section with a ``[sites.live]`` table."""
    from g2gsim.live.datacenter import LiveDatacenter

    assert site.live is not None
    config = context.datacenter_config(site)
    return LiveDatacenter(
        site.name, config, context.require_data(), site.live, period=site.period_s, seed=context.site_seed(site)
    )


register(ComponentKind("site", "live", SiteSection, build_live_site))

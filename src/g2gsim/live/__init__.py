"""Hardware in the loop (SPEC 3): a datacenter whose power and latency come from real servers.

- :class:`~g2gsim.live.datacenter.LiveDatacenter` talks to vLLM OpenAI-compatible servers
  (load generation, ITL, queue metrics, batch-size control) and to Zeus ``zeusd`` power
  meters, and augments the few real GPUs to the simulated fleet through the server pool.
- :mod:`g2gsim.live.fakes` ships fake vLLM and zeusd HTTP servers that follow the data
  layer's fitted curves, with fault injection, to rehearse without GPUs.
- :mod:`g2gsim.live.scenario` re-points a live scenario at endpoints, serves fakes for it and
  runs it (:func:`~g2gsim.live.scenario.run_live`, behind ``g2gsim run --live``).

Needs the ``live`` extra (aiohttp, prometheus-client, zeus); imported lazily by the scenario
builder, so the rest of g2gsim works without it.
"""

from g2gsim.live.config import LiveServerConfig, LiveSiteConfig, LiveStartupError

__all__ = ["LiveServerConfig", "LiveSiteConfig", "LiveStartupError"]

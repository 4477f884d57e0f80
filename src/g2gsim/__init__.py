"""g2gsim: discrete-event co-simulation of AI datacenters and distribution grids."""

__version__ = "0.1.0"

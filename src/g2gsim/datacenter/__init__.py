"""Datacenters: configuration, server pool, power and latency, trace-driven and live processes."""

"""Per-component, per-purpose random streams (SPEC 1.7).

Streams are keyed by the component's name and the purpose, not by creation order, so
adding a component never changes another component's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np

PURPOSES = ("layout", "noise", "latency", "jitter", "loss", "control")


def stable_key(text: str) -> int:
    """A 64-bit integer derived from a string, identical on every machine and run."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def random_stream(seed: int, component: str, purpose: str) -> np.random.Generator:
    """Generator for one (component, purpose) under a seed."""
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=(stable_key(component), stable_key(purpose)))
    return np.random.Generator(np.random.PCG64(sequence))

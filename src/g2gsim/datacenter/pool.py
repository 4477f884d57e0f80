"""The server pool (SPEC 2.2) and the vectorised per-step fleet power (SPEC 2.3).

A site is a pool of identical servers; each server has a phase, a stagger offset into the
power templates and an amplitude scale, drawn once from the layout stream. Models claim
servers by per-model priority, round-robin over phases, so every model is spread as evenly
as possible over a, b and c.

Why it is fast: an allocation depends only on the replica counts, so it is computed when a
count changes (and cached by the count tuple), never per step. It is stored as flat integer
index arrays, so one step is a handful of NumPy operations over the allocated servers: one
``take`` from a bank of templates, a gain, noise, a clip and one ``bincount`` by
(model, phase). No Python loop over servers runs per step.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PHASES",
    "Allocation",
    "AllocationCache",
    "FleetPower",
    "OperatingPoint",
    "OversubscribedError",
    "ServerPool",
    "TemplateBank",
    "split_evenly",
]

#: Number of phases (a, b, c).
PHASES = 3


class OversubscribedError(RuntimeError):
    """The models ask for more servers than the pool has left."""


def split_evenly(n: int, parts: int = PHASES) -> list[int]:
    """Split n into `parts` counts that differ by at most one, larger counts first."""
    q, r = divmod(int(n), int(parts))
    return [q + (1 if i < r else 0) for i in range(parts)]


# -- allocation -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Allocation:
    """Which servers each model holds, in sorted label order (arrays are never mutated).

    `servers[m]` lists model m's servers in pick order. The flat arrays concatenate all
    models, so per-step work indexes them in one go: `flat_servers`, `flat_model` (model
    index of each entry) and `flat_key` = 3 * model + phase (the bincount key).
    """

    labels: tuple[str, ...]
    servers: tuple[np.ndarray, ...]
    phase_counts: np.ndarray  # (M, 3) servers per model and phase
    active_replicas: np.ndarray  # (M,) (servers * gpus_per_server) // gpus_per_replica
    phase_share: np.ndarray  # (M, 3) share of a model's servers per phase (uniform when none)
    flat_servers: np.ndarray
    flat_model: np.ndarray
    flat_key: np.ndarray

    @property
    def n_servers(self) -> np.ndarray:
        """Servers held per model."""
        return self.phase_counts.sum(axis=1)


@dataclass(frozen=True, eq=False)
class ServerPool:
    """Fixed per-server properties and per-model priorities of one site.

    Build it with :meth:`build` from the site's layout stream; :meth:`allocate` maps GPU
    demands to servers.
    """

    gpus_per_server: int
    phase: np.ndarray  # (S,) 0, 1, 2 for a, b, c
    stagger: np.ndarray  # (S,) template offset of each server
    amplitude: np.ndarray  # (S,) power scale of each server
    priority: Mapping[str, np.ndarray]  # model label -> permutation of all servers, best first
    _by_phase: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_phase = {}
        for label, order in self.priority.items():
            phases = self.phase[order]
            by_phase[label] = tuple(order[phases == p] for p in range(PHASES))
        object.__setattr__(self, "_by_phase", by_phase)

    @classmethod
    def build(
        cls,
        *,
        num_servers: int,
        gpus_per_server: int,
        labels: Sequence[str],
        template_length: int,
        amplitude_range: tuple[float, float],
        rng: np.random.Generator,
    ) -> ServerPool:
        """Draw a pool: balanced shuffled phases, staggers, amplitudes, then one priority per model.

        The draw order (phases, staggers, amplitudes, priorities in sorted label order) is
        fixed, so a seed always gives the same layout.
        """
        if num_servers < 1:
            raise ValueError(f"a server pool needs at least one server, got num_servers = {num_servers}")
        if template_length < 1:
            raise ValueError(f"template_length must be >= 1, got {template_length}")
        counts = split_evenly(num_servers)
        phase = np.repeat(np.arange(PHASES, dtype=np.int64), counts)
        rng.shuffle(phase)
        stagger = rng.integers(0, template_length, size=num_servers, dtype=np.int64)
        lo, hi = amplitude_range
        amplitude = rng.uniform(lo, hi, size=num_servers)
        priority = {}
        for label in sorted(labels):
            order = np.arange(num_servers, dtype=np.int64)
            rng.shuffle(order)
            priority[label] = order
        return cls(gpus_per_server, phase, stagger, amplitude, priority)

    @property
    def num_servers(self) -> int:
        """Servers in the pool."""
        return int(self.phase.size)

    def allocate(self, demand_gpus: Mapping[str, int], gpus_per_replica: Mapping[str, int]) -> Allocation:
        """Assign servers to models (sorted label order); an error if the pool runs out.

        A model with G GPUs of demand gets k = ceil(G / gpus_per_server) servers, picked
        round-robin over phases a, b, c, each time the highest-priority unclaimed server of
        the phase, skipping exhausted phases. Round r of that cycle takes the r-th free
        server of every phase that has one, so the picks are the k smallest keys
        3 r + phase: one argsort, no loop over servers.
        """
        labels = tuple(sorted(demand_gpus))
        claimed = np.zeros(self.num_servers, dtype=bool)
        chosen_by_model: list[np.ndarray] = []
        for label in labels:
            demand = int(demand_gpus[label])
            k = math.ceil(demand / self.gpus_per_server) if demand > 0 else 0
            if k == 0:
                chosen_by_model.append(np.zeros(0, dtype=np.int64))
                continue
            free = [group[~claimed[group]] for group in self._by_phase[label]]
            available = sum(f.size for f in free)
            if available < k:
                raise OversubscribedError(
                    f"model {label!r} needs {k} servers ({demand} GPUs at {self.gpus_per_server} per server) "
                    f"but only {available} of {self.num_servers} are unclaimed"
                )
            keys = np.concatenate([np.arange(f.size, dtype=np.int64) * PHASES + p for p, f in enumerate(free)])
            candidates = np.concatenate(free)
            picked = candidates[np.argsort(keys, kind="stable")[:k]]
            claimed[picked] = True
            chosen_by_model.append(picked)
        return self._allocation(labels, chosen_by_model, gpus_per_replica)

    def _allocation(
        self, labels: tuple[str, ...], servers: list[np.ndarray], gpus_per_replica: Mapping[str, int]
    ) -> Allocation:
        """Derive counts, replicas, shares and flat index arrays from per-model server lists."""
        n_models = len(labels)
        phase_counts = np.zeros((n_models, PHASES), dtype=np.int64)
        for m, picked in enumerate(servers):
            phase_counts[m] = np.bincount(self.phase[picked], minlength=PHASES)
        held = phase_counts.sum(axis=1)
        per_replica = np.array([gpus_per_replica[label] for label in labels], dtype=np.int64)
        active = (held * self.gpus_per_server) // per_replica if n_models else np.zeros(0, np.int64)
        share = np.full((n_models, PHASES), 1.0 / PHASES)
        has = held > 0
        share[has] = phase_counts[has] / held[has, None]
        flat_servers = np.concatenate(servers) if servers else np.zeros(0, np.int64)
        flat_model = np.repeat(np.arange(n_models, dtype=np.int64), held)
        flat_key = flat_model * PHASES + self.phase[flat_servers]
        for array in (phase_counts, active, share, flat_servers, flat_model, flat_key):
            array.setflags(write=False)
        return Allocation(labels, tuple(servers), phase_counts, active, share, flat_servers, flat_model, flat_key)


class AllocationCache:
    """Least-recently-used allocations of replica counts (sorted label order).

    An allocation depends on the replica counts only through the servers each model needs,
    ceil(replicas * gpus_per_replica / gpus_per_server), so counts that need the same
    servers share one allocation (the same object): it is computed once per server layout.
    """

    def __init__(self, pool: ServerPool, labels: Sequence[str], gpus_per_replica: Mapping[str, int], size: int = 256):
        self.pool = pool
        self.labels = tuple(sorted(labels))
        self._per_replica = {label: int(gpus_per_replica[label]) for label in self.labels}
        self._gpr = tuple(self._per_replica[label] for label in self.labels)
        self._size = size
        self._cache: OrderedDict[tuple[int, ...], Allocation] = OrderedDict()
        self.computed = 0
        self.hits = 0

    def servers(self, replicas: tuple[int, ...]) -> tuple[int, ...]:
        """Servers each model needs for one replica count per model."""
        per_server = self.pool.gpus_per_server
        return tuple(-(-max(int(n), 0) * gpr // per_server) for n, gpr in zip(replicas, self._gpr))

    def at(self, replicas: tuple[int, ...], site: str, time_s: float) -> Allocation:
        """:meth:`get` for a site's requested counts at a time: a pool too small is a ValueError
        naming the site and the time (both the trace-driven and the live site ask this way)."""
        try:
            return self.get(replicas)
        except OversubscribedError as exc:
            raise ValueError(f"site {site!r} at t = {time_s:g} s: {exc}") from exc

    def get(self, replicas: tuple[int, ...]) -> Allocation:
        """The allocation for one replica count per model (computed at most once while cached)."""
        key = self.servers(replicas)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return found
        demand = {label: n * self._per_replica[label] for label, n in zip(self.labels, replicas)}
        allocation = self.pool.allocate(demand, self._per_replica)
        self.computed += 1
        self._cache[key] = allocation
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return allocation


# -- templates and per-step power ----------------------------------------------------------------
class TemplateBank:
    """Per-GPU power templates of every (model, batch), stored so a run of steps needs no modulo.

    Template i of length L_i is stored as a row of L_i + n_steps values with row[j] =
    template[j mod L_i]. A server with stagger s reads row[((s + k) mod L_i) + j], which equals
    template[(k + j + s) mod L_i] for the `n_steps` consecutive steps k + j, j < n_steps.
    """

    def __init__(self, templates: Mapping[tuple[str, int], np.ndarray], n_steps: int) -> None:
        if not templates:
            raise ValueError("a template bank needs at least one template")
        starts: dict[tuple[str, int], int] = {}
        lengths: dict[tuple[str, int], int] = {}
        rows = []
        position = 0
        for key in sorted(templates):
            template = np.asarray(templates[key], dtype=float)
            if template.ndim != 1 or template.size == 0:
                raise ValueError(f"template {key} must be a non-empty 1-D array, got shape {template.shape}")
            if not np.all(np.isfinite(template)):
                raise ValueError(f"template {key} has non-finite values")
            template = np.maximum(template, 0.0)
            row = np.resize(template, template.size + max(int(n_steps), 1))
            starts[key], lengths[key] = position, template.size
            rows.append(row)
            position += row.size
        self.data = np.concatenate(rows)
        self.data.setflags(write=False)
        self.starts = starts
        self.lengths = lengths
        self._minima = {key: float(self.template(*key).min()) for key in starts}
        self.run_length = max(int(n_steps), 1)
        """Consecutive steps readable from one offset."""

    @property
    def max_length(self) -> int:
        """Longest template (the stagger range of the pool)."""
        return max(self.lengths.values())

    def template(self, label: str, batch: int) -> np.ndarray:
        """The original template of one (model, batch) (a read-only view)."""
        start = self.starts[(label, batch)]
        return self.data[start : start + self.lengths[(label, batch)]]

    def minimum(self, label: str, batch: int) -> float:
        """Smallest value of one template, W per GPU."""
        return self._minima[(label, batch)]

    def offsets(self, label: str, batch: int, stagger: np.ndarray) -> np.ndarray:
        """Bank index of step 0 for servers with the given staggers."""
        key = (label, batch)
        return self.starts[key] + stagger % self.lengths[key]


@dataclass(frozen=True)
class OperatingPoint:
    """A model's effective batch as a blend of two measured batches: (1 - weight) lo + weight hi."""

    lo: int
    hi: int
    weight: float = 0.0

    @classmethod
    def of(cls, batch: int, known: Sequence[int]) -> OperatingPoint:
        """Bracket `batch` by the sorted known batches (exact match: weight 0)."""
        sizes = sorted(known)
        if batch in sizes:
            return cls(batch, batch, 0.0)
        if batch <= sizes[0]:
            return cls(sizes[0], sizes[0], 0.0)
        if batch >= sizes[-1]:
            return cls(sizes[-1], sizes[-1], 0.0)
        hi_index = int(np.searchsorted(sizes, batch))
        lo, hi = sizes[hi_index - 1], sizes[hi_index]
        return cls(lo, hi, (batch - lo) / (hi - lo))


class FleetPower:
    """Server power of one allocation at fixed operating points, a block of steps at a time.

    server power = P[(step + stagger) mod L] * gpus_per_server * amplitude, plus
    N(0, 1) * noise_fraction * max(power, 1) when noise is on, clipped at 0. During a batch
    ramp a model's template is the blend (1 - w) P_lo + w P_hi. With GPU power caps (W per
    GPU per model) the gpu power is min(P * amplitude, cap) before noise (see
    :mod:`g2gsim.datacenter.power_cap`). The object is rebuilt whenever any of that changes.

    When no allocated server can draw under 1 W, max(power, 1) is the power itself and the
    noisy power is evaluated as P * gain * max(1 + noise_fraction * z, 0), the same formula
    in one pass fewer. Sums by phase and by model are a matrix-vector product per step with a
    fixed 0/1 membership matrix (the same BLAS routine for a block as for one step, so a
    block's rows are bit-identical to single steps); the site's per-phase overlay (base load
    and training) enters that product as one extra virtual server that belongs to every phase
    and no model.
    """

    def __init__(
        self,
        pool: ServerPool,
        allocation: Allocation,
        bank: TemplateBank,
        points: Sequence[OperatingPoint],
        noise_fraction: float,
        caps_w: np.ndarray | None = None,
    ) -> None:
        self.allocation = allocation
        self.n_models = len(allocation.labels)
        self.noise_fraction = float(noise_fraction)
        servers = allocation.flat_servers
        stagger = pool.stagger[servers]
        lo_start = np.empty(servers.size, dtype=np.int64)
        hi_start = np.empty(servers.size, dtype=np.int64)
        lo_length = np.ones(servers.size, dtype=np.int64)
        hi_length = np.ones(servers.size, dtype=np.int64)
        weight = np.zeros(servers.size)
        floor = np.empty(servers.size)
        for m, (label, point) in enumerate(zip(allocation.labels, points)):
            mine = allocation.flat_model == m
            lo_start[mine], lo_length[mine] = bank.starts[(label, point.lo)], bank.lengths[(label, point.lo)]
            hi_start[mine], hi_length[mine] = bank.starts[(label, point.hi)], bank.lengths[(label, point.hi)]
            weight[mine] = point.weight
            floor[mine] = min(bank.minimum(label, point.lo), bank.minimum(label, point.hi))
        self._bank = bank.data
        self._run_length = bank.run_length
        self._lo = (lo_start, stagger % lo_length, lo_length)
        self._hi = (hi_start, stagger % hi_length, hi_length)
        self._weight = weight
        self._blend = bool(np.any(weight > 0))
        self._gain = pool.gpus_per_server * pool.amplitude[servers]
        self._at_least_one = bool(servers.size == 0 or np.min(floor * self._gain) >= 1.0)
        self._noisy = self.noise_fraction > 0.0 and servers.size > 0
        n = servers.size
        members = np.zeros((PHASES + self.n_models, n + 1))
        columns = np.arange(n)
        members[pool.phase[servers], columns] = 1.0
        members[PHASES + allocation.flat_model, columns] = 1.0
        members[:PHASES, n] = 1.0
        self._members = members[None]  # one matrix for every step of a block
        self._rows = np.arange(self._run_length, dtype=np.int64)[:, None]  # step offsets within a block
        self._buffers: dict[str, np.ndarray] = {}
        self._last = np.zeros(n)
        # GPU power caps (W per GPU, inf = none) as a per-server limit on gpu power * amplitude
        self._cap: np.ndarray | None = None
        if caps_w is not None:
            caps = np.asarray(caps_w, dtype=float)
            if servers.size and np.any(np.isfinite(caps[allocation.flat_model])):
                self._cap = caps[allocation.flat_model] * pool.gpus_per_server
                self._at_least_one = bool(np.min(np.minimum(floor * self._gain, self._cap)) >= 1.0)

    @property
    def n_servers(self) -> int:
        """Allocated servers."""
        return int(self._gain.size)

    @property
    def noise_draws(self) -> int:
        """Standard normals one step consumes (0 without noise)."""
        return self.n_servers if self._noisy else 0

    @property
    def last_server_power(self) -> np.ndarray:
        """Power of every allocated server at the last step of :meth:`step` or :meth:`server_power`, W (a copy)."""
        return self._last.copy()

    def block(
        self, step: int, count: int, normals: np.ndarray | None, overlay_w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Power at steps step .. step + count - 1: sums (count, 3 + M) and servers (count, n), W.

        `normals` holds the noise stream's next count * n standard normals, step by step
        (None: no noise); `overlay_w` the per-phase overlay of each step. Sums are phases
        a, b, c (with the overlay), then inference power per model (a new array); the server
        array is a work buffer, overwritten by the next block.
        """
        if not 0 < count <= self._run_length:
            raise ValueError(f"a block covers 1 to {self._run_length} steps (the template bank's run), got {count}")
        n = self.n_servers
        extended = self._work("extended", count, n + 1)  # allocated servers, then the overlay per phase
        servers = extended[:, :n]
        power = self._templates(self._lo, step, count, "power")
        if self._blend:
            upper = self._templates(self._hi, step, count, "upper")
            upper -= power
            upper *= self._weight
            power += upper
        z = None if normals is None or not self._noisy else normals.reshape(count, n)
        if self._cap is not None:
            self._capped(power, z, servers)
        elif z is None:
            np.multiply(power, self._gain, out=servers)
        elif self._at_least_one:
            factor = self._unit_normal(z)
            factor *= self._gain
            np.multiply(power, factor, out=servers)
        else:
            power *= self._gain
            self._add_noise(power, z, servers)
        extended[:, n] = overlay_w
        sums = np.matmul(self._members, extended[:, :, None])
        return sums.reshape(count, PHASES + self.n_models), servers

    def _work(self, name: str, rows: int, width: int, dtype: type = float) -> np.ndarray:
        """A reused (rows, width) work array (the first rows of one sized for the longest block)."""
        buffer = self._buffers.get(name)
        if buffer is None:
            buffer = self._buffers[name] = np.empty((self._run_length, width), dtype=dtype)
        return buffer[:rows]

    def _templates(
        self, template: tuple[np.ndarray, np.ndarray, np.ndarray], step: int, count: int, name: str
    ) -> np.ndarray:
        """Per-GPU template power of every server (columns) at every step of a block (rows)."""
        start, phase, length = template
        index = self._work("index", count, self.n_servers, np.int64)
        np.add((phase + step) % length + start, self._rows[:count], out=index)
        return self._bank.take(index, out=self._work(name, count, self.n_servers), mode="clip")

    def _unit_normal(self, z: np.ndarray) -> np.ndarray:
        """max(1 + noise_fraction * z, 0): the noise factors, as ``rng.normal(1.0, sd)`` computes them."""
        factor = np.multiply(z, self.noise_fraction, out=self._work("factor", len(z), self.n_servers))
        factor += 1.0
        np.maximum(factor, 0.0, out=factor)
        return factor

    def _add_noise(self, power: np.ndarray, z: np.ndarray, out: np.ndarray) -> None:
        """max(P + noise_fraction * z * max(P, 1), 0) into `out` (``rng.normal(0, sd)`` draws)."""
        noise = np.multiply(z, self.noise_fraction, out=self._work("factor", len(z), self.n_servers))
        noise *= np.maximum(power, 1.0, out=self._work("upper", len(z), self.n_servers))
        power += noise
        np.maximum(power, 0.0, out=out)

    def _capped(self, power: np.ndarray, z: np.ndarray | None, out: np.ndarray) -> None:
        """Capped servers: min(P * gain, cap * gpus_per_server), then noise as above."""
        assert self._cap is not None
        power *= self._gain
        if z is None:
            np.minimum(power, self._cap, out=out)
            return
        np.minimum(power, self._cap, out=power)
        if self._at_least_one:
            np.multiply(power, self._unit_normal(z), out=out)
        else:
            self._add_noise(power, z, out)

    def server_power(self, step: int, rng: np.random.Generator | None) -> np.ndarray:
        """Power of every allocated server at `step`, W (flat allocation order; noise from `rng`)."""
        self.step(step, rng)
        return self._last

    def by_model_phase(self, server_power: np.ndarray) -> np.ndarray:
        """Server powers summed into a (models, 3) matrix, W."""
        key = self.allocation.flat_key
        sums = np.bincount(key, weights=server_power, minlength=self.n_models * PHASES)
        return sums.reshape(self.n_models, PHASES)

    def step(self, step: int, rng: np.random.Generator | None, overlay_w: float = 0.0) -> np.ndarray:
        """Power [phase a, b, c, model 1..M] at `step`, W (a new array); a block of one step.

        Phase entries include `overlay_w` (the same on every phase); model entries are
        inference power only.
        """
        normals = rng.standard_normal(self.noise_draws) if rng is not None and self._noisy else None
        sums, servers = self.block(step, 1, normals, np.array([overlay_w]))
        self._last = servers[0]
        return sums[0]

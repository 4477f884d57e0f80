"""Columnar logs of a run: discrete events and commands (rare, so plain column lists).

Payloads are serialised to canonical JSON only when a frame is built, so logging costs a
list append per entry; event payloads are shallow-copied at record time (callers may reuse
the top-level dict) and commands are immutable."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.kernel.commands import Command, json_default


class EventLog:
    """Time-stamped events (time, source, topic, JSON payload), kept as columns."""

    __slots__ = ("_payload", "_source", "_time_s", "_topic")

    def __init__(self) -> None:
        self._time_s: list[float] = []
        self._source: list[str] = []
        self._topic: list[str] = []
        self._payload: list[dict[str, Any]] = []

    def record(self, time_s: float, source: str, topic: str, payload: dict[str, Any] | None = None) -> None:
        """Append one event; the payload becomes canonical JSON in :meth:`to_frame`."""
        self._time_s.append(time_s)
        self._source.append(source)
        self._topic.append(topic)
        self._payload.append(dict(payload) if payload else {})

    def count(self, topic: str) -> int:
        """How many events of a topic were recorded."""
        return sum(1 for t in self._topic if t == topic)

    def to_frame(self) -> pd.DataFrame:
        """The events as a DataFrame with columns time_s, source, topic, payload."""
        return pd.DataFrame(
            {
                "time_s": np.asarray(self._time_s, dtype=np.float64),
                "source": pd.Series(self._source, dtype="string"),
                "topic": pd.Series(self._topic, dtype="string"),
                "payload": pd.Series(
                    [json.dumps(p, sort_keys=True, default=json_default) for p in self._payload], dtype="string"
                ),
            }
        )


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """One entry of the command log, with the command itself (typed, not its JSON)."""

    sent_s: float
    deliver_s: float | None
    """When it reached its target; None: the link dropped it."""
    source: str
    target: str
    command: Command


class CommandLog:
    """Every command sent: who sent it to whom, when, when it arrived, and whether it was lost."""

    __slots__ = ("_deliver_s", "_kind", "_payload", "_sent_s", "_source", "_status", "_target")

    def __init__(self) -> None:
        self._sent_s: list[float] = []
        self._deliver_s: list[float] = []
        self._source: list[str] = []
        self._target: list[str] = []
        self._kind: list[str] = []
        self._payload: list[Command] = []
        self._status: list[str] = []

    def record(self, sent_s: float, deliver_s: float | None, source: str, target: str, command: Command) -> None:
        """Append one command; `deliver_s` None means the link dropped it."""
        self._sent_s.append(sent_s)
        self._deliver_s.append(np.nan if deliver_s is None else deliver_s)
        self._source.append(source)
        self._target.append(target)
        self._kind.append(type(command).__name__)
        self._payload.append(command)
        self._status.append("dropped" if deliver_s is None else "sent")

    def records(self) -> list[LoggedCommand]:
        """Every command so far, oldest first, as typed records."""
        return [
            LoggedCommand(sent, None if math.isnan(deliver) else deliver, source, target, command)
            for sent, deliver, source, target, command in zip(
                self._sent_s, self._deliver_s, self._source, self._target, self._payload, strict=True
            )
        ]

    def to_frame(self) -> pd.DataFrame:
        """The commands as a DataFrame."""
        return pd.DataFrame(
            {
                "sent_s": np.asarray(self._sent_s, dtype=np.float64),
                "deliver_s": np.asarray(self._deliver_s, dtype=np.float64),
                "source": pd.Series(self._source, dtype="string"),
                "target": pd.Series(self._target, dtype="string"),
                "kind": pd.Series(self._kind, dtype="string"),
                "payload": pd.Series([c.payload_json() for c in self._payload], dtype="string"),
                "status": pd.Series(self._status, dtype="string"),
            }
        )

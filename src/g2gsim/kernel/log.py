"""Columnar logs of a run: discrete events and commands (rare, so plain column lists).

Payloads are plain Python in memory: the ``payload`` column of :meth:`EventLog.to_frame` and
:meth:`CommandLog.to_frame` holds one dict per row (numbers, text, lists and dicts of them,
as JSON would give them back), so ``frame.payload.iloc[0]["batch"]`` works without
``json.loads``. :class:`~g2gsim.kernel.results.RunResult` stores them as canonical JSON text
in Parquet and parses them back on read. An event's payload is copied to plain Python when
it is recorded (callers may reuse their dict); commands are immutable and converted when the
frame is built.

The command log has two times per command: ``deliver_s``, when the link handed the command
to its target's inbox, and ``applied_s``, when the target took it from its inbox and acted on
it (its next step, or a re-solve within the same tick). A command queued behind others, or
delivered between the target's steps, is applied later than it is delivered; one still in
the inbox when the run ends (or dropped by the link) has no ``applied_s`` (NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.kernel.commands import Command, json_default

__all__ = ["CommandLog", "EventLog", "parse_payload", "payload_json", "plain_payload"]


def payload_json(payload: Any) -> str:
    """A payload as canonical JSON text (sorted keys; numpy values as plain numbers)."""
    return json.dumps(payload, sort_keys=True, default=json_default)


def plain_payload(payload: Any) -> Any:
    """A payload as plain Python, as its canonical JSON reads back (numpy values as numbers and
    lists, tuples and sets as lists, keys as text), sharing the payload's own text and numbers."""
    kind = type(payload)
    if kind in _LEAVES:
        return payload
    if kind is dict or isinstance(payload, dict):
        # leaves and text keys inline: most payloads are flat dicts of numbers and text
        return {
            (k if type(k) is str else _json_key(k)): (v if type(v) in _LEAVES else plain_payload(v))
            for k, v in payload.items()
        }
    if kind is list or kind is tuple:
        return [plain_payload(v) for v in payload]
    return plain_payload(json_default(payload))


#: Values JSON gives back unchanged.
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (``True`` -> ``"true"``, ``1.5`` -> ``"1.5"``)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return str(key)


def parse_payload(text: Any) -> Any:
    """One stored payload cell back to plain Python (a dict; missing cells stay None)."""
    if isinstance(text, dict):
        return text
    return json.loads(text) if isinstance(text, str) else None


def _command_payload(command: Command) -> dict[str, Any]:
    """A command's payload as plain Python (its plain fields when it has only plain ones)."""
    fields = command.plain_fields()
    return plain_payload(command.payload()) if fields is None else fields


def _object_column(values: Iterable[Any]) -> pd.Series:
    return pd.Series(list(values), dtype=object)


class EventLog:
    """Time-stamped events (time, source, topic, payload), kept as columns."""

    __slots__ = ("_payload", "_source", "_time_s", "_topic")

    def __init__(self) -> None:
        self._time_s: list[float] = []
        self._source: list[str] = []
        self._topic: list[str] = []
        self._payload: list[dict[str, Any]] = []

    def record(
        self, time_s: float, source: str, topic: str, payload: dict[str, Any] | None = None, *, plain: bool = False
    ) -> None:
        """Append one event; the payload is kept as plain Python (a copy: callers may reuse
        theirs), or with `plain` as given (already plain, and not reused by the caller)."""
        self._time_s.append(time_s)
        self._source.append(source)
        self._topic.append(topic)
        if not payload:
            payload = {}
        elif not plain:
            payload = plain_payload(payload)
        self._payload.append(payload)

    def count(self, topic: str) -> int:
        """How many events of a topic were recorded."""
        return sum(1 for t in self._topic if t == topic)

    def to_frame(self) -> pd.DataFrame:
        """The events as a DataFrame with columns time_s, source, topic, payload (dicts)."""
        return pd.DataFrame(
            {
                "time_s": np.asarray(self._time_s, dtype=np.float64),
                "source": pd.Series(self._source, dtype="string"),
                "topic": pd.Series(self._topic, dtype="string"),
                "payload": _object_column(self._payload),
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
    applied_s: float | None = None
    """When the target took it from its inbox; None: dropped, or not taken before the run ended."""


class CommandLog:
    """Every command sent: who sent it to whom, when, when it arrived and was applied, and
    whether the link lost it."""

    __slots__ = (
        "_applied_s",
        "_awaiting",
        "_deliver_s",
        "_kind",
        "_payload",
        "_sent_s",
        "_source",
        "_status",
        "_target",
    )

    def __init__(self) -> None:
        self._sent_s: list[float] = []
        self._deliver_s: list[float] = []
        self._applied_s: list[float] = []
        self._source: list[str] = []
        self._target: list[str] = []
        self._kind: list[str] = []
        self._payload: list[Command] = []
        self._status: list[str] = []
        # Rows of delivered-or-in-flight commands not yet applied, by the command object's id
        # (the log keeps every command alive, so an id is never reused during the run).
        self._awaiting: dict[int, list[int]] = {}

    def record(self, sent_s: float, deliver_s: float | None, source: str, target: str, command: Command) -> None:
        """Append one command; `deliver_s` None means the link dropped it."""
        row = len(self._sent_s)
        self._sent_s.append(sent_s)
        self._deliver_s.append(np.nan if deliver_s is None else deliver_s)
        self._applied_s.append(np.nan)
        self._source.append(source)
        self._target.append(target)
        self._kind.append(type(command).__name__)
        self._payload.append(command)
        self._status.append("dropped" if deliver_s is None else "sent")
        if deliver_s is not None:
            self._awaiting.setdefault(id(command), []).append(row)

    def applied(self, commands: Iterable[Command], time_s: float) -> None:
        """Mark commands a component took from its inbox at `time_s` (oldest row of each first)."""
        for command in commands:
            rows = self._awaiting.get(id(command))
            if rows:
                self._applied_s[rows.pop(0)] = time_s
                if not rows:
                    del self._awaiting[id(command)]

    def records(self) -> list[LoggedCommand]:
        """Every command so far, oldest first, as typed records."""
        return [
            LoggedCommand(sent, _known(deliver), source, target, command, _known(applied))
            for sent, deliver, source, target, command, applied in zip(
                self._sent_s, self._deliver_s, self._source, self._target, self._payload, self._applied_s, strict=True
            )
        ]

    def to_frame(self) -> pd.DataFrame:
        """The commands as a DataFrame (payload: dicts; see the module docstring for the times)."""
        return pd.DataFrame(
            {
                "sent_s": np.asarray(self._sent_s, dtype=np.float64),
                "deliver_s": np.asarray(self._deliver_s, dtype=np.float64),
                "source": pd.Series(self._source, dtype="string"),
                "target": pd.Series(self._target, dtype="string"),
                "kind": pd.Series(self._kind, dtype="string"),
                "payload": _object_column(_command_payload(c) for c in self._payload),
                "status": pd.Series(self._status, dtype="string"),
                "applied_s": np.asarray(self._applied_s, dtype=np.float64),
            }
        )


def _known(time_s: float) -> float | None:
    """A logged time, None where it is NaN (never happened)."""
    return None if math.isnan(time_s) else time_s

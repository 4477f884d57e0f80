"""The event and command logs: plain payloads in memory, JSON in Parquet, delivered and applied times;
streamed chunks written atomically and read back past a damaged last part."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from g2gsim.kernel import Command, Controller, DatacenterComponent, LinkSpec, RunResult, Simulation
from g2gsim.kernel.log import EventLog
from g2gsim.kernel.streaming import ChunkWarning, read_chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class Set(Command):
    """A toy command with a nested payload."""

    value: dict[str, int]


class Site(DatacenterComponent):
    """Steps every second; applies the commands of its inbox at each step and logs an event."""

    accepts = (Set,)

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.rows: list[dict[str, float]] = []

    def step(self, tick: int) -> None:
        for command in self.take_commands():
            self.ctx.event("applied", {"value": command.value, "at": self.ctx.now_s})
        self.rows.append({"time_s": self.ctx.seconds(tick), "x": float(tick)})
        self.box.publish(tick, tick)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"state": pd.DataFrame(self.rows)}


class Sender(Controller):
    """Sends one command every 0.5 s through a 0.25 s link."""

    def __init__(self) -> None:
        super().__init__("ctl", "0.5", command_link=LinkSpec(delay_s=0.25))

    def control(self, tick: int):
        yield Set(target="site", value={"n": tick})


def _run() -> RunResult:
    return Simulation([Site("site", 1), Sender()], horizon_s=3).run()


def test_payloads_are_dicts_in_memory() -> None:
    result = _run()
    assert isinstance(result.commands["payload"].iloc[0], dict)
    assert result.commands["payload"].iloc[1] == {"value": {"n": 2}}  # sent at tick 2 (ticks of 0.25 s)
    assert result.events_of("applied")["payload"].iloc[0]["value"] == {"n": 0}


def test_the_command_log_says_when_a_command_was_delivered_and_when_it_was_applied() -> None:
    commands = _run().commands
    # sent at 0, 0.5, 1, ...; delivered 0.25 s later; the site (1 s steps) applies them at its next step
    assert list(commands["sent_s"]) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert list(commands["deliver_s"]) == [0.25, 0.75, 1.25, 1.75, 2.25, 2.75]
    applied = commands["applied_s"].tolist()
    assert applied[:4] == [1.0, 1.0, 2.0, 2.0]
    assert pd.isna(applied[5])  # still in the inbox when the run ended
    assert (commands["applied_s"].dropna() >= commands["deliver_s"][commands["applied_s"].notna()]).all()


def test_payloads_are_json_in_parquet_and_read_back_exactly(tmp_path) -> None:
    result = _run()
    result.to_parquet(tmp_path)
    stored = pq.read_table(tmp_path / "commands.parquet").to_pandas()
    assert json.loads(stored["payload"].iloc[1]) == {"value": {"n": 2}}
    back = RunResult.from_parquet(tmp_path)
    assert_frame_equal(back.commands, result.commands)
    assert_frame_equal(back.events, result.events)


# -- streamed chunks -----------------------------------------------------------------------------
def test_chunk_parts_are_written_under_a_temporary_name_then_renamed(tmp_path, monkeypatch) -> None:
    import g2gsim.kernel.streaming as streaming

    names: list[str] = []
    original = streaming.write_parquet

    def spy(frame, path):
        names.append(str(path))
        return original(frame, path)

    monkeypatch.setattr(streaming, "write_parquet", spy)
    Simulation([Site("site", 1), Sender()], horizon_s=4).run(stream_to=tmp_path, chunk_s=1)
    assert names and all(".tmp" in name for name in names)
    parts = sorted((tmp_path / "chunks" / "site__state").iterdir())
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]


def test_read_chunks_skips_and_reports_a_damaged_last_part(tmp_path) -> None:
    Simulation([Site("site", 1), Sender()], horizon_s=4).run(stream_to=tmp_path, chunk_s=1)
    last = tmp_path / "chunks" / "site__state" / "part-00002.parquet"
    last.write_bytes(last.read_bytes()[:20])  # cut short, as by a crash mid-write
    with pytest.warns(ChunkWarning, match="part-00002.parquet"):
        tables = read_chunks(tmp_path)
    assert list(tables["site/state"]["time_s"]) == [0.0, 1.0, 2.0]


def test_read_chunks_ignores_leftover_temporary_parts(tmp_path) -> None:
    Simulation([Site("site", 1), Sender()], horizon_s=4).run(stream_to=tmp_path, chunk_s=1)
    (tmp_path / "chunks" / "site__state" / ".part-00003.parquet.123.tmp").write_bytes(b"PAR1 half")
    assert len(read_chunks(tmp_path)["site/state"]) == 4


def test_an_event_payload_is_copied_unless_declared_plain() -> None:
    """The log keeps a plain copy of a payload (the caller may reuse its dict), and with
    ``plain=True`` the dict itself (a fresh, already plain payload: no copy per event)."""
    log = EventLog()
    reused = {"batch": {"a": 1}, "value": np.float64(2.5)}
    log.record(0.0, "c", "copied", reused)
    fresh = {"batch": {"a": 2}, "value": 3.5}
    log.record(0.1, "c", "kept", fresh, plain=True)
    reused["batch"]["a"] = 99
    frame = log.to_frame()
    assert frame["payload"].iloc[0] == {"batch": {"a": 1}, "value": 2.5}
    assert type(frame["payload"].iloc[0]["value"]) is float
    assert frame["payload"].iloc[1] is fresh

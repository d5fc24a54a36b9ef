"""The NDJSON sink: events sent are written at the loop's tick or when a sync job is made, and
their tokens come back at once."""

from __future__ import annotations

from pathlib import Path

import orjson

from logpipe.sinks.ndjson import NdjsonSink


def lines(path: Path) -> list[object]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_sent_events_are_written_at_the_tick(tmp_path: Path) -> None:
    target = tmp_path / "events.ndjson"
    with open(target, "ab") as stream:
        sink = NdjsonSink(stream, fsync=True, path=str(target))
        tokens = sink.send(iter([({"n": 1}, 10), ({"n": 2}, 20)]), "a", 20)
        assert tokens == [("a", 20)]
        assert sink.delivered == 2
        assert target.read_bytes() == b""  # buffered: one write per loop
        assert sink.tick() == []
        assert lines(target) == [{"n": 1}, {"n": 2}]
        sink.send([({"n": 3}, 5)], "b", 5)
        sink.sync_job()()  # what a checkpoint covers is on disk first
        assert lines(target) == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert sink.tick() == []  # nothing new: nothing written
        assert lines(target) == [{"n": 1}, {"n": 2}, {"n": 3}]

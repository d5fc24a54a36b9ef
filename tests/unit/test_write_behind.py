"""Write-behind: every byte appended to an output file is synced, then dropped from the page
cache, once and in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logpipe.sinks.ndjson import NdjsonSink
from logpipe.sinks.write_behind import write_behind


def test_file_sink_hands_every_appended_byte_to_the_disk_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, start, size, advice: asked.append((start, size))
    )
    target = tmp_path / "events.ndjson"
    target.write_bytes(b'{"before":1}\n')  # a file that already has lines: they are not asked for
    with open(target, "ab") as stream:
        sink = NdjsonSink(stream, fsync=True, path=str(target))
        sink.send([({"n": 1}, 1), ({"n": 2}, 2)], "f", 2)
        with open(target, "ab") as other:  # another writer (a replay worker) appends in between
            other.write(b'{"worker":1}\n')
        sink.send_ndjson(b'{"n":3}\n', [3])
        sink.sync_job()()
    size = target.stat().st_size
    assert asked[0][0] == len(b'{"before":1}\n')
    assert [start for start, _ in asked[1:]] == [start + length for start, length in asked[:-1]]
    assert asked[-1][0] + asked[-1][1] == size


def test_write_behind_is_a_no_op_where_it_does_not_apply(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        write_behind(write_end, 0, 10)  # a pipe: the kernel refuses, quietly
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(os.devnull, "wb") as null:
        write_behind(null.fileno(), 0, 10)

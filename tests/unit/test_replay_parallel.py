"""Parallel replay: the same events, summary and metrics whatever the chunks, the jobs or the
engine (this process, worker processes, a Dask cluster), and an interrupted replay resumes
with every event delivered exactly once."""

from __future__ import annotations

import functools
import gzip
import io
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import hypothesis
import orjson
import pytest
from datadog.dogstatsd.base import DogStatsd
from hypothesis import given, settings
from hypothesis import strategies as st

import logpipe
from bench.gen_logs import access_lines, error_records
from logpipe.backfill import render
from logpipe.backfill.archives import order_series
from logpipe.backfill.engines import Engine, open_engine
from logpipe.backfill.run import (
    CHUNK_BYTES,
    MAX_CARRY,
    Replay,
    ReplayFile,
    cut_before_record,
    file_pairs,
)
from logpipe.backfill.summary import Summary
from logpipe.checkpoints import CheckpointStore
from logpipe.event import Token
from logpipe.lines import MAX_LINE_BYTES, LineBatch, read_batches
from logpipe.metrics.derive import EventMetrics
from logpipe.metrics.timestamped import BucketedCounts, Sums
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.sinks.ndjson import NdjsonSink
from logpipe.sources.multiline import DEFAULT_START, Multiline
from tests.conftest import LOGS, examples
from tests.unit.test_replay import LINES, replay, write_series

MAX_LINE = 4096  # small, so that some lines and error records are cut
SMALL_CHUNK = 2048  # many chunks, so many cuts before error records
ATTRIBUTES = {"service": "shop", "ddsource": "gunicorn", "ddtags": "env:test"}
START = "[2026-11-25 10:00:00 +0000] [1] [ERROR]"
is_start = Multiline[bytes](DEFAULT_START).is_start


# --- archives -----------------------------------------------------------------------------------


def access_log() -> list[bytes]:
    """Real gunicorn lines and generated ones, with what archives also hold: CRLF endings,
    invalid UTF-8, NUL bytes, lines longer than MAX_LINE (cut inside a character), empty lines."""
    real = (LOGS / "default" / "access.log").read_bytes().splitlines()
    lines: list[bytes] = []
    for index, line in enumerate(real + [line.encode() for line in access_lines(3000)]):
        if index % 97 == 0:
            line += b"\r"
        if index % 211 == 13:
            line = line.replace(b" HTTP/", b"/caf\xe9\xff\x00 HTTP/", 1)
        if index % 401 == 29:
            line = line.replace(b" HTTP/", b"?q=x" + "é".encode() * MAX_LINE + b" HTTP/", 1)
        if index % 503 == 7:
            lines += [b"", b"\r"]
        lines.append(line)
    return lines


def error_log() -> list[bytes]:
    """Real gunicorn error logs (tracebacks, and lines that start no record) and generated
    records, after stray lines; with CRLF, invalid UTF-8 and a record longer than MAX_LINE."""
    real = (LOGS / "default" / "error.log").read_bytes().splitlines()
    generated = "\n".join(error_records(600)).encode().splitlines()
    long_record = [
        f"{START} Error handling request GET /big".encode(),
        b"Traceback (most recent call last):",
        b'  File "/srv/app/big.py", line 1, in handler',
        b"ValueError: " + b"v" * (MAX_LINE + 2000),
        b"",
    ]
    odd_record = [
        f"{START} Error handling request GET /caf\xe9".encode("latin-1") + b"\r",
        b"Traceback (most recent call last):\r",
        b"KeyError: '\xff\x00'\r",
    ]
    middle = len(generated) // 2
    return [
        b"a stray line before any record",
        b"  and another",
        *real,
        *generated[:middle],
        *long_record,
        *real,
        *odd_record,
        *generated[middle:],
        *real,
    ]


def write_parts(folder: Path, names: list[str], lines: list[bytes], cuts: list[int]) -> None:
    """``lines`` cut at ``cuts`` into files ``names`` (oldest first; ``.gz`` ones gzipped), the
    last (the live file) without a final newline."""
    assert len(names) == len(cuts) + 1
    bounds = [0, *cuts, len(lines)]
    for name, start, stop in zip(names, bounds, bounds[1:], strict=False):
        data = b"\n".join(lines[start:stop]) + (b"\n" if name != names[-1] else b"")
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> list[ReplayFile]:
    """access.log.2.gz access.log.1 access.log error.log.1.gz error.log, in replay order."""
    folder = tmp_path_factory.mktemp("archive")
    access = access_log()
    names = ["access.log.2.gz", "access.log.1", "access.log"]
    write_parts(folder, names, access, [len(access) // 3, 2 * len(access) // 3])
    errors = error_log()
    cut = next(i for i in range(len(errors) // 2, len(errors)) if is_start(errors[i]))
    write_parts(folder, ["error.log.1.gz", "error.log"], errors, [cut])
    return [
        ReplayFile(path, kind)
        for kind in ("access", "error")
        for path in order_series(str(path) for path in folder.glob(f"{kind}.log*"))
    ]


@pytest.fixture(scope="module")
def pool() -> Iterator[Engine]:
    """Two worker processes, as ``logpipe replay --jobs 2`` starts them."""
    with open_engine("local", jobs=2, scheduler=None) as engine:
        yield engine


# In this process, or in the pool's worker processes (the integration tier).
ENGINES = ["inline", pytest.param("pool", marks=pytest.mark.integration)]


def engine_options(request: pytest.FixtureRequest, engine: str) -> dict[str, Any]:
    """``run``'s options for ``engine``: the pool is started only for the tests that use it."""
    return {"engine": request.getfixturevalue("pool")} if engine == "pool" else {}


# --- in-process replays -------------------------------------------------------------------------


class CountingSink(NdjsonSink):
    """NDJSON in memory, counting the blocks sent (a block per chunk)."""

    def __init__(self) -> None:
        self.output = io.BytesIO()
        super().__init__(self.output, fsync=False)
        self.blocks = 0

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        self.blocks += 1
        return super().send_ndjson(block, tokens)


@dataclass
class Run:
    output: bytes
    blocks: int
    replay: Replay
    summary: Summary
    counts: BucketedCounts

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.output.splitlines()]


def run(
    files: list[ReplayFile],
    state: Path,
    *,
    sink: CountingSink | None = None,
    max_line_bytes: int = MAX_LINE,
    attributes: dict[str, str] | None = None,
    **options: Any,
) -> Run:
    """Replay ``files`` into NDJSON in memory, counting a summary and metrics (``counts``: what
    checkpoints sent, and what was left to send at the end)."""
    sink = sink or CountingSink()
    summary, counts, sent = Summary(), BucketedCounts(), BucketedCounts()

    def send_counts(sums: Sums) -> None:
        for key, value in sums.items():
            sent.sums[key] = sent.sums.get(key, 0) + value

    done = Replay(
        files,
        sink,
        CheckpointStore(state),
        max_line_bytes=max_line_bytes,
        attributes=ATTRIBUTES if attributes is None else attributes,
        summary=summary,
        counts=counts,
        send_counts=send_counts,
        **options,
    )
    done.run()
    sent.merge(counts)
    return Run(sink.output.getvalue(), sink.blocks, done, summary, sent)


def sequential(files: list[ReplayFile]) -> list[dict[str, Any]]:
    """The events as one reader gives them, line after line (no chunks), as sent."""
    return sequential_with(files, MAX_LINE)


def sequential_with(files: list[ReplayFile], max_line: int) -> list[dict[str, Any]]:
    """``sequential`` with lines capped at ``max_line`` bytes."""
    access, errors = AccessParser(max_line_bytes=max_line), ErrorParser(max_record_bytes=max_line)
    multiline = functools.partial(Multiline[bytes], max_bytes=max_line)
    events = []
    for replay_file in files:
        for event, _ in file_pairs(replay_file, 0, access, errors, multiline, max_line):
            events.append(orjson.loads(orjson.dumps({**event, **ATTRIBUTES})))
    return events


def bucketed(events: list[dict[str, Any]]) -> BucketedCounts:
    """The metrics of ``events``, counted one by one at their own times."""
    counts = BucketedCounts()
    metrics = EventMetrics(cast(DogStatsd, counts))
    for event in events:
        counts.at = event.get("timestamp", 0) / 1000
        metrics.observe(event)
    return counts


@pytest.mark.integration
def test_same_events_summary_and_metrics_whatever_the_chunks_and_the_workers(
    archive: list[ReplayFile], pool: Engine, tmp_path: Path
) -> None:
    whole = run(archive, tmp_path / "whole", chunk_bytes=1 << 30)
    small = run(archive, tmp_path / "small", chunk_bytes=SMALL_CHUNK)
    parallel = run(archive, tmp_path / "parallel", engine=pool, chunk_bytes=SMALL_CHUNK)

    assert whole.blocks == len(archive)
    assert small.blocks > 100
    assert small.output == whole.output
    assert parallel.output == whole.output
    expected = sequential(archive)
    assert whole.events == expected
    access = [line for line in access_log() if line not in (b"", b"\r")]
    errors = error_log()
    # a record per start line, one of the stray lines, two of the rest of the record cut at
    # MAX_LINE (its long line, then its last, empty, line: one byte too many for the cap)
    records = sum(map(is_start, errors)) + 1 + 2
    assert len(expected) == len(access) + records
    for done in (whole, small, parallel):
        assert done.replay.events == len(expected)
        assert done.replay.files_done == len(archive) == 5
    assert small.replay.too_old == 0

    assert render.text(whole.summary) == render.text(small.summary) == render.text(parallel.summary)
    assert vars(small.summary) == vars(whole.summary) == vars(parallel.summary)
    reference = Summary()
    for event in expected:
        reference.observe(event)
    assert vars(whole.summary) == vars(reference)
    assert (whole.summary.lines, whole.summary.records) == (len(access), records)
    truncated = sum(event["logpipe"].get("truncated", False) for event in expected)
    assert truncated == 8 + 3  # the long access lines; the parts of the long record
    assert whole.summary.truncated == truncated

    assert whole.counts.sums == small.counts.sums == parallel.counts.sums
    assert whole.counts.sums == bucketed(expected).sums
    requests = sum(value for (name, _, _), value in whole.counts.sums.items() if name == "requests")
    assert requests == sum(1 for event in expected if "status_code" in event.get("http", {}))


@pytest.mark.integration
def test_workers_appending_to_the_output_file_write_the_same_bytes(
    archive: list[ReplayFile], tmp_path: Path
) -> None:
    """With a file output, workers append their chunks themselves when their turn has come."""
    whole = run(archive, tmp_path / "whole", chunk_bytes=1 << 30)
    target = tmp_path / "events.ndjson"
    target.touch()
    with open_engine("local", jobs=2, scheduler=None, output_path=str(target)) as engine:
        for attempt in ("first", "again"):  # one engine: its turns go on across replays
            with open(target, "ab") as stream:
                done = Replay(
                    archive,
                    NdjsonSink(stream, fsync=True, path=str(target)),
                    CheckpointStore(tmp_path / "state"),
                    max_line_bytes=MAX_LINE,
                    attributes=ATTRIBUTES,
                    engine=engine,
                    chunk_bytes=SMALL_CHUNK,
                    force=attempt == "again",
                )
                done.run()
            assert done.events == len(whole.events)
    assert target.read_bytes() == whole.output * 2  # the second run (forced) appends it again


def test_the_library_iterator_gives_the_same_events(
    archive: list[ReplayFile], tmp_path: Path
) -> None:
    chunked = run(
        archive,
        tmp_path,
        chunk_bytes=SMALL_CHUNK,
        max_line_bytes=MAX_LINE_BYTES,
        attributes={},
    )
    paths = {kind: [f.path for f in archive if f.kind == kind] for kind in ("access", "error")}
    expected = [
        orjson.loads(orjson.dumps(event))
        for event in logpipe.replay(access=reversed(paths["access"]), error=paths["error"])
    ]
    assert chunked.events == expected


# --- chunks of whole records, whatever their size ------------------------------------------------

# Lines that start no record: any bytes (invalid UTF-8, "\r", NUL...) but "\n" and a leading "["
# (nor a leading "\x1f": a file that begins with gzip's magic bytes is read as gzip).
other_line = st.binary(max_size=20).map(lambda data: data.replace(b"\n", b" ").lstrip(b"[\x1f"))
start_line = st.binary(max_size=10).map(
    lambda data: f"{START} ".encode() + data.replace(b"\n", b" ")
)
LONGEST_LINE = len(START) + 1 + 10 + 1
LONGEST_RECORD = LONGEST_LINE + 6 * (20 + 1)
SMALLEST_CHUNK = 20


@st.composite
def error_text(draw: st.DrawFn) -> bytes:
    """Stray lines, then records: a start line and up to 6 more lines each."""
    lines = draw(st.lists(other_line, max_size=3))
    records = st.lists(st.tuples(start_line, st.lists(other_line, max_size=6)), max_size=40)
    for start, rest in draw(records):
        lines += [start, *rest]
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\n\n"]))


def batches_of(data: bytes, max_bytes: int, read_bytes: int) -> list[LineBatch]:
    return list(read_batches(io.BytesIO(data), max_bytes=max_bytes, chunk_bytes=read_bytes))


def lines_of(batches: list[LineBatch]) -> list[tuple[int, int, bytes, bool]]:
    """Every line of ``batches``, checking that each batch's lines span exactly the batch."""
    lines = []
    for batch in batches:
        raw = [tuple(line) for line in batch]
        assert raw, batch
        assert (raw[0][0], raw[-1][1]) == (batch.offset, batch.end)
        lines += raw
    assert all(end == offset for (_, end, *_), (offset, *_) in pairwise(lines))
    return lines  # type: ignore[return-value]


@settings(max_examples=examples(100), deadline=None)
@given(
    error_text(),
    st.integers(8, 200),  # max line bytes: some lines cut
    st.integers(1, 300),  # bytes per read: lines of a batch
    st.data(),
)
def test_a_batch_splits_anywhere_into_the_same_lines(
    data: bytes, max_bytes: int, read_bytes: int, draw: st.DataObject
) -> None:
    for batch in batches_of(data, max_bytes, read_bytes):
        if len(batch.lines) > 1:
            head, tail = batch.split(draw.draw(st.integers(1, len(batch.lines) - 1)))
            assert lines_of([head, tail]) == lines_of([batch])
            moved = {len(head.lines) + index: length for index, length in tail.cut.items()}
            assert head.cut | moved == batch.cut


@settings(max_examples=examples(100), deadline=None)
@given(error_text(), st.integers(8, 200), st.integers(1, 300))
def test_cut_before_the_last_record_start(data: bytes, max_bytes: int, read_bytes: int) -> None:
    batches = batches_of(data, max_bytes, read_bytes)
    before, after = cut_before_record(batches, is_start)
    lines = lines_of(batches)
    assert lines_of(before) + lines_of(after) == lines
    starts = [index for index, (_, _, line, _) in enumerate(lines) if is_start(line)]
    if starts and starts[-1] > 0:
        assert len(lines_of(before)) == starts[-1]  # before the last start: whole records
    else:
        assert before == []  # no start, or only the very first line: nothing to cut off
    assert batches == [] or after != []


@settings(max_examples=examples(100), deadline=None)
@given(
    error_text(),
    st.data(),
    st.sampled_from([40, 200, MAX_LINE_BYTES]),  # some lines and records cut, or none
    st.booleans(),  # gzip
)
def test_error_records_are_the_same_whatever_the_chunk_size(
    data: bytes, draw: st.DataObject, max_line_bytes: int, compress: bool
) -> None:
    # What is held when a chunk is cut (a record so far, or a chunk's worth; then a read and
    # the line it ends) stays under MAX_CARRY chunks: chunks are always cut before a record.
    smallest = SMALLEST_CHUNK
    assert max(smallest, LONGEST_RECORD) + smallest + LONGEST_LINE < MAX_CARRY * smallest
    chunk_bytes = draw.draw(st.integers(smallest, max(smallest, len(data) // 2)))
    stored = gzip.compress(data) if compress else data
    whole, chunked = whole_and_chunked(stored, "error", chunk_bytes, max_line_bytes)
    assert chunked.output == whole.output
    assert [event["logpipe"]["offset"] for event in chunked.events] == [
        offset for offset, _ in records_of(data, max_line_bytes)
    ]
    assert vars(chunked.summary) == vars(whole.summary)
    assert chunked.counts.sums == whole.counts.sums


def whole_and_chunked(
    stored: bytes, kind: str, chunk_bytes: int, max_line_bytes: int
) -> tuple[Run, Run]:
    """A log of ``kind`` holding ``stored``, replayed in one chunk and in ``chunk_bytes``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{kind}.log"
        path.write_bytes(stored)
        files = [ReplayFile(str(path), kind)]
        options: dict[str, Any] = {"max_line_bytes": max_line_bytes, "force": True}
        whole = run(files, path.parent / "a", chunk_bytes=1 << 30, **options)
        chunked = run(files, path.parent / "b", chunk_bytes=chunk_bytes, **options)
    hypothesis.event(f"blocks: {min(chunked.blocks, 5)}")
    return whole, chunked


def records_of(data: bytes, max_line_bytes: int) -> list[tuple[int, int]]:
    """(start, end) of each record, one line after another (``Multiline.feed``)."""
    multiline = Multiline[bytes](max_bytes=max_line_bytes)
    records = []
    for line in lines_of(batches_of(data, max_line_bytes, 1 << 20)):
        offset, end, text, truncated = line
        for record in multiline.feed(text, start=offset, end=end, truncated=truncated):
            records.append((record.start, record.end))
    last = multiline.flush()
    return records + ([(last.start, last.end)] if last else [])


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(LINES), other_line.map(lambda line: line + b"\n"))),
    st.integers(1, 100) | st.integers(1, 5000),
    st.sampled_from([40, 200, MAX_LINE_BYTES]),
)
def test_access_lines_are_the_same_whatever_the_chunk_size(
    lines: list[bytes], chunk_bytes: int, max_line_bytes: int
) -> None:
    whole, chunked = whole_and_chunked(b"".join(lines), "access", chunk_bytes, max_line_bytes)
    assert chunked.output == whole.output
    offsets = [sum(map(len, lines[:index])) for index, line in enumerate(lines)]
    assert [event["logpipe"]["offset"] for event in chunked.events] == [
        offset for offset, line in zip(offsets, lines, strict=True) if line not in (b"\n", b"\r\n")
    ]


def test_a_line_longer_than_many_chunks_is_one_capped_event(tmp_path: Path) -> None:
    """Ranges end at line starts found by reading on from each cut: a 6 MB line is read once
    (not once per 4 KiB range) and gives one capped event, as a plain reader gives."""
    head = (LOGS / "default" / "access.log").read_bytes().splitlines(keepends=True)[:3]
    (tmp_path / "access.log").write_bytes(b"".join([*head, b"x" * 6_000_000 + b"\n", *head]))
    files = [ReplayFile(str(tmp_path / "access.log"), "access")]
    chunked = run(files, tmp_path / "state", chunk_bytes=4096, max_line_bytes=MAX_LINE_BYTES)
    assert chunked.events == sequential_with(files, MAX_LINE_BYTES)
    assert [event["logpipe"].get("truncated", False) for event in chunked.events] == [
        False, False, False, True, False, False, False
    ]  # fmt: skip


def test_a_record_after_a_long_line_is_kept_whole(tmp_path: Path) -> None:
    """A line of more than MAX_CARRY chunks ends a record; the records after it stay whole."""
    frames = "".join(
        f'  File "/srv/app/m{n}.py", line {n}, in f{n}\n    call{n}()\n' for n in range(9)
    )
    text = f"{START} big\nValueError: {'x' * 20 * SMALL_CHUNK}\n" + "".join(
        f"{START} request {n}\nTraceback (most recent call last):\n{frames}KeyError: {n}\n"
        for n in range(100)
    )
    (tmp_path / "error.log").write_text(text)
    files = [ReplayFile(str(tmp_path / "error.log"), "error")]
    whole = run(files, tmp_path / "whole", chunk_bytes=1 << 30, max_line_bytes=MAX_LINE_BYTES)
    assert len(whole.events) == 101
    chunked = run(files, tmp_path / "small", chunk_bytes=SMALL_CHUNK, max_line_bytes=MAX_LINE_BYTES)
    assert chunked.events == whole.events


# --- delivery -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected(archive: list[ReplayFile], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The archive replayed in small chunks, in one go."""
    return run(archive, tmp_path_factory.mktemp("state"), chunk_bytes=SMALL_CHUNK)


class Crash(Exception):
    pass


class BatchingSink(CountingSink):
    """Delivers blocks two at a time (a block waits for the next one, as in a sink that sends
    batches); from its ``crash_at``-th block on, it crashes as soon as it holds one, which is
    then lost: taken, never delivered."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at
        self.held: list[tuple[bytes, list[Token]]] = []
        self.lost = 0  # events taken but never delivered

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        self.blocks += 1
        if self.blocks >= self.crash_at and self.held:
            self.lost = sum(len(tokens) for _, tokens in self.held)
            raise Crash
        self.held.append((block, tokens))
        return self.drain() if len(self.held) == 2 else []

    def drain(self) -> list[Token]:
        delivered = []
        for block, tokens in self.held:
            delivered += NdjsonSink.send_ndjson(self, block, tokens)
        self.held.clear()
        return delivered


@pytest.mark.parametrize("share", [0.3, 0.9])  # in an access log, in an error log
@pytest.mark.parametrize("engine", ENGINES)
def test_an_interrupted_replay_resumes_with_every_event_exactly_once(
    archive: list[ReplayFile],
    expected: Run,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    share: float,
) -> None:
    options: dict[str, Any] = {"chunk_bytes": SMALL_CHUNK, "save_seconds": 0}
    options |= engine_options(request, engine)
    crashing = BatchingSink(crash_at=int(share * expected.blocks))
    with pytest.raises(Crash):
        run(archive, tmp_path, sink=crashing, **options)
    delivered = crashing.output.getvalue()
    assert delivered and crashing.lost  # some events were delivered, some taken and lost
    assert crashing.lost < len(expected.events) - len(delivered.splitlines())

    resumed = run(archive, tmp_path, **options)  # the ledger of the first run
    assert delivered + resumed.output == expected.output
    last, first = orjson.loads(delivered.splitlines()[-1]), resumed.events[0]
    assert first["logpipe"]["path"] == last["logpipe"]["path"]  # resumed inside a file
    assert first["logpipe"]["offset"] > last["logpipe"]["offset"]
    kind = "access" if share < 0.5 else "error"
    assert any(f.path == first["logpipe"]["path"] and f.kind == kind for f in archive)
    sent = len(delivered.splitlines())
    assert resumed.replay.events == len(resumed.events) == len(expected.events) - sent
    assert run(archive, tmp_path, **options).output == b""  # all delivered: nothing again


def test_what_was_delivered_before_a_sink_failure_is_not_sent_again(
    archive: list[ReplayFile], expected: Run, tmp_path: Path
) -> None:
    """No ledger save fell inside the run (save_seconds is long): what the sink delivered
    before it failed is recorded on the way out, so the re-run starts after it."""
    options: dict[str, Any] = {"chunk_bytes": SMALL_CHUNK, "save_seconds": 3600}
    crashing = BatchingSink(crash_at=int(0.3 * expected.blocks))
    with pytest.raises(Crash):
        run(archive, tmp_path, sink=crashing, **options)
    delivered = crashing.output.getvalue()
    assert delivered and crashing.lost
    resumed = run(archive, tmp_path, **options)
    assert delivered + resumed.output == expected.output


@pytest.mark.parametrize("engine", ENGINES)
def test_a_file_and_its_gzip_copy_in_one_replay_are_sent_once(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    write_series(tmp_path)
    copy = tmp_path / "access.log.1.gz"
    copy.write_bytes(gzip.compress((tmp_path / "access.log.1").read_bytes()))
    files = [ReplayFile(str(tmp_path / name), "access") for name in ("access.log.1", copy.name)]
    options = engine_options(request, engine)
    assert len(run(files, tmp_path / "state", **options).events) == 30


# --- the command line ---------------------------------------------------------------------------

GENERATED = 4000  # access lines: three chunks
ARGS = ("--access", "access.log*", "--access", "app-access.log*", "--error", "error.log*")


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Rotated series of real access and error logs, and a generated access log of three
    chunks, in one folder."""
    write_series(tmp_path)
    errors = (LOGS / "default" / "error.log").read_bytes()
    (tmp_path / "error.log.1.gz").write_bytes(gzip.compress(errors))
    (tmp_path / "error.log").write_text("\n".join(error_records(200)) + "\n")
    (tmp_path / "app-access.log").write_text("\n".join(access_lines(GENERATED)) + "\n")
    assert (tmp_path / "app-access.log").stat().st_size > 2 * CHUNK_BYTES
    return tmp_path


@pytest.fixture
def series(tmp_path: Path) -> Path:
    return write_series(tmp_path)


@pytest.mark.integration
def test_the_number_of_jobs_does_not_change_the_output(logs: Path) -> None:
    one = replay(*ARGS, "--jobs", "1", cwd=logs)
    two = replay(*ARGS, "--jobs", "2", "--force", cwd=logs)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout
    assert two.stderr == one.stderr  # the summary too
    events = [orjson.loads(line) for line in one.stdout.splitlines()]
    records = sum(map(is_start, (LOGS / "default" / "error.log").read_bytes().splitlines()))
    assert len(events) == len(LINES) + GENERATED + records + 200
    paths = [event["logpipe"]["path"] for event in events]
    assert list(dict.fromkeys(paths)) == [
        "access.log.3.gz",
        "access.log.2.gz",
        "access.log.1",
        "access.log",
        "app-access.log",
        "error.log.1.gz",
        "error.log",
    ]
    assert f"replayed 7 files: {len(events)} events" in one.stderr.decode()


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough lines (about 2 s of replay on two cores) to stop a replay in the middle."""
    path = tmp_path_factory.mktemp("big") / "access.log"
    path.write_text("".join(line + "\n" for line in access_lines(200_000)))
    return path


def start_replay(big_log: Path, output: Path, state: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "logpipe", "replay", "--access", str(big_log), "--jobs", "2"]
    command += ["--output", f"file:{output}", "--state-dir", str(state), "--quiet"]
    return subprocess.Popen(command, stderr=subprocess.PIPE)


def wait_for_lines(output: Path, process: subprocess.Popen[bytes]) -> None:
    """Until the replay has written some events (and is still going)."""
    deadline = time.monotonic() + 30
    while not (output.exists() and output.stat().st_size > 1_000_000):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.integration
def test_a_stopped_replay_finishes_what_is_in_flight_and_a_rerun_completes_it(
    big_log: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    full, output = tmp_path / "full.ndjson", tmp_path / "events.ndjson"
    assert start_replay(big_log, full, tmp_path / "full-state").wait(timeout=60) == 0
    process = start_replay(big_log, output, tmp_path / "state")
    wait_for_lines(output, process)
    process.send_signal(stop)
    stderr = process.communicate(timeout=30)[1].decode()
    assert process.returncode == 128 + stop
    sent = len(output.read_bytes().splitlines())
    assert 0 < sent < 200_000
    assert stderr.splitlines()[-1] == (
        f"logpipe: stopped by {stop.name}: {sent} events read: {sent} accepted, 0 refused, "
        "0 pending; the ledger keeps where each file got to, and a re-run goes on from there"
    )
    assert start_replay(big_log, output, tmp_path / "state").wait(timeout=60) == 0
    assert output.read_bytes() == full.read_bytes()  # nothing lost, nothing twice


@pytest.mark.integration
def test_a_killed_replay_leaves_no_worker_processes(big_log: Path, tmp_path: Path) -> None:
    import psutil

    output = tmp_path / "events.ndjson"
    process = start_replay(big_log, output, tmp_path / "state")
    wait_for_lines(output, process)
    helpers = psutil.Process(process.pid).children(recursive=True)
    assert len(helpers) >= 3  # the fork server and the two workers (and a resource tracker)
    process.kill()
    process.communicate(timeout=30)
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert alive == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", "0"), "--jobs must be at least 1"),
        (("--jobs", "-3"), "--jobs must be at least 1"),
        (("--jobs", "two"), "argument --jobs: invalid int value: 'two'"),
        (("--engine", "spark"), "argument --engine: invalid choice: 'spark' (choose from "),
        (
            ("--engine", "dask"),
            "--engine dask: the dask engine needs --scheduler ADDRESS (e.g. tcp://host:8786)",
        ),
    ],
)
@pytest.mark.integration
def test_bad_engine_options_exit_2_with_one_line(
    series: Path, args: tuple[str, ...], message: str
) -> None:
    result = replay("--access", "access.log*", *args, cwd=series)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().startswith(f"logpipe: error: {message}")
    assert len(result.stderr.splitlines()) == 1
    assert not (series / "state" / "replay-ledger.json").exists()


def events_by_name(result: subprocess.CompletedProcess[bytes], folder: Path) -> list[Any]:
    """The events, their paths made relative to ``folder`` (URL or not)."""
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        path = event["logpipe"]["path"]
        event["logpipe"]["path"] = path.removeprefix(f"file://{folder}/")
    return events


@pytest.mark.integration
def test_files_given_as_urls_give_the_same_events(logs: Path) -> None:
    pytest.importorskip("fsspec")
    local = replay(*ARGS, "--jobs", "1", cwd=logs)
    urls = replay(
        *("--access", f"file://{logs}/access.log*", "--access", f"file://{logs}/app-access.log"),
        *("--error", f"file://{logs}/error.log.1.gz", "--error", f"file://{logs}/error.log"),
        *("--jobs", "2", "--force"),
        cwd=logs,
    )
    assert events_by_name(urls, logs) == events_by_name(local, logs)
    assert b"file://" in urls.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Dask cluster of two worker processes on loopback (its scheduler in this process)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    ) as cluster:
        yield cluster


@pytest.mark.integration
def test_a_dask_cluster_gives_the_same_output(logs: Path, cluster: Any) -> None:
    local = replay(*ARGS, "--jobs", "1", cwd=logs)
    dask = ("--engine", "dask", "--scheduler", cluster.scheduler_address, "--force")
    on_dask = replay(*ARGS, *dask, cwd=logs)
    assert local.returncode == on_dask.returncode == 0, on_dask.stderr
    assert on_dask.stdout == local.stdout
    assert on_dask.stderr == local.stderr
    assert "parse_chunk" in cluster.scheduler.task_prefixes  # the chunks were parsed there
    urls = replay(
        *("--access", f"file://{logs}/access.log*", "--access", f"file://{logs}/app-access.log*"),
        *("--error", f"file://{logs}/error.log*", *dask),
        cwd=logs,
    )
    assert events_by_name(urls, logs) == events_by_name(local, logs)


@pytest.mark.integration
def test_metrics_are_the_same_whatever_the_jobs(logs: Path) -> None:
    sent = []
    for jobs in ("1", "2"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
            statsd.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{statsd.getsockname()[1]}"
            result = replay(*ARGS, "--jobs", jobs, "--dogstatsd", address, "--force", cwd=logs)
            assert result.returncode == 0, result.stderr
            statsd.setblocking(False)  # the sender has exited: every datagram is here
            lines: list[str] = []
            with suppress(BlockingIOError):
                while True:
                    lines += statsd.recv(65535).decode().splitlines()
        sent.append(sorted(line for line in lines if not line.startswith("datadog.")))
    assert sent[0] == sent[1]
    requests = [line for line in sent[0] if line.startswith("gunicorn.logs.requests:")]
    assert sum(int(line.split(":")[1].split("|")[0]) for line in requests) == len(LINES) + GENERATED


def test_settled_metrics_go_out_a_slice_per_chunk_each_bucket_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts settled at a checkpoint are sent SEND_SLICE points with each chunk taken after it
    (the rest when the run ends), never before a ledger save, and each bucket once."""
    monkeypatch.setattr(logpipe.backfill.run, "SEND_SLICE", 3)
    start = 1795580579  # one line every 5 s for 2 hours: buckets settle long before the end
    lines = [
        time.strftime(
            f'10.0.0.1 - - [%d/%b/%Y:%H:%M:%S +0000] "GET /{n} HTTP/1.1" 200 5',
            time.gmtime(start + 5 * n),
        )
        for n in range(1440)
    ]
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n")
    ledger = CheckpointStore(tmp_path / "state")
    log: list[str] = []
    sent: dict[Any, int] = {}

    def send_counts(sums: Sums) -> None:
        assert len(sums) <= 3
        assert ledger.load(), "sent before a ledger save"
        for key, value in sums.items():
            assert key not in sent
            sent[key] = value
        log.append("send")

    class LoggingSink(CountingSink):
        def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
            log.append("chunk")
            return super().send_ndjson(block, tokens)

    counts = BucketedCounts()
    Replay(
        [ReplayFile(str(tmp_path / "access.log"), "access")],
        LoggingSink(),
        ledger,
        chunk_bytes=SMALL_CHUNK,
        save_seconds=0,
        counts=counts,
        send_counts=send_counts,
    ).run()

    # what has not settled (the last SETTLE_SECONDS) is left for the caller to send at the end
    assert sent.keys().isdisjoint(counts.sums)
    requests = {**sent, **counts.sums}
    assert sum(value for (name, _, _), value in requests.items() if name == "requests") == 1440
    assert len(sent) > 100
    after_first_send = log[log.index("send") :]
    assert "chunk" in after_first_send  # sending went on while chunks were taken
    assert after_first_send.count("send") > 1


@pytest.mark.integration
def test_the_local_engine_starts_its_workers_when_it_opens() -> None:
    """The pool would start them one per task given; they boot while replay gets ready."""
    import psutil

    me = psutil.Process()

    def grandchildren() -> set[int]:  # workers are the fork server's children
        found = set()
        for process in me.children(recursive=True):
            with suppress(psutil.NoSuchProcess):  # one that ended meanwhile
                if process.ppid() != me.pid:
                    found.add(process.pid)
        return found

    before = grandchildren()  # other tests' pools and clusters
    with open_engine("local", jobs=2, scheduler=None):
        deadline = time.monotonic() + 30
        while len(grandchildren() - before) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(grandchildren() - before) == 2

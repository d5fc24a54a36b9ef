"""Replay's progress: the bytes its ETA counts follow the work taken, gzip or not, and on a
terminal no message is printed on the progress line."""

from __future__ import annotations

import gzip
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from bench.gen_logs import access_lines
from logpipe.backfill.run import Replay, ReplayFile
from logpipe.checkpoints import CheckpointStore
from tests.unit.test_replay_parallel import CountingSink

pytestmark = pytest.mark.integration
LINES = 150_000  # a file: about 1.4 MB of gzip, read under the decompressor 512 KB at a time


def gzip_series(directory: Path) -> list[Path]:
    paths = []
    for number, seed in [(2, 3), (1, 5)]:
        data = ("\n".join(access_lines(LINES, seed=seed)) + "\n").encode()
        path = directory / f"access.log.{number}.gz"
        path.write_bytes(gzip.compress(data, compresslevel=6))
        paths.append(path)
    return paths


def test_progress_counts_stored_bytes_of_the_work_taken(tmp_path: Path) -> None:
    """At every progress call, the share of stored (compressed) bytes taken is the share of
    events parsed, within one read of the decompressor: never the bytes read ahead, nor a
    drop at the next file."""
    files = [ReplayFile(str(path), "access") for path in gzip_series(tmp_path)]
    seen: list[tuple[int, int]] = []
    replay = Replay(
        files,
        CountingSink(),
        CheckpointStore(tmp_path / "state"),
        chunk_bytes=1 << 20,
        progress=lambda replay: seen.append((replay.bytes_read, replay.events)),
    )
    replay.run()
    total_events = 2 * LINES
    assert replay.events == total_events
    assert seen[-1] == (replay.bytes_total, total_events)
    assert [read for read, _ in seen] == sorted(read for read, _ in seen)
    slack = (512 << 10) / replay.bytes_total + 0.02
    for read, events in seen:
        assert abs(read / replay.bytes_total - events / total_events) <= slack, (read, events)


def terminal_lines(output: str) -> list[str]:
    """What a terminal shows of ``output``: each line as the last carriage return left it."""
    return [re.split(r"\r(?:\x1b\[K)?", line)[-1] for line in output.split("\n")]


def test_sigint_message_is_not_printed_on_the_progress_line(tmp_path: Path) -> None:
    gzip_series(tmp_path)
    command = [
        sys.executable, "-m", "logpipe", "replay", "--access", str(tmp_path / "access.log.*"),
        "--output", f"file:{tmp_path / 'out.ndjson'}", "--state-dir", str(tmp_path / "state"),
        "--max-age", "none", "--quiet", "--jobs", "1",
    ]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: replay on a terminal
        os.execv(sys.executable, command)
    output, interrupted = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child is gone: EIO on the terminal
                break
            if not data:
                break
            output += data
            if not interrupted and b"ETA" in output:
                os.kill(pid, signal.SIGINT)
                interrupted = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode().replace("\r\n", "\n")  # the terminal's line ends
    assert interrupted, text
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGINT, text
    shown = terminal_lines(text)
    stopped = [line for line in shown if "stopped by SIGINT" in line]
    assert len(stopped) == 1 and stopped[0].startswith("logpipe: stopped by SIGINT"), shown[-5:]
    assert "\r\x1b[Klogpipe: stopped by SIGINT" in text  # the progress line was cleared first
    assert re.search(r"ETA [\d,]+ s", text)

"""A sequence-numbered gunicorn-style log writer, run as a subprocess by the follow harness.

    python tests/follow/writer.py PATH [--kind access|error] [--rate N] [--count N | --duration S]
        [--burst N] [--start N] [--label L] [--reopen-delay S] [--traceback-every N]

Lines (access) or records (error) carry a sequence number: ``GET /seq/<n> HTTP/1.1`` or
``[ERROR] seq <n>`` (``<label>/<n>`` when ``--label`` is given). The file is opened like
gunicorn's ``logging.FileHandler`` (``O_WRONLY | O_APPEND | O_CREAT``) and every line or record
is one ``write()``, as logging flushes after each record. SIGUSR1 reopens the file by path, after
``--reopen-delay`` seconds during which writing goes on into the old file (a slow worker).
SIGTERM/SIGINT stop it cleanly.

stdout, one line each: ``ready <inode>``, ``progress <written>`` about every 0.1 s,
``reopened <written> <inode>`` after each reopen, and at the end ``done <json report>``.

Standard library only: the harness imports the line formats from here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from types import FrameType

PROGRESS_EVERY_S = 0.1
MAX_SLEEP_S = 0.02  # how long a signal may wait to be acted on
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) seq-writer/1.0"
ERROR_PID = 4242

# --------------------------------------------------------------------------------------------
# Line formats (shared with the harness)
# --------------------------------------------------------------------------------------------


def seq_token(seq: int, label: str = "") -> str:
    """``12`` or ``web1/12``: the sequence number as it appears in a line."""
    return f"{label}/{seq}" if label else str(seq)


def access_time(now: float) -> str:
    """gunicorn's ``%(t)s`` in UTC: ``[25/Nov/2026:06:03:40 +0000]``."""
    return time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(now))


def error_time(now: float) -> str:
    """gunicorn's error-log ``asctime`` in UTC: ``[2026-11-25 06:03:40 +0000]``."""
    return time.strftime("[%Y-%m-%d %H:%M:%S +0000]", time.gmtime(now))


def access_line(seq: int, label: str = "", now: float | None = None, end: bytes = b"\n") -> bytes:
    """One default-format access line for ``GET /seq/<token>``."""
    stamp = access_time(time.time() if now is None else now)
    text = f'127.0.0.1 - - {stamp} "GET /seq/{seq_token(seq, label)} HTTP/1.1" 200 2 "-" '
    return f'{text}"{USER_AGENT}"'.encode() + end


def has_traceback(seq: int, every: int) -> bool:
    """Whether record ``seq`` carries a traceback when one in ``every`` does (0: none)."""
    return every > 0 and seq % every == 0


def traceback_text(seq: int, frames: int = 2) -> str:
    """A CPython-style traceback (no trailing newline), ``2 * frames + 2`` lines."""
    lines = ["Traceback (most recent call last):"]
    for depth in range(frames):
        lines.append(f'  File "/srv/app/views.py", line {10 + depth}, in step{depth}')
        lines.append(f"    return step{depth + 1}(seq)")
    lines.append(f"ValueError: seq {seq} failed")
    return "\n".join(lines)


def error_record(
    seq: int,
    label: str = "",
    *,
    traceback: bool = False,
    frames: int = 2,
    now: float | None = None,
    pid: int = ERROR_PID,
) -> bytes:
    """One error-log record: ``[date] [pid] [ERROR] seq <token>`` (+ a traceback)."""
    stamp = error_time(time.time() if now is None else now)
    text = f"{stamp} [{pid}] [ERROR] seq {seq_token(seq, label)}\n"
    if traceback:
        text += traceback_text(seq, frames) + "\n"
    return text.encode()


# --------------------------------------------------------------------------------------------
# Writer process
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What the writer did; printed as JSON after ``done``."""

    path: str
    kind: str
    label: str
    first: int
    traceback_every: int
    frames: int
    count: int = 0
    elapsed: float = 0.0
    generations: list[int] = field(default_factory=list)  # first seq written to each open file
    inodes: list[int] = field(default_factory=list)


class Writer:
    """Paced appends with reopen on SIGUSR1 and a clean stop on SIGTERM/SIGINT."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.report = Report(
            opts.path, opts.kind, opts.label, opts.start, opts.traceback_every, opts.frames
        )
        self.reopen_at: float | None = None
        self.stopping = False
        self.fd = -1

    def on_usr1(self, _signum: int, _frame: FrameType | None) -> None:
        if self.reopen_at is None:
            self.reopen_at = time.monotonic() + self.opts.reopen_delay

    def on_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def open(self) -> None:
        self.fd = os.open(self.opts.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.report.generations.append(self.opts.start + self.report.count)
        self.report.inodes.append(os.fstat(self.fd).st_ino)

    def reopen(self) -> None:
        os.close(self.fd)
        self.open()
        self.reopen_at = None
        say(f"reopened {self.report.count} {self.report.inodes[-1]}")

    def render(self, seq: int) -> bytes:
        opts = self.opts
        if opts.kind == "access":
            return access_line(seq, opts.label)
        tb = has_traceback(seq, opts.traceback_every)
        return error_record(seq, opts.label, traceback=tb, frames=opts.frames)

    def finished(self, now: float, start: float) -> bool:
        if self.stopping:
            return True
        count: int | None = self.opts.count
        if count is not None:
            return self.report.count >= count
        return now - start >= float(self.opts.duration)

    def burst(self) -> None:
        size = self.opts.burst
        if self.opts.count is not None:
            size = min(size, self.opts.count - self.report.count)
        for _ in range(size):
            os.write(self.fd, self.render(self.opts.start + self.report.count))
            self.report.count += 1

    def run(self) -> Report:
        signal.signal(signal.SIGUSR1, self.on_usr1)
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        self.open()
        say(f"ready {self.report.inodes[0]}")
        interval = self.opts.burst / self.opts.rate if self.opts.rate > 0 else 0.0
        start = next_burst = last_progress = time.monotonic()
        while True:
            now = time.monotonic()
            if self.reopen_at is not None and now >= self.reopen_at:
                self.reopen()
            if self.finished(now, start):
                break
            if now < next_burst:
                time.sleep(min(next_burst - now, MAX_SLEEP_S))
                continue
            self.burst()
            next_burst += interval
            if now - last_progress >= PROGRESS_EVERY_S:
                say(f"progress {self.report.count}")
                last_progress = now
        self.report.elapsed = time.monotonic() - start
        os.close(self.fd)
        return self.report


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--kind", choices=("access", "error"), default="access")
    parser.add_argument("--rate", type=float, default=5000.0, help="lines/s; 0: unpaced")
    parser.add_argument("--count", type=int)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds, without --count")
    parser.add_argument("--burst", type=int, default=25, help="lines per paced burst")
    parser.add_argument("--start", type=int, default=0, help="first sequence number")
    parser.add_argument("--label", default="")
    parser.add_argument("--reopen-delay", type=float, default=0.0)
    parser.add_argument("--traceback-every", type=int, default=0)
    parser.add_argument("--frames", type=int, default=2, help="frames per traceback")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    report = Writer(parse_args(argv)).run()
    say("done " + json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

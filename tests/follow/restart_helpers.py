"""Helpers of the restart and logrotate scenarios (``test_restarts.py``, ``test_logrotate.py``).

* What happens to logs while logpipe is down: :func:`compress_rotated` (logrotate's
  ``compress``), :func:`rotate_dated` (logrotate's ``dateext``).
* What is on disk, archives included: :func:`keys_on_disk`, :func:`lines_on_disk`.
* Load beside the processes under test: :class:`CpuLoad`; requests: :class:`Traffic`.
* Waiting on logpipe: :func:`wait_opened`, :func:`wait_checkpoint_saved`, :func:`wait_delivered`.
* The end of a scenario: :func:`settle` (deliver, SIGTERM, account), :func:`figures` (the
  ``written / delivered / lost / duplicated`` line reported), :func:`check_ndjson`.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import orjson

from tests.follow.harness import (
    DRAIN_TIMEOUT_S,
    PYTHON,
    START_TIMEOUT_S,
    Accounting,
    FollowEnv,
    GunicornServer,
    Key,
    LogpipeProcess,
    Stream,
    WaitTimeout,
    create_empty,
    message_keys,
    wait_until,
)

STALL_S = 8.0  # settle: nothing new delivered for this long (logpipe running) means it is done
FIGURES = "written / delivered / lost / duplicated"

# --------------------------------------------------------------------------------------------
# Rotations done while logpipe is down
# --------------------------------------------------------------------------------------------


def compress_rotated(path: Path) -> Path:
    """logrotate's ``compress``: write ``path.gz``, then remove ``path``; the archive."""
    archive = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(archive, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return archive


def rotate_dated(path: Path, date: str) -> Path:
    """logrotate's ``create`` with ``dateext``: rename to ``path-<date>``, create an empty
    ``path``; where the old content is now."""
    rotated = path.with_name(f"{path.name}-{date}")
    os.rename(path, rotated)
    create_empty(path)
    return rotated


# --------------------------------------------------------------------------------------------
# What is on disk
# --------------------------------------------------------------------------------------------


def read_log(path: Path) -> bytes:
    """A log's bytes, decompressed when it is a ``.gz`` archive."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def log_family(path: Path) -> list[Path]:
    """``path`` and every rotated sibling of it (``path.1``, ``path.2.gz``, ``path-2026...``)."""
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name))


def keys_on_disk(paths: Iterable[Path]) -> Counter[Key]:
    """How often each access key occurs in the given logs, archives decompressed."""
    found: Counter[Key] = Counter()
    for path in paths:
        found.update(message_keys(read_log(path).decode("utf-8", "replace"))[1])
    return found


def lines_on_disk(paths: Iterable[Path], pattern: re.Pattern[str]) -> Counter[str]:
    """How often each line matching ``pattern`` occurs in the given logs (archives too)."""
    found: Counter[str] = Counter()
    for path in paths:
        text = read_log(path).decode("utf-8", "replace")
        found.update(line for line in text.split("\n") if pattern.search(line))
    return found


# --------------------------------------------------------------------------------------------
# Load and traffic
# --------------------------------------------------------------------------------------------


class CpuLoad:
    """``count`` CPU-bound processes (``while True: pass``) competing with the ones tested."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Self:
        for _ in range(self.count):
            self.procs.append(
                subprocess.Popen([PYTHON, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
            )
        return self

    def stop(self) -> None:
        """Kill each process it started (by its own handle) and reap it."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.clear()


class Traffic(threading.Thread):
    """``GET /seq/<n>`` one at a time, paced to ``rate`` requests/s, until :meth:`stop`;
    ``sent`` counts the 200 answers (the first failure ends it, kept in ``errors``)."""

    def __init__(self, server: GunicornServer, rate: float) -> None:
        super().__init__(daemon=True)
        self.server, self.rate = server, rate
        self.sent = 0
        self.errors: list[str] = []
        self.elapsed = 0.0
        self._stopping = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stopping.is_set():
            pause = start + self.sent / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing
            try:
                status = self.server.get(f"/seq/{self.sent}")
            except OSError as error:
                self.errors.append(f"{self.sent}: {error}")
                break
            if status != 200:
                self.errors.append(f"{self.sent}: status {status}")
                break
            self.sent += 1
        self.elapsed = time.monotonic() - start

    def stop(self, timeout: float = 30.0) -> Stream:
        """Stop after the request in flight; what was sent."""
        self._stopping.set()
        self.join(timeout)
        assert not self.is_alive(), "traffic thread did not stop"
        assert not self.errors, f"requests failed: {self.errors}"
        return Stream(count=self.sent)

    @property
    def measured_rate(self) -> float:
        return self.sent / max(self.elapsed, 1e-9)


# --------------------------------------------------------------------------------------------
# Waiting on logpipe
# --------------------------------------------------------------------------------------------


def wait_opened(run: LogpipeProcess, *paths: Path, timeout: float = 2 * START_TIMEOUT_S) -> None:
    """Wait until ``run`` said (stderr, ``opened PATH offset=N``) that it opened each path, so
    what is appended from now on is read even with ``--start-at end``."""

    def opened() -> bool:
        if not run.running:
            raise AssertionError(f"logpipe exited {run.returncode}: {run.stderr_tail()}")
        text = run.stderr_text()
        return all(f"opened {path} " in text for path in paths)

    wait_until(opened, timeout, interval=0.1, what=f"logpipe opened {[str(p) for p in paths]}")


def checkpoint_bytes(state: Path) -> bytes:
    """The stored checkpoint document (empty before the first save)."""
    try:
        return (state / "checkpoints.json").read_bytes()
    except FileNotFoundError:
        return b""


def wait_checkpoint_saved(state: Path, before: bytes, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until the stored checkpoints differ from ``before`` (a save happened)."""
    wait_until(
        lambda: checkpoint_bytes(state) not in (b"", before),
        timeout,
        what=f"a checkpoint save in {state}",
    )


def wait_delivered(
    env: FollowEnv,
    streams: Iterable[Stream],
    allowed_lost: Iterable[Key] = (),
    timeout: float = DRAIN_TIMEOUT_S,
    stall: float = STALL_S,
) -> bool:
    """Wait until every sent key (but ``allowed_lost``) is in the output; give up early (False)
    once nothing new was delivered for ``stall`` seconds, so a scenario that loses lines ends
    with its figures."""
    streams, allowed = list(streams), set(allowed_lost)
    progress = {"events": -1, "at": time.monotonic()}

    def done() -> bool:
        env.check_alive()
        acc = env.account(streams)
        if set(acc.lost) <= allowed:
            return True
        now = time.monotonic()
        if acc.events != progress["events"]:
            progress.update(events=acc.events, at=now)
        return now - progress["at"] >= stall

    try:
        wait_until(done, timeout, interval=0.2)
    except WaitTimeout:
        return False
    return set(env.account(streams).lost) <= allowed


# --------------------------------------------------------------------------------------------
# The end of a scenario
# --------------------------------------------------------------------------------------------


def settle(
    env: FollowEnv, streams: Iterable[Stream], allowed_lost: Iterable[Key] = ()
) -> Accounting:
    """Wait for delivery (:func:`wait_delivered`), stop the current run with SIGTERM (it must
    exit 0), check every run's output is NDJSON, and account all of it."""
    streams = list(streams)
    wait_delivered(env, streams, allowed_lost)
    code = env.runs[-1].stop()
    assert code == 0, f"logpipe exited {code} on SIGTERM\n{env.diagnostics()}"
    check_ndjson(env)
    return env.final_account(streams)


def figures(acc: Accounting) -> str:
    """``written / delivered / lost / duplicated`` of an accounting (delivered: distinct)."""
    lost = len(acc.lost)
    return f"{acc.sent} / {acc.sent - lost} / {lost} / {acc.duplicated}"


@dataclass(frozen=True)
class NdjsonCheck:
    """What :func:`check_ndjson` found: complete lines, and SIGKILLed runs cut mid-line."""

    lines: int
    torn_tails: int


def check_ndjson(env: FollowEnv) -> NdjsonCheck:
    """Every complete line of every run's output is a JSON object with a ``message``; only a
    run that did not exit 0 (SIGKILLed) may end with an unterminated line."""
    lines = torn = 0
    for n, run in enumerate(env.runs, 1):
        if not run.output.exists():
            continue
        complete, _, tail = run.output.read_bytes().rpartition(b"\n")
        if tail:
            assert run.returncode != 0, f"run {n} exited 0 with a partial last line {tail[:80]!r}"
            torn += 1
        for number, line in enumerate(complete.split(b"\n") if complete else [], 1):
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise AssertionError(f"run {n} line {number}: {error}: {line[:120]!r}") from None
            assert isinstance(event, dict) and "message" in event, f"run {n} line {number}"
            lines += 1
    return NdjsonCheck(lines, torn)

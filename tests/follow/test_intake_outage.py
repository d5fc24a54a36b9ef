"""An intake outage in follow mode: delivery runs on its own thread, so status lines and the
request metrics keep their pace while logs wait in the files; once the intake takes batches
again, the logs are read again from the last delivered event, every line arrives once, and no
request is counted twice in the metrics, across a restart too."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    Accounting,
    FollowEnv,
    LogpipeProcess,
    SequencedWriter,
    Stream,
    create_empty,
    wait_until,
)
from tests.support.intake import Intake, Status
from tests.unit.test_metrics import Metric, by_name, counts, ours, parse_line

# Integration tier: logpipe subprocesses, a local intake, a real UDP socket for DogStatsD.
pytestmark = pytest.mark.integration

KEY = "outage-key"
REQUESTS = "gunicorn.logs.requests"


class StatsdListener:
    """Every DogStatsD metric arriving on a UDP socket on 127.0.0.1, with when it came."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, Metric]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def requests_between(self, start: float, end: float) -> int:
        window = [metric for at, metric in list(self.received) if start <= at < end]
        return by_name(counts(ours(window)), REQUESTS)

    def metrics(self) -> list[Metric]:
        return ours([metric for _, metric in list(self.received)])

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                datagram = self.sock.recv(65535)
            except TimeoutError:
                continue
            now = time.monotonic()
            for line in datagram.decode("utf-8").splitlines():
                if line:
                    self.received.append((now, parse_line(line)))

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    for name in ("DD_ENV", "DD_SERVICE", "DD_TAGS", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_ORIGIN_DETECTION_ENABLED", "false")
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


def arguments(intake: Intake, statsd: StatsdListener) -> list[str]:
    return [
        *("--output", "datadog", "--intake-url", intake.url),
        *("--dogstatsd", statsd.target, "--status-interval", "1", "--shutdown-timeout", "3"),
    ]


def status_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("logpipe: status: "))


def settled_requests(statsd: StatsdListener, expected: int) -> int:
    """The request count once it reached ``expected`` or stopped moving for a few seconds."""

    def total() -> int:
        return by_name(counts(statsd.metrics()), REQUESTS)

    deadline = time.monotonic() + 15
    last, since = total(), time.monotonic()
    while time.monotonic() < deadline and last != expected:
        time.sleep(0.2)
        now_total = total()
        if now_total != last:
            last, since = now_total, time.monotonic()
        elif time.monotonic() - since > 3:
            break
    return last


def delivered_once(
    follow_env: FollowEnv,
    run: LogpipeProcess,
    writer: SequencedWriter,
    intake: Intake,
    statsd: StatsdListener,
) -> tuple[Stream, Accounting, int]:
    """Once the writer is done: wait until every line reached the intake, stop logpipe, and
    check each arrived once; the stream, the accounting and the requests the metrics counted."""
    stream = writer.wait()

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 90, interval=0.2, what="every line delivered")
    assert run.stop() == 0
    acc = Accounting.of(intake.events, [stream])
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    return stream, acc, settled_requests(statsd, stream.count)


def test_status_and_metrics_keep_their_pace_during_an_outage(
    follow_env: FollowEnv, intake: Intake, statsd: StatsdListener, report: Report
) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access], extra_args=arguments(intake, statsd))
    writer = follow_env.writer(access, rate=250, count=7500)
    writer.wait_written(1000)
    wait_until(lambda: len(intake.events) >= 500, 30, what="delivery before the outage")
    outage_start = time.monotonic()
    intake.fail_for(15, Status(503))
    wait_until(lambda: "logs paused" in run.stderr_text(), 20, what="logs paused")
    paused_at, statuses_then = time.monotonic(), status_lines(run.stderr_text())
    wait_until(lambda: status_lines(run.stderr_text()) >= statuses_then + 5, 8, what="status lines")
    statuses_during = status_lines(run.stderr_text()) - statuses_then
    report(
        "status lines during the outage",
        f"{statuses_during} in {time.monotonic() - paused_at:.1f} s",
    )
    metrics_during = statsd.requests_between(outage_start + 3, outage_start + 14)
    recovered_at = outage_start + 15
    delivered_then = len(intake.events)
    wait_until(lambda: len(intake.events) > delivered_then, 60, what="delivery resumed")
    resumed_after = time.monotonic() - recovered_at
    stream, acc, requests = delivered_once(follow_env, run, writer, intake, statsd)
    report("requests counted in the metrics during the outage", metrics_during)
    report("delivery resumed after the intake recovered (s)", f"{resumed_after:.1f}")
    report("delivered / lost / duplicated", f"{len(acc.seen)} / {len(acc.lost)} / {acc.duplicated}")
    assert metrics_during > 0  # the request metrics flowed while logs waited
    assert requests == stream.count  # each request counted once, though read twice
    assert resumed_after < 15  # capped backoff and probes: seconds, not minutes
    assert "takes logs again" in run.stderr_text()
    intake.assert_clean()


def test_a_restart_while_logs_are_paused_counts_nothing_twice(
    follow_env: FollowEnv, intake: Intake, statsd: StatsdListener, report: Report
) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access], extra_args=arguments(intake, statsd))
    writer = follow_env.writer(access, rate=400, count=6000)
    writer.wait_written(800)
    wait_until(lambda: len(intake.events) >= 400, 30, what="delivery before the outage")
    intake.fail_for(3600, Status(503))
    wait_until(lambda: "logs paused" in run.stderr_text(), 20, what="logs paused")
    writer.wait_written(3000)
    assert run.stop() == 0  # stopped during the outage: logs behind, metrics counted
    delivered_at_stop = len(intake.events)
    counted_before = settled_requests(statsd, -1)
    assert (follow_env.state / "counted.json").exists()
    intake.clear_faults()
    run = follow_env.logpipe(access=[access], extra_args=arguments(intake, statsd))
    stream, acc, requests = delivered_once(follow_env, run, writer, intake, statsd)
    report("requests counted before the restart", counted_before)
    report("delivered / lost / duplicated", f"{len(acc.seen)} / {len(acc.lost)} / {acc.duplicated}")
    assert counted_before >= delivered_at_stop + 1500  # counted while the logs waited
    assert requests == stream.count


def test_counted_positions_file_is_kept_beside_the_checkpoints(follow_env: FollowEnv) -> None:
    """Without metrics, nothing is counted and no counted.json is written."""
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access], extra_args=["--dogstatsd", "off"])
    writer = follow_env.writer(access, rate=1000, count=500)
    stream = writer.wait()
    wait_until(lambda: not follow_env.account([stream]).lost, 30, what="all written")
    assert run.stop() == 0
    assert not Path(follow_env.state / "counted.json").exists()

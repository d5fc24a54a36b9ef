"""The Datadog logs sink against the strict local intake stand-in (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from logpipe.sinks import Interrupted, Refused, datadog_logs
from logpipe.sinks.datadog_logs import DatadogLogsSink
from tests.follow.harness import wait_until
from tests.support.intake import Drop, Intake, Slow, Status

# Integration tier: every test ships to a local HTTP intake over a socket.
pytestmark = pytest.mark.integration

KEY = "test-key"


@pytest.fixture
def intake() -> Iterator[Intake]:
    server = Intake(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datadog_logs, "FIRST_DELAY", 0.01)


def event(n: int, size: int = 0) -> dict[str, object]:
    return {
        "message": f"line {n}" + "x" * size,
        "ddsource": "gunicorn",
        "service": "s",
        "hostname": "h",
        "ddtags": "env:test",
    }


def sink(
    intake: Intake,
    tmp_path: Path,
    warnings: list[str] | None = None,
    stop: threading.Event | None = None,
) -> DatadogLogsSink:
    return DatadogLogsSink(
        intake.url,
        KEY,
        dead_letters=tmp_path / "dead.ndjson",
        stop=stop or threading.Event(),
        warn=(warnings if warnings is not None else []).append,
        flush_seconds=60,
    )


def send_each(logs: DatadogLogsSink, numbers: range, size: int = 0) -> list[int]:
    """Send the events as one batch of file "f", each ending at offset its number; the offsets
    of the delivered ones."""
    pairs = [(event(number, size=size) if size else event(number), number) for number in numbers]
    return [offset for _, offset in logs.send(pairs, "f", numbers[-1])]


def drained(logs: DatadogLogsSink) -> list[int]:
    return [offset for _, offset in logs.drain()]


def messages(intake: Intake) -> list[str]:
    return [str(received["message"]) for received in intake.events]


def test_batches_of_at_most_1000_events_in_order(intake: Intake, tmp_path: Path) -> None:
    logs = sink(intake, tmp_path)
    offsets = send_each(logs, range(2500)) + drained(logs)
    assert offsets == list(range(2500))
    assert messages(intake) == [f"line {n}" for n in range(2500)]
    assert [request.n_events for request in intake.requests] == [1000, 1000, 500]
    assert all(request.gzip for request in intake.requests)
    assert intake.violations == []


def test_a_batch_of_the_intake_may_end_inside_a_batch_of_the_file(
    intake: Intake, tmp_path: Path
) -> None:
    logs = sink(intake, tmp_path)
    assert logs.send([(event(n), n + 1) for n in range(600)], "a", 600) == []
    # the intake's first batch holds a's 600 events and b's first 400 (delivered meanwhile, on
    # the delivery thread: their tokens come back with a later call)
    delivered = logs.send([(event(n), n - 599) for n in range(600, 1200)], "b", 601)
    wait_until(lambda: len(intake.events) == 1000, 10, what="the first batch")
    delivered += logs.tick()
    assert delivered == [("a", n + 1) for n in range(600)] + [("b", n + 1) for n in range(400)]
    assert logs.drain() == [("b", n + 1) for n in range(400, 600)]
    assert logs.delivered == 1200
    assert messages(intake) == [f"line {n}" for n in range(1200)]


def test_batches_stay_under_5_mb(intake: Intake, tmp_path: Path) -> None:
    logs = sink(intake, tmp_path)
    offsets = send_each(logs, range(30), size=400_000) + drained(logs)
    assert offsets == list(range(30))
    assert len(intake.events) == 30
    assert intake.violations == []
    assert all(request.n_events <= 12 for request in intake.requests)


def test_retries_until_delivered_exactly_once(intake: Intake, tmp_path: Path) -> None:
    warnings: list[str] = []
    logs = sink(intake, tmp_path, warnings)
    intake.script(Status(500), Status(503), Drop(), Status(429, retry_after=0), Status(408))
    offsets = send_each(logs, range(10)) + drained(logs)
    assert offsets == list(range(10))
    assert messages(intake) == [f"line {n}" for n in range(10)]
    assert logs.counters.retries == 5
    assert all(KEY not in warning for warning in warnings)


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_refused_batches_go_to_dead_letters(intake: Intake, tmp_path: Path, status: int) -> None:
    warnings: list[str] = []
    logs = sink(intake, tmp_path, warnings)
    intake.script(Status(status), Status(status))
    offsets = send_each(logs, range(3)) + drained(logs)
    offsets += send_each(logs, range(3, 5)) + drained(logs)
    assert offsets == list(range(5))
    assert intake.events == []
    dead = [
        orjson.loads(line)["message"]
        for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()
    ]
    assert dead == [f"line {n}" for n in range(5)]
    assert len(warnings) == 1 and f"HTTP {status}" in warnings[0] and KEY not in warnings[0]
    assert logs.counters.rejected == {status: 2}
    assert logs.counters.dead_lettered == 5
    assert (logs.delivered, logs.counters.refused) == (0, 5)  # acknowledged, not delivered
    assert logs.stats() == {"refused": 5, "pending": 0, "retries": 0}


def test_without_acknowledging_refused_events_a_refusal_ends_the_sending(
    intake: Intake, tmp_path: Path
) -> None:
    warnings: list[str] = []
    logs = DatadogLogsSink(
        intake.url,
        KEY,
        dead_letters=tmp_path / "dead.ndjson",
        stop=threading.Event(),
        warn=warnings.append,
        flush_seconds=60,
        max_events=10,
        acknowledge_refused=False,
    )
    intake.script(Slow(0), Status(403))
    acknowledged: list[int] = []
    with pytest.raises(Refused) as refused:
        acknowledged += send_each(logs, range(25))
        acknowledged += drained(logs)
    acknowledged += [offset for _, offset in refused.value.delivered]
    assert acknowledged == list(range(10))
    assert [offset for _, offset in refused.value.refused] == list(range(10, 20))
    assert "HTTP 403" in str(refused.value) and "refused 10 events" in str(refused.value)
    assert messages(intake) == [f"line {n}" for n in range(10)]
    assert len(intake.requests) == 2  # nothing sent after the refusal
    assert (logs.delivered, logs.counters.refused) == (10, 10)
    assert not (tmp_path / "dead.ndjson").exists() and warnings == []


def test_shutdown_during_an_outage_keeps_the_batch_unacknowledged(
    intake: Intake, tmp_path: Path
) -> None:
    stop = threading.Event()
    logs = sink(intake, tmp_path, stop=stop)
    intake.fail_for(30, Status(503))
    assert send_each(logs, range(3)) == []
    stop.set()
    with pytest.raises(Interrupted):
        logs.drain()
    assert intake.events == []

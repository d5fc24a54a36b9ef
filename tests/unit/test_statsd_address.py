"""DogStatsD's address is looked up off every thread that counts or flushes: what the pipeline
calls never waits on a lookup, metrics wait for a first address (then go out exactly once),
a name that stops resolving keeps its last address, and each change is one line."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from logpipe.event import ACCESS_LOGGER, ERROR_LOGGER, Event
from logpipe.metrics.address import DogStatsdAddress, ip_literal
from logpipe.metrics.client import dogstatsd
from logpipe.metrics.derive import EventMetrics
from tests.follow.harness import wait_until
from tests.unit.test_metrics import by_name, clean_env, counts, ours, receive, receiver

__all__ = ["clean_env", "receiver"]  # fixtures of test_metrics, used here by name

NAME = "statsd.logpipe-test.invalid"
REQUEST: Event = {
    "logger": {"name": ACCESS_LOGGER},
    "http": {"status_code": 503},
    "duration": 2_500_000,
}
RECORD: Event = {"logger": {"name": ERROR_LOGGER}, "level": "ERROR", "error": {"stack": "..."}}


class ScriptedLookup:
    """A lookup answering, one call at a time, what the test puts in (an address or an
    OSError); it blocks until then."""

    def __init__(self) -> None:
        self.answers: queue.Queue[str | OSError] = queue.Queue()
        self.calls = 0
        self.waiting = threading.Event()  # a call is waiting for its answer

    def __call__(self, host: str, port: int) -> str:
        assert host == NAME
        self.calls += 1
        self.waiting.set()
        answer = self.answers.get()
        self.waiting.clear()
        if isinstance(answer, OSError):
            raise answer
        return answer


@pytest.fixture
def lookup() -> Iterator[ScriptedLookup]:
    scripted = ScriptedLookup()
    yield scripted
    scripted.answers.put(OSError("test over"))  # a blocked lookup thread ends


def address(lookup: ScriptedLookup, lines: list[str], port: int = 8125) -> DogStatsdAddress:
    """An address looked up through ``lookup`` (again as soon as an answer came), never told
    as timed out."""
    return DogStatsdAddress(NAME, port, report=lines.append, lookup=lookup, every=0, patience=3600)


def test_what_the_pipeline_calls_returns_while_the_lookup_blocks(lookup: ScriptedLookup) -> None:
    lines: list[str] = []
    where = DogStatsdAddress(NAME, 8125, report=lines.append, lookup=lookup, patience=3600)
    client = dogstatsd(where, tags=["service:web"])
    assert client is not None
    metrics = EventMetrics(client)
    assert lookup.waiting.wait(10)
    for _ in range(2_000):  # beyond any datagram buffer: nothing may flush it here
        metrics.observe(REQUEST)
        metrics.observe(RECORD)
    metrics.count_self("lines_read", 4_000)
    metrics.gauge_self("bytes_behind", 0)
    metrics.flush()
    assert lookup.waiting.is_set() and lookup.calls == 1  # all the above returned meanwhile
    assert where.current is None and not where.sendable()
    lookup.answers.put(OSError(-2, "Name or service not known"))
    metrics.close()
    where.stop()
    assert lines == [
        f"DogStatsD: cannot resolve {NAME} (Name or service not known); metrics wait, logs go on",
        f"DogStatsD: {NAME} was never resolved; its metrics were not sent",
    ]


def test_a_name_that_stops_resolving_keeps_its_address(lookup: ScriptedLookup) -> None:
    lines: list[str] = []
    where = address(lookup, lines)
    assert where.current is None and not where.answered.is_set()
    lookup.answers.put("10.0.0.1")
    wait_until(lambda: where.current == "10.0.0.1", 10, what="the first address")
    assert where.answered.is_set() and where.sendable() and lines == []
    for _ in range(3):  # failing again and again: said once
        lookup.answers.put(OSError(-3, "Temporary failure in name resolution"))
    wait_until(lambda: lookup.calls == 5, 10, what="three failed lookups")
    assert where.current == "10.0.0.1"
    lookup.answers.put("10.0.0.2")
    wait_until(lambda: where.current == "10.0.0.2", 10, what="the new address")
    where.stop()
    assert lines == [
        f"DogStatsD: cannot resolve {NAME} (Temporary failure in name resolution); metrics still "
        "go to 10.0.0.1",
        f"DogStatsD: {NAME} resolves again (10.0.0.2); metrics go there",
    ]


def test_a_lookup_without_answer_is_told_as_timed_out(lookup: ScriptedLookup) -> None:
    lines: list[str] = []
    where = DogStatsdAddress(NAME, 8125, report=lines.append, lookup=lookup, patience=0)
    assert where.answered.wait(10)
    assert lookup.waiting.is_set()  # still looking up
    assert lines == [f"DogStatsD: cannot resolve {NAME} (timed out); metrics wait, logs go on"]
    lookup.answers.put("10.0.0.1")
    wait_until(lambda: where.current == "10.0.0.1", 10, what="the late answer")
    where.stop()
    assert lines[1:] == [f"DogStatsD: {NAME} resolves again (10.0.0.1); metrics go there"]


def test_metrics_are_held_for_a_while_then_dropped(lookup: ScriptedLookup) -> None:
    lines: list[str] = []
    now = [100.0]
    where = DogStatsdAddress(
        NAME, 8125, report=lines.append, lookup=lookup, hold=60, clock=lambda: now[0]
    )
    assert not where.sendable()
    now[0] += 60
    assert where.sendable() and where.sendable()  # dropped from now on; said once
    where.stop()
    assert lines == [
        f"DogStatsD: {NAME} not resolved after 60 s; metrics are dropped until it resolves"
    ]


def test_ip_literals_need_no_lookup() -> None:
    for host in ("127.0.0.1", "::1", "fe80::1%eth0"):
        assert ip_literal(host)
        where = DogStatsdAddress(host, 8125, lookup=lambda host, port: pytest.fail("looked up"))
        assert where.current == host and where.answered.is_set() and where.sendable()
    assert not ip_literal("localhost") and not ip_literal(NAME)


@pytest.mark.integration
def test_metrics_counted_before_the_first_address_go_out_once(
    lookup: ScriptedLookup, receiver: socket.socket
) -> None:
    lines: list[str] = []
    where = address(lookup, lines, port=receiver.getsockname()[1])
    client = dogstatsd(where, tags=["service:web"])
    assert client is not None
    metrics = EventMetrics(client)
    for _ in range(3000):
        metrics.observe(REQUEST)
    metrics.count_self("lines_read", 3000)
    metrics.flush()
    assert receive(receiver, idle=0.5) == []  # nowhere to go yet
    lookup.answers.put("127.0.0.1")
    totals = counts(ours(receive(receiver, idle=1)))
    metrics.close()
    where.stop()
    totals += counts(ours(receive(receiver, idle=0.3)))
    assert by_name(totals, "gunicorn.logs.requests") == 3000
    assert by_name(totals, "gunicorn.logs.requests.5xx") == 3000
    assert by_name(totals, "logpipe.lines_read") == 3000
    assert lines == []


@pytest.mark.integration
def test_an_ipv6_destination() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error.strerror}")
    with sock:
        client = dogstatsd(f"[::1]:{sock.getsockname()[1]}", namespace="v6", telemetry=False)
        assert client is not None
        metrics = EventMetrics(client)
        metrics.observe(REQUEST)
        metrics.close()
        sock.settimeout(5)
        assert sock.recv(65535).decode().startswith("v6.requests:1|c")

"""Metrics derived from the real fixture logs, received as DogStatsD datagrams on a UDP socket.

The expected totals are computed straight from the raw logs (and the user agents the fixture
client sent), never from logpipe's events.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple, cast

import pytest
from datadog.dogstatsd.base import DogStatsd

from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.event import Event
from logpipe.metrics.client import dogstatsd, parse_target, shutdown
from logpipe.metrics.derive import EventMetrics
from logpipe.metrics.timestamped import SETTLE_SECONDS, TimestampedCounts
from logpipe.pipeline.batch import access_events, error_events
from tests.conftest import LOGS

RUNS = ("default", "durations")
TAGS = ["service:web", "env:test", "team:core"]
NS = "gunicorn.logs."

# Environment the datadog package reads: cleared so that each test says what it sets.
DD_VARIABLES = (
    "DD_AGENT_HOST",
    "DD_DOGSTATSD_PORT",
    "DD_DOGSTATSD_URL",
    "DD_ENV",
    "DD_SERVICE",
    "DD_VERSION",
    "DD_ENTITY_ID",
    "DATADOG_TAGS",
    "DD_DOGSTATSD_DISABLE",
    "DD_TELEMETRY_HOST",
    "DD_TELEMETRY_PORT",
)

# Independent readings of the raw logs.
STATUS = re.compile(rb'\[\d{2}/\w{3}/\d{4}:[^\]]+\] "(?:[^"\\]|\\.)*" (\d{3}) (?:\d+|-) "')
DURATION_US = re.compile(rb" \d+ (\d+) \d+ [\d.]+ <\d+>$")  # %(T)s %(D)s %(M)s %(L)s %(p)s
GUNICORN_RECORD = re.compile(r"^\[\d{4}-\d{2}-\d{2} [^\]]+\] \[\d+\] \[([A-Z]+)\] ")
APP_RECORD = re.compile(r"^\[\d{4}-\d{2}-\d{2} [\d:,]+\] ([A-Z]+) in ")
RECORD_START = re.compile(r"^\[\d{4}-\d{2}-\d{2}")
BOT_FAMILY = re.compile(r"compatible; ([^/;]+)/")


class Metric(NamedTuple):
    name: str
    value: float
    kind: str
    tags: tuple[str, ...]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_ORIGIN_DETECTION_ENABLED", "false")


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def target(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


def receive(sock: socket.socket, *, idle: float = 0.3, deadline: float = 5.0) -> list[Metric]:
    """Every metric line of the datagrams arriving until none came for ``idle`` seconds."""
    metrics: list[Metric] = []
    end = time.monotonic() + deadline
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(min(idle, left))
        try:
            datagram = sock.recv(65535)
        except TimeoutError:
            break
        for line in datagram.decode("utf-8").splitlines():
            if line:
                metrics.append(parse_line(line))
    return metrics


def parse_line(line: str) -> Metric:
    """``name:value|type[|@rate][|#tags][|c:...][|T...]`` -> Metric."""
    head, *fields = line.split("|")
    name, _, value = head.rpartition(":")
    tags: tuple[str, ...] = ()
    for field in fields[1:]:
        assert not field.startswith("@"), line  # never sampled
        if field.startswith("#"):
            tags = tuple(field[1:].split(","))
    return Metric(name, float(value), fields[0], tags)


def ours(metrics: list[Metric]) -> list[Metric]:
    """Without the datadog package's own telemetry (datadog.dogstatsd.client.*)."""
    return [metric for metric in metrics if not metric.name.startswith("datadog.")]


def counts(metrics: list[Metric]) -> Counter[tuple[str, frozenset[str]]]:
    totals: Counter[tuple[str, frozenset[str]]] = Counter()
    for metric in metrics:
        if metric.kind == "c":
            totals[metric.name, frozenset(metric.tags) - set(TAGS)] += int(metric.value)
    return totals


def by_name(totals: Counter[tuple[str, frozenset[str]]], name: str) -> int:
    return sum(value for (metric, _), value in totals.items() if metric == name)


def fixture_events(run: str) -> Iterator[Event]:
    fmt = None if run == "default" else (LOGS / run / "format.txt").read_text("utf-8").strip()
    with open(LOGS / run / "access.log", "rb") as stream:
        yield from access_events(stream, AccessParser(fmt), path=str(stream.name))
    with open(LOGS / run / "error.log", "rb") as stream:
        yield from error_events(stream, ErrorParser(), Multiline(), path=str(stream.name))


BAD_ACCESS = b"garbage one\nnot a log line either\n"
BAD_ERROR = b"stray text before any record\n"


def bad_events() -> Iterator[Event]:
    yield from access_events(io.BytesIO(BAD_ACCESS), AccessParser())
    yield from error_events(io.BytesIO(BAD_ERROR), ErrorParser(), Multiline())


class Expected(NamedTuple):
    statuses: Counter[int]
    bot_errors: Counter[str]
    durations_ms: list[float]
    levels: Counter[str]
    tracebacks: int


def expected_from_logs() -> Expected:
    statuses: Counter[int] = Counter()
    bot_errors: Counter[str] = Counter()
    durations: list[float] = []
    levels: Counter[str] = Counter()
    tracebacks = 0
    for run in RUNS:
        lines = (LOGS / run / "access.log").read_bytes().split(b"\n")[:-1]
        for line in lines:
            match = STATUS.search(line)
            assert match, line
            statuses[int(match[1])] += 1
            if run == "durations":
                found = DURATION_US.search(line)
                assert found, line
                durations.append(int(found[1]) / 1000)
        sent = (LOGS / run / "expected_access.jsonl").read_text("utf-8").splitlines()
        assert len(sent) == len(lines)
        for row in map(json.loads, sent):
            agent = row.get("http.useragent") or ""
            family = BOT_FAMILY.search(agent)
            # the saved view's `*bot*`: case-sensitive, as Datadog's attribute search is
            if family and "bot" in family[1] and 400 <= row["http.status_code"] <= 599:
                bot_errors[family[1]] += 1
        in_traceback = False
        for text in (LOGS / run / "error.log").read_text("utf-8").splitlines():
            if RECORD_START.match(text):
                in_traceback = False
                level = GUNICORN_RECORD.match(text) or APP_RECORD.match(text)
                assert level, text
                levels[level[1].lower()] += 1
            elif text.startswith("Traceback (most recent call last):") and not in_traceback:
                in_traceback = True  # one per record, however many chained tracebacks it has
                tracebacks += 1
        summary = json.loads((LOGS / run / "expected_errors.json").read_text("utf-8"))
        assert summary["traceback_records"] > 0
    return Expected(statuses, bot_errors, durations, levels, tracebacks)


@pytest.mark.integration
def test_fixture_logs_give_the_totals_counted_from_the_raw_logs(
    receiver: socket.socket,
) -> None:
    client = dogstatsd(target(receiver), tags=TAGS)
    assert client is not None
    metrics = EventMetrics(client)
    for run in RUNS:
        for event in fixture_events(run):
            assert metrics.observe(event) is event
    for event in bad_events():
        metrics.observe(event)
    metrics.close()
    received = receive(receiver)
    expected = expected_from_logs()

    # Every datagram line carries the constant tags, the library's own telemetry included.
    assert received
    for metric in received:
        assert set(TAGS) <= set(metric.tags), metric
    mine = ours(received)
    assert {metric.name for metric in mine if not metric.name.startswith(NS)} == {
        "logpipe.parse_errors"
    }
    totals = counts(mine)

    # requests, tagged by class and code
    requests = {tags: value for (name, tags), value in totals.items() if name == NS + "requests"}
    assert requests == {
        frozenset({f"status_class:{code // 100}xx", f"status_code:{code}"}): number
        for code, number in expected.statuses.items()
    }
    assert sum(requests.values()) == 2 * 115
    fours = sum(n for code, n in expected.statuses.items() if 400 <= code <= 499)
    fives = sum(n for code, n in expected.statuses.items() if 500 <= code <= 599)
    assert fours > 0 and fives > 0
    assert totals[NS + "requests.4xx", frozenset()] == fours
    assert totals[NS + "requests.5xx", frozenset()] == fives
    assert by_name(totals, NS + "requests.4xx") == fours  # and no other tags

    # bot errors, by family
    bots = {
        tags: value for (name, tags), value in totals.items() if name == NS + "requests.bot_errors"
    }
    assert bots == {frozenset({f"bot:{family}"}): n for family, n in expected.bot_errors.items()}
    assert len(bots) >= 2  # Googlebot, bingbot (YandexBot, AhrefsBot: not `*bot*`)

    # request.duration: one distribution value (ms) per line of the durations run
    durations = [m for m in mine if m.name == NS + "request.duration"]
    assert {m.kind for m in durations} == {"d"}
    assert all(set(m.tags) == set(TAGS) for m in durations)
    assert sorted(m.value for m in durations) == sorted(expected.durations_ms)
    assert len(durations) == 115

    # error-log levels and tracebacks
    levels = {
        name.removeprefix(NS + "log."): value
        for (name, tags), value in totals.items()
        if name.startswith(NS + "log.") and name != NS + "log.exception"
    }
    assert levels == dict(expected.levels)
    assert {"info", "error", "warning"} <= set(levels)
    assert totals[NS + "log.exception", frozenset()] == expected.tracebacks == 2 * 8

    # self-telemetry, without the namespace
    assert totals["logpipe.parse_errors", frozenset()] == 3
    assert by_name(totals, "logpipe.parse_errors") == 3


@pytest.mark.integration
def test_flush_sends_without_closing(receiver: socket.socket) -> None:
    client = dogstatsd(target(receiver), tags=TAGS, namespace="custom.ns")
    assert client is not None
    metrics = EventMetrics(client, tags=["extra:yes"])
    try:
        for event in fixture_events("default"):
            metrics.observe(event)
        metrics.count_self("lines_read", 115, tags=["kind:access"])
        metrics.count_self("logpipe.events_sent", 7)
        metrics.flush()
        totals: Counter[tuple[str, frozenset[str]]] = Counter()
        deadline = time.monotonic() + 5
        while by_name(totals, "custom.ns.requests") < 115 and time.monotonic() < deadline:
            totals.update(counts(ours(receive(receiver, idle=0.2, deadline=1))))
    finally:
        metrics.close()
    totals.update(counts(ours(receive(receiver, idle=0.2))))
    assert by_name(totals, "custom.ns.requests") == 115
    assert all("extra:yes" in tags for name, tags in totals if name.startswith("custom.ns.")), (
        totals
    )
    assert totals["logpipe.lines_read", frozenset({"kind:access", "extra:yes"})] == 115
    assert totals["logpipe.events_sent", frozenset({"extra:yes"})] == 7
    assert not any(name.startswith("gunicorn.logs") for name, _ in totals)


@pytest.mark.integration
def test_a_client_without_namespace_sends_self_telemetry_itself(
    receiver: socket.socket,
) -> None:
    client = dogstatsd(target(receiver), tags=TAGS, namespace="")
    assert client is not None
    metrics = EventMetrics(client)
    assert metrics.self_statsd is client
    metrics.observe({"logger": {"name": "gunicorn.error"}, "level": "WARNING"})
    metrics.observe({"logpipe": {"truncated": True}, "message": "x"})
    metrics.close()
    metrics.close()  # idempotent
    totals = counts(ours(receive(receiver)))
    assert totals == {("log.warning", frozenset()): 1, ("logpipe.truncations", frozenset()): 1}


@pytest.mark.integration
def test_events_that_say_nothing_countable(receiver: socket.socket) -> None:
    client = dogstatsd(target(receiver), tags=TAGS)
    assert client is not None
    metrics = EventMetrics(client)
    events: list[Event] = [
        {"message": "no logger"},
        {"logger": "not a dict"},
        {"logger": {"name": "other"}, "level": "ERROR"},
        {"logger": {"name": "gunicorn.access"}, "http": {"status_code": "500"}},
        {"logger": {"name": "gunicorn.access"}, "http": {"status_code": True}},
        {"logger": {"name": "gunicorn.error"}, "level": "NOTALEVEL"},
        {"logger": {"name": "gunicorn.error"}, "level": 40},
        {"logger": {"name": "gunicorn.error"}, "error": {"kind": "ValueError"}},
    ]
    for event in events:
        assert metrics.observe(event) is event
    metrics.observe(
        {
            "logger": {"name": "gunicorn.error"},
            "level": "Warn",
            "error": {"stack": "File ...", "kind": "ValueError"},
        }
    )
    metrics.observe(
        {
            "logger": {"name": "gunicorn.access"},
            "http": {
                "status_code": 503,
                "useragent_details": {"device": {"category": "Bot"}, "browser": {}},
            },
        }
    )
    metrics.observe(
        {
            "logger": {"name": "gunicorn.access"},
            "http": {"status_code": 404, "useragent_details": {"browser": {"family": "bingbot"}}},
        }
    )
    metrics.close()
    totals = counts(ours(receive(receiver)))
    assert totals == {
        (NS + "log.warning", frozenset()): 1,
        (NS + "log.exception", frozenset()): 1,
        (NS + "requests", frozenset({"status_class:5xx", "status_code:503"})): 1,
        (NS + "requests.5xx", frozenset()): 1,
        (NS + "requests", frozenset({"status_class:4xx", "status_code:404"})): 1,
        (NS + "requests.4xx", frozenset()): 1,
        (NS + "requests.bot_errors", frozenset({"bot:bingbot"})): 1,
    }


def test_off_is_no_client() -> None:
    assert dogstatsd("off") is None
    assert dogstatsd(" OFF ", tags=TAGS) is None


def _close(client: DogStatsd | None) -> None:
    assert client is not None
    shutdown(client)


def test_targets_and_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    client = dogstatsd(None, tags=TAGS)
    assert client is not None
    assert (client.host, client.port) == ("localhost", 8125)
    assert client.namespace == "gunicorn.logs"
    assert list(client.constant_tags) == TAGS
    _close(client)

    monkeypatch.setenv("DD_AGENT_HOST", "127.0.0.9")
    monkeypatch.setenv("DD_DOGSTATSD_PORT", "18125")
    monkeypatch.setenv("DD_DOGSTATSD_URL", "udp://10.0.0.1:9999")  # not ours: ignored
    client = dogstatsd(None)
    assert client is not None
    assert (client.host, client.port) == ("127.0.0.9", 18125)
    _close(client)

    client = dogstatsd("[::1]:9125")  # an explicit target wins over the environment
    assert client is not None
    assert (client.host, client.port) == ("::1", 9125)
    _close(client)

    monkeypatch.setenv("DD_DOGSTATSD_PORT", "eighty")
    with pytest.raises(ValueError, match="DD_DOGSTATSD_PORT"):
        dogstatsd(None)


def test_explicit_tags_win_over_the_environment_key_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DD_SERVICE", "from-env")
    monkeypatch.setenv("DD_ENV", "staging")
    monkeypatch.setenv("DD_VERSION", "1.2.3")
    client = dogstatsd("127.0.0.1:8125", tags=["service:web", "env:test", "env:test"])
    assert client is not None
    assert list(client.constant_tags) == ["service:web", "env:test", "version:1.2.3"]
    _close(client)


@pytest.mark.parametrize(
    "text", ["localhost", "localhost:", ":8125", "host:port", "host:0", "host:65536", "h:٨١"]
)
def test_bad_targets(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|port must be"):
        parse_target(text)


def test_good_targets() -> None:
    assert parse_target("agent:8125") == ("agent", 8125)
    assert parse_target(" 10.1.2.3:1 ") == ("10.1.2.3", 1)
    assert parse_target("[fe80::1]:65535") == ("fe80::1", 65535)


NOT_FOUND: Event = {"logger": {"name": "gunicorn.access"}, "http": {"status_code": 404}}
ERROR_RECORD: Event = {"logger": {"name": "gunicorn.error"}, "level": "ERROR"}


@pytest.mark.integration
def test_replay_counts_send_each_bucket_once_when_it_has_settled(receiver: socket.socket) -> None:
    """take_settled takes the buckets SETTLE_SECONDS behind the newest bucket of the same metric
    and keeps the rest (an error log replayed after the access log starts back in time; events
    without a time wait for the end); close sends those; no (metric, bucket) goes out twice,
    and no flush thread is left."""
    client = dogstatsd(target(receiver), tags=TAGS, namespace="gunicorn.logs", flush_thread=False)
    assert client is not None
    counts = TimestampedCounts(client)
    metrics = EventMetrics(cast(DogStatsd, counts))
    start = 1_795_580_570  # a bucket boundary
    for second in (0, 0, 5, SETTLE_SECONDS + 20, 2 * SETTLE_SECONDS):
        counts.at = start + second
        metrics.observe(NOT_FOUND)
    counts.at = start  # an error record as old as the first request: its own series
    metrics.observe(ERROR_RECORD)
    counts.at = 0  # no time: bucket 0
    metrics.observe(NOT_FOUND)
    counts.send(counts.take_settled())
    counts.flush()
    assert timestamped(receiver) == {("gunicorn.logs.requests.4xx", start): 3.0}
    counts.at = start + SETTLE_SECONDS + 25  # a late event in a bucket not yet sent
    metrics.observe(NOT_FOUND)
    counts.close()
    assert timestamped(receiver) == {
        ("gunicorn.logs.requests.4xx", start + SETTLE_SECONDS + 20): 2.0,
        ("gunicorn.logs.requests.4xx", start + 2 * SETTLE_SECONDS): 1.0,
        ("gunicorn.logs.requests.4xx", None): 1.0,  # no time: sent as of now
        ("gunicorn.logs.log.error", start): 1.0,
    }
    assert client._flush_thread is None


def timestamped(sock: socket.socket) -> dict[tuple[str, int | None], float]:
    """(name, T timestamp or None) -> value of the counts received; each pair once."""
    points: dict[tuple[str, int | None], float] = {}
    sock.settimeout(0.5)
    with contextlib.suppress(TimeoutError):
        while datagram := sock.recv(65535):
            for line in datagram.decode().splitlines():
                fields = line.split("|")
                name, _, value = fields[0].rpartition(":")
                stamp = next((int(field[1:]) for field in fields if field.startswith("T")), None)
                if name.endswith((".4xx", ".error")):
                    assert (name, stamp) not in points, line
                    points[name, stamp] = float(value)
    return points

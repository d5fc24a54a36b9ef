"""``--metrics-mode gunicorn``: which gunicorn logger call wrote an error record, gunicorn's
prefix rule, and the datagrams a real DogStatsD client sends for real parsed events (on a UDP
socket). The side-by-side test against gunicorn's own statsd is
tests/follow/test_gunicorn_statsd.py."""

from __future__ import annotations

import contextlib
import io
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.metrics.client import dogstatsd
from logpipe.metrics.gunicorn import (
    NO_DURATION,
    GunicornMetrics,
    dogstatsd_tags,
    log_metric,
    statsd_prefix,
)
from logpipe.pipeline.batch import error_events
from tests.conftest import LOGS

GUNICORN = "[2026-12-02 09:00:00 +0000] [17] "
TRACEBACK = '\nTraceback (most recent call last):\n  File "app.py", line 3, in f\nValueError: boom'
FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
LINE = '127.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET /x HTTP/1.1" {status} 2 "-" "-" {us}'


@pytest.mark.parametrize(
    ("record", "metric"),
    [
        (GUNICORN + "[CRITICAL] WORKER TIMEOUT (pid:18)", "critical"),
        (GUNICORN + "[WARNING] Invalid request from ip=127.0.0.1: bad", "warning"),
        (GUNICORN + "[ERROR] Worker (pid:18) was sent SIGKILL! Perhaps out of memory?", "error"),
        (GUNICORN + "[ERROR] Connection in use: ('127.0.0.1', 8000)", "error"),
        # log.exception: always a traceback
        (GUNICORN + "[ERROR] Error handling request GET /crash" + TRACEBACK, "exception"),
        (GUNICORN + "[ERROR] Exception in worker process" + TRACEBACK, "exception"),
        (GUNICORN + "[ERROR] Socket error processing request." + TRACEBACK, "exception"),
        # log.error(..., exc_info=True): a traceback, yet log.error
        (GUNICORN + "[ERROR] Unhandled exception in main loop" + TRACEBACK, "error"),
        # gunicorn sends nothing for info and debug
        (GUNICORN + "[INFO] Booting worker with pid: 18", None),
        (GUNICORN + "[DEBUG] GET /", None),
        # captured app output: not gunicorn's logger
        ("[2026-12-02 09:00:00,123] ERROR in app: failed" + TRACEBACK, None),
        ("[2026-12-02 09:00:00,123] WARNING in app: slow", None),
        ("[2026-12-02 09:00:00,123] CRITICAL in app: down", None),
        ("stray line from wsgi.errors", None),
    ],
)
def test_which_gunicorn_call_wrote_the_record(record: str, metric: str | None) -> None:
    assert log_metric(ErrorParser().parse(record)) == metric


def test_an_access_event_is_no_log_metric() -> None:
    event = AccessParser(FORMAT).parse(LINE.format(status=500, us=10))
    assert log_metric(event) is None


@pytest.mark.parametrize(
    ("given", "made"),
    [("", ""), ("app", "app."), ("app.", "app."), ("app...", "app."), ("my.app", "my.app.")],
)
def test_statsd_prefix_as_gunicorn_makes_it(given: str, made: str) -> None:
    from gunicorn.config import Config
    from gunicorn.instrument.statsd import Statsd

    config = Config()
    config.set("statsd_prefix", given)
    config.set("statsd_host", "127.0.0.1:9")
    assert Statsd(config).prefix == made == statsd_prefix(given)


def test_dogstatsd_tags_as_gunicorn_takes_them() -> None:
    assert dogstatsd_tags("team:web, tier:front,") == ["team:web", "tier:front"]
    assert dogstatsd_tags("") == []


def test_fixture_error_log_counts_gunicorns_calls_only() -> None:
    """The real fixture error log: gunicorn's records by level (ERROR with a traceback is an
    exception), the Flask-style app records and bare lines nothing; read here straight from
    the text."""
    data = (LOGS / "default" / "error.log").read_bytes()
    expected: Counter[str] = Counter()
    text = data.decode()
    records = [r for r in text.split("\n[") if r]
    for record in records:
        head = record.split("\n", 1)[0]
        parts = head.split("] [")
        if len(parts) < 3 or not parts[1].isdigit():
            continue  # an app record or a bare line
        level = parts[2].split("]", 1)[0]
        if level in ("CRITICAL", "WARNING"):
            expected[level.lower()] += 1
        elif level == "ERROR":
            expected["exception" if "Traceback (most recent" in record else "error"] += 1
    events = list(error_events(io.BytesIO(data), ErrorParser(), Multiline()))
    found = Counter(m for event in events if (m := log_metric(event)) is not None)
    assert found == expected
    assert found["exception"] >= 5


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        yield sock


def received(sock: socket.socket) -> list[str]:
    lines: list[str] = []
    sock.settimeout(0.05)  # sent before close() returned: loopback has them already
    with contextlib.suppress(TimeoutError):
        while True:
            lines += sock.recv(65535).decode().splitlines()
    return [line for line in lines if line and not line.startswith("datadog.")]


def metrics_to(
    sock: socket.socket, monkeypatch: pytest.MonkeyPatch, *, prefix: str = "", tags: str = ""
) -> tuple[GunicornMetrics, list[str]]:
    for name in ("DD_ENV", "DD_SERVICE", "DD_VERSION", "DATADOG_TAGS", "DD_ENTITY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_ENV", "prod")  # gunicorn sends no env tag: neither does this mode
    target = f"127.0.0.1:{sock.getsockname()[1]}"
    client = dogstatsd(
        target,
        namespace="",
        tags=dogstatsd_tags(tags),
        env_tags=False,
        telemetry=False,
        flush_thread=False,
    )
    own = dogstatsd(target, namespace="", tags=["service:web"], flush_thread=False)
    assert client is not None and own is not None
    warnings: list[str] = []
    return GunicornMetrics(client, own, prefix=prefix, report=warnings.append), warnings


def test_datagrams_for_requests_and_records(
    udp: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics, warnings = metrics_to(udp, monkeypatch, tags="team:web,tier:front")
    access = AccessParser(FORMAT)
    for status, us in ((200, 1234), (200, 5000), (404, 250), (500, 1_000_001)):
        metrics.observe(access.parse(LINE.format(status=status, us=us)))
    errors = ErrorParser()
    metrics.observe(errors.parse(GUNICORN + "[ERROR] Error handling request /x" + TRACEBACK))
    metrics.observe(errors.parse("[2026-12-02 09:00:00,123] ERROR in app: failed" + TRACEBACK))
    metrics.observe(errors.parse(GUNICORN + "[CRITICAL] WORKER TIMEOUT (pid:18)"))
    metrics.close()
    lines = received(udp)
    tags = "|#team:web,tier:front"
    counts: Counter[str] = Counter()
    timers = []
    for line in lines:
        assert line.endswith(tags), line  # gunicorn's tags only: no env:prod, no service
        name, _, rest = line.removesuffix(tags).partition(":")
        value, kind = rest.split("|")  # no sample rate: 1, as gunicorn's @1.0
        if kind == "ms":
            assert name == "gunicorn.request.duration"
            timers.append(float(value))
        else:
            assert kind == "c", line
            counts[name] += int(value)
    assert sorted(timers) == [0.25, 1.234, 5.0, 1000.001]  # gunicorn's ms: D / 1000
    assert counts == {
        "gunicorn.requests": 4,
        "gunicorn.request.status.200": 2,
        "gunicorn.request.status.404": 1,
        "gunicorn.request.status.500": 1,
        "gunicorn.log.exception": 1,
        "gunicorn.log.critical": 1,
    }
    assert warnings == []


def test_prefix_and_no_duration_warned_once(
    udp: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics, warnings = metrics_to(udp, monkeypatch, prefix="shop")
    access = AccessParser('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"')
    line = LINE.format(status=200, us="").rstrip()
    for _ in range(3):
        metrics.observe(access.parse(line))
    metrics.close()
    assert warnings == [NO_DURATION]
    lines = received(udp)
    assert sorted(lines) == ["shop.gunicorn.request.status.200:3|c", "shop.gunicorn.requests:3|c"]


def test_self_telemetry_keeps_logpipes_tags(
    udp: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics, _ = metrics_to(udp, monkeypatch, tags="team:web")
    metrics.observe(ErrorParser().parse("not a record"))  # logpipe.parse_errors
    metrics.close()
    assert received(udp) == ["logpipe.parse_errors:1|c|#service:web,env:prod"]

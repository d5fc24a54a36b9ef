"""The --http endpoint's pure parts: addresses, the health verdict, the metrics a snapshot
makes, and the page `logpipe status` prints."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logpipe.ops.address import parse_address
from logpipe.ops.health import Health, HealthCheck, verdict
from logpipe.ops.metrics import OpsMetrics, SnapshotCollector, outcome
from logpipe.ops.report import duration, plain, status_page
from logpipe.pipeline.snapshot import FileState, Snapshot
from logpipe.sinks import Attempt

NOW = 1_800_000_000.0


def snapshot(**changes: Any) -> Snapshot:
    """A follower 2 h 5 min up, delivering, with one access file 300 kB behind; ``changes``
    replace top-level fields, and ``sink_*`` ones the sink's."""
    made: Snapshot = {
        "version": "0.1.0",
        "started_at": NOW - 7500,
        "taken_at": NOW - 0.5,
        "lines_read": 12_345,
        "parse_errors": 2,
        "logs_paused": False,
        "logs_paused_since": None,
        "write_outage": None,
        "write_outage_since": None,
        "checkpoint_at": NOW - 1,
        "unreadable": 0,
        "files": [
            file_state("/var/log/app/access.log", offset=1_234_567, size=1_534_567),
            file_state("/var/log/app/error.log", kind="error", offset=800, size=800, fmt=None),
        ],
        "sink": {
            "kind": "datadog",
            "target": "127.0.0.1:9",
            "delivered": 12_000,
            "refused": 10,
            "pending": 335,
            "retries": 0,
            "last_success": NOW - 3,
            "last_error": None,
            "last_error_at": None,
            "failing_since": None,
        },
    }
    for name, value in changes.items():
        if name.startswith("sink_"):
            made["sink"][name[5:]] = value  # type: ignore[literal-required]
        else:
            made[name] = value  # type: ignore[literal-required]
    return made


def file_state(
    path: str,
    *,
    kind: str = "access",
    offset: int,
    size: int,
    fmt: str | None = "gunicorn",
    rotated: bool = False,
) -> FileState:
    return {
        "path": path,
        "kind": kind,
        "identity": f"id-{path}",
        "offset": offset,
        "acknowledged": offset,
        "size": size,
        "behind": size - offset,
        "format": fmt,
        "rotated": rotated,
    }


FAILING = {
    "sink_last_error": "127.0.0.1:9: connection refused",
    "sink_last_error_at": NOW - 1,
    "sink_failing_since": NOW - 75,
    "sink_pending": 1234,
    "sink_retries": 9,
}


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8686", ("127.0.0.1", 8686)),
        (":8686", ("127.0.0.1", 8686)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:8686", ("::1", 8686)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("::1:8686", "write an IPv6 address in brackets, as in [::1]:PORT, not '::1:8686'"),
        ("[]:80", "not an IPv6 address in brackets: '[]:80'"),
        ("[127.0.0.1]:80", "not an IPv6 address in brackets: '[127.0.0.1]:80'"),
        ("host", "the port must be a number from 1 to 65535, in ADDR:PORT: 'host'"),
        ("host:", "the port must be a number from 1 to 65535, in ADDR:PORT: 'host:'"),
        ("1:65536", "the port must be a number from 1 to 65535, in ADDR:PORT: '1:65536'"),
        ("0", "the port must be a number from 1 to 65535, in ADDR:PORT: '0'"),
        ("٣", "the port must be a number from 1 to 65535, in ADDR:PORT: '٣'"),
    ],
)
def test_addresses_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_address(text)
    assert str(refused.value) == reason


def test_port_zero_to_listen_on_any_free_port() -> None:
    assert parse_address("0", listen=True) == ("127.0.0.1", 0)


# -- the health verdict ------------------------------------------------------------------------


def judge(snap: Snapshot | None, threshold: float = 60) -> Health:
    return verdict(snap, NOW, threshold, waiting_since=NOW - 30)


def test_delivering_is_ok() -> None:
    assert judge(snapshot()) == Health("ok")


def test_no_snapshot_is_starting_then_stuck() -> None:
    assert judge(None) == Health("starting")
    assert judge(None, threshold=20) == Health(
        "stuck", "the follow loop has published no snapshot in 30 s"
    )


def test_a_failing_sink_with_pending_events_is_stuck_past_the_threshold() -> None:
    failing = snapshot(**FAILING)
    assert judge(failing, threshold=80) == Health("ok")
    assert judge(failing) == Health(
        "stuck", "logs intake: 127.0.0.1:9: connection refused for 75 s, 1,234 events pending"
    )
    assert judge(snapshot(**{**FAILING, "sink_pending": 0})) == Health("ok")


def test_a_write_outage_is_stuck_past_the_threshold_with_its_cause() -> None:
    cause = "cannot write /var/lib/logpipe/out.ndjson: No space left on device"
    failing = snapshot(write_outage=cause, write_outage_since=NOW - 30)
    assert verdict(failing, NOW, 60, waiting_since=NOW - 7500) == Health("ok")
    assert verdict(failing, NOW, 10, waiting_since=NOW - 7500) == Health(
        "stuck", f"{cause} for 30 s"
    )


def test_a_stale_snapshot_means_the_loop_is_stuck() -> None:
    assert judge(snapshot(taken_at=NOW - 9), threshold=2) == Health("ok")  # at least 10 s
    assert judge(snapshot(taken_at=NOW - 11), threshold=2) == Health(
        "stuck", "the follow loop has published no snapshot for 11 s"
    )
    assert judge(snapshot(taken_at=NOW - 59)) == Health("ok")  # the threshold when longer
    assert judge(snapshot(taken_at=NOW - 61)).status == "stuck"


def test_paused_logs_are_stuck_once_paused_past_the_threshold() -> None:
    check = HealthCheck(threshold=60, started=NOW - 1000)
    paused = snapshot(logs_paused=True, taken_at=NOW - 100)
    assert check.judge(paused, NOW - 99) == Health("ok")  # paused since it was first seen
    later = snapshot(logs_paused=True, taken_at=NOW - 1)
    assert check.judge(later, NOW) == Health(
        "stuck", "logs paused (the sink is congested) for 100 s, 335 events pending"
    )
    assert check.judge(snapshot(), NOW) == Health("ok")
    assert check.judge(later, NOW) == Health("ok")  # paused again: counted from now


# -- metrics -----------------------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(snap: Snapshot | None, metrics: OpsMetrics | None = None) -> Samples:
    """Each sample's value by name and labels, as Prometheus reads the text."""
    metrics = metrics or OpsMetrics()
    check = HealthCheck(threshold=60, started=NOW)
    metrics.watch(SnapshotCollector(lambda: snap, check.judge, clock=lambda: NOW))
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_of_a_snapshot() -> None:
    access = (("kind", "access"), ("path", "/var/log/app/access.log"), ("rotated", "false"))
    error = (("kind", "error"), ("path", "/var/log/app/error.log"), ("rotated", "false"))
    samples = scrape(snapshot(**FAILING))
    expected = {
        ("logpipe_healthy", ()): 0,
        ("logpipe_info", (("version", "0.1.0"),)): 1,
        ("logpipe_start_time_seconds", ()): NOW - 7500,
        ("logpipe_snapshot_age_seconds", ()): 0.5,
        ("logpipe_lines_read_total", ()): 12_345,
        ("logpipe_parse_errors_total", ()): 2,
        ("logpipe_logs_paused", ()): 0,
        ("logpipe_unreadable_files", ()): 0,
        ("logpipe_checkpoint_age_seconds", ()): 1,
        ("logpipe_events_delivered_total", ()): 12_000,
        ("logpipe_events_refused_total", ()): 10,
        ("logpipe_events_pending", ()): 1234,
        ("logpipe_retries_total", ()): 9,
        ("logpipe_delivery_failing_seconds", ()): 75,
        ("logpipe_last_delivery_timestamp_seconds", ()): NOW - 3,
        ("logpipe_bytes_behind", access): 300_000,
        ("logpipe_bytes_behind", error): 0,
        ("logpipe_file_offset_bytes", access): 1_234_567,
        ("logpipe_file_offset_bytes", error): 800,
        ("logpipe_file_size_bytes", access): 1_534_567,
        ("logpipe_file_size_bytes", error): 800,
    }
    assert {key: samples[key] for key in expected} == expected
    ours = {name for name, _ in samples if name.startswith("logpipe_")}
    assert ours - {name for name, _ in expected} == {
        f"logpipe_intake_request_seconds_{part}" for part in ("bucket", "count", "sum", "created")
    }


def test_before_the_first_snapshot_only_health_and_latency() -> None:
    names = {name for name, _ in scrape(None) if name.startswith("logpipe_")}
    assert names == {"logpipe_healthy"} | {
        f"logpipe_intake_request_seconds_{part}" for part in ("bucket", "count", "sum", "created")
    }


def test_rotated_files_on_one_path_add_up() -> None:
    path = "/var/log/app/access.log"
    files = [
        file_state(path, offset=900, size=1000, rotated=True),
        file_state(path, offset=50, size=60, rotated=True),
        file_state(path, offset=10, size=40),
    ]
    samples = scrape(snapshot(files=files))
    labels = (("kind", "access"), ("path", path))
    assert samples["logpipe_bytes_behind", (*labels, ("rotated", "true"))] == 110
    assert samples["logpipe_bytes_behind", (*labels, ("rotated", "false"))] == 30
    assert samples["logpipe_file_offset_bytes", (*labels, ("rotated", "true"))] == 900


def test_intake_latency_by_outcome() -> None:
    metrics = OpsMetrics()
    for status, seconds in ((202, 0.04), (202, 0.3), (429, 0.02), (503, 1.5), (None, 10.0)):
        metrics.observe_attempt(Attempt(10, 100, status, seconds, None if status else "refused"))
    samples = scrape(None, metrics)

    def value(part: str, outcome: str, **labels: str) -> float:
        key = tuple(sorted({"outcome": outcome, **labels}.items()))
        return float(samples[f"logpipe_intake_request_seconds_{part}", key])

    assert [value("count", name) for name in ("2xx", "4xx", "5xx", "error")] == [2, 1, 1, 1]
    assert value("sum", "2xx") == pytest.approx(0.34)
    assert value("bucket", "2xx", le="0.05") == 1
    assert value("bucket", "2xx", le="0.5") == 2
    assert value("bucket", "error", le="5.0") == 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (202, "2xx"), (413, "4xx"), (500, "5xx"), (None, "error")],
)
def test_outcomes(status: int | None, expected: str) -> None:
    assert outcome(Attempt(1, 1, status, 0.1, None)) == expected


def test_openmetrics_when_asked() -> None:
    metrics = OpsMetrics()
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    body, content_type = metrics.exposition(None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


# -- logpipe status ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (125, "2 min 5 s"),
        (3720, "1 h 2 min"),
        (2 * 86400 + 7200, "2 d 2 h"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


LONG = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def test_status_page() -> None:
    body: dict[str, Any] = {
        "now": NOW,
        "health": {
            "status": "stuck",
            "reason": "logs intake: 127.0.0.1:9: connection refused for 75 s, 1,234 events pending",
        },
        "snapshot": snapshot(**FAILING),
    }
    body["snapshot"]["files"][1]["rotated"] = True
    body["snapshot"]["files"].append(
        file_state("/var/log/app/other.log", offset=5, size=5, fmt=f"{LONG} | %(h)s %(r)s")
    )
    assert plain(status_page(body)) == (
        "logpipe 0.1.0\n"
        "=============\n"
        "  Health:            stuck: logs intake: 127.0.0.1:9: connection refused for 75 s, "
        "1,234 events pending\n"
        "  Uptime:            2 h 5 min\n"
        "  Lines read:        12,345\n"
        "  Parse errors:      2\n"
        "  Logs paused:       no\n"
        "  Last checkpoint:   1 s ago\n"
        "  Unreadable paths:  0\n"
        "\n"
        "Files\n"
        "=====\n"
        "  path                     kind            format                                   "
        "      read       size    behind\n"
        "  /var/log/app/access.log  access          gunicorn                                 "
        "    1.2 MB     1.5 MB  300.0 kB\n"
        "  /var/log/app/error.log   error, rotated  (detecting)                              "
        " 800 bytes  800 bytes   0 bytes\n"
        f"  /var/log/app/other.log   access          {LONG[:37]}...  "
        "  5 bytes    5 bytes   0 bytes\n"
        "\n"
        "Sink\n"
        "====\n"
        "  Kind:           datadog\n"
        "  Target:         127.0.0.1:9\n"
        "  Delivered:      12,000\n"
        "  Refused:        10 (dead letters)\n"
        "  Pending:        1,234\n"
        "  Retries:        9\n"
        "  Last delivery:  3 s ago\n"
        "  Last error:     127.0.0.1:9: connection refused (1 s ago)\n"
    )


def test_status_page_before_the_first_snapshot() -> None:
    body = {"now": NOW, "health": {"status": "starting", "reason": None}, "snapshot": None}
    assert plain(status_page(body)) == (
        "logpipe\n=======\n  Health:       starting\n  Follow loop:  no snapshot yet\n"
    )


def test_snapshots_are_not_changed_by_scrapes() -> None:
    snap = snapshot(**FAILING)
    kept = copy.deepcopy(snap)
    scrape(snap)
    plain(status_page({"now": NOW, "health": {"status": "ok"}, "snapshot": snap}))
    assert snap == kept

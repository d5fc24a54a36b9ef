"""``/metrics``: the follower's latest snapshot as Prometheus metrics, read at scrape time, and
the intake's latency as a histogram fed by the Datadog sink's ``on_attempt`` hook.

Names (all ``logpipe_``): ``healthy`` (1, or 0 when ``/health`` says stuck),
``info{version}``, ``start_time_seconds``, ``snapshot_age_seconds``, ``lines_read_total``,
``parse_errors_total``, ``events_delivered_total``, ``events_refused_total`` (dead letters),
``events_pending``, ``retries_total``, ``last_delivery_timestamp_seconds``,
``delivery_failing_seconds`` (0 while delivering), ``logs_paused``,
``checkpoint_age_seconds``, ``unreadable_files``, ``bytes_behind{path,kind,rotated}``,
``file_offset_bytes{path,kind,rotated}``, ``file_size_bytes{path,kind,rotated}``, and
``intake_request_seconds{outcome}`` (outcome: 2xx, 4xx, 5xx, or error when no answer came).
The process's own (``process_cpu_seconds_total``, ``process_resident_memory_bytes``...) come
with them. Before the first snapshot, only ``healthy``, the histogram and the process's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from logpipe.ops.health import Health
from logpipe.pipeline.snapshot import FileState, Snapshot

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("2xx", "4xx", "5xx", "error")  # shown from the start (a 1xx or 3xx: when seen)
FILE_LABELS = ("path", "kind", "rotated")


class Attempt(Protocol):
    """What the latency histogram reads of a request to the intake (``logpipe.sinks.Attempt``,
    which the Datadog sink shows its ``on_attempt`` hooks)."""

    @property
    def status(self) -> int | None: ...

    @property
    def seconds(self) -> float: ...


def outcome(attempt: Attempt) -> str:
    """How a request to the intake ended: its status class, or ``error`` (no answer)."""
    if attempt.status is None or not 200 <= attempt.status <= 599:
        return "error"
    return f"{attempt.status // 100}xx"


class SnapshotCollector:
    """Turns the snapshot at hand into metric families, each time the registry collects."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        judge: Callable[[Snapshot | None, float], Health],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot = snapshot
        self._judge = judge
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot, now = self._snapshot(), self._clock()
        healthy = self._judge(snapshot, now).healthy
        yield _gauge("healthy", "1 while /health answers 200, else 0", int(healthy))
        if snapshot is None:
            return
        info = InfoMetricFamily("logpipe", "logpipe's version")
        info.add_metric([], {"version": snapshot["version"]})
        yield info
        yield from _follower(snapshot, now)
        yield from _sink(snapshot, now)
        yield from _files(snapshot["files"])


def _gauge(name: str, documentation: str, value: float, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(f"logpipe_{name}", documentation, value=value, unit=unit)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"logpipe_{name}", documentation, value=value)


def _follower(snapshot: Snapshot, now: float) -> Iterator[Metric]:
    yield _gauge("start_time_seconds", "when logpipe started (Unix time)", snapshot["started_at"])
    yield _gauge(
        "snapshot_age_seconds",
        "age of the follow loop's latest snapshot",
        now - snapshot["taken_at"],
    )
    yield _counter("lines_read", "lines (and error records) read", snapshot["lines_read"])
    yield _counter(
        "parse_errors",
        "lines that did not parse (sent with logpipe.parse_error)",
        snapshot["parse_errors"],
    )
    yield _gauge(
        "logs_paused",
        "1 while the sink is congested and lines are read for metrics only",
        int(snapshot["logs_paused"]),
    )
    yield _gauge(
        "unreadable_files", "followed paths that exist and cannot be read", snapshot["unreadable"]
    )
    if snapshot["checkpoint_at"] is not None:
        yield _gauge(
            "checkpoint_age_seconds",
            "time since the last checkpoint was stored",
            now - snapshot["checkpoint_at"],
        )


def _sink(snapshot: Snapshot, now: float) -> Iterator[Metric]:
    sink = snapshot["sink"]
    yield _counter("events_delivered", "events the sink delivered", sink["delivered"])
    yield _counter(
        "events_refused", "events the intake refused for good (dead letters)", sink["refused"]
    )
    yield _gauge(
        "events_pending", "events taken and not yet delivered nor refused", sink["pending"]
    )
    yield _counter("retries", "tries to deliver that failed and were retried", sink["retries"])
    failing_since = sink["failing_since"]
    yield _gauge(
        "delivery_failing_seconds",
        "time since delivery started failing (0 while it works)",
        0.0 if failing_since is None else max(0.0, now - failing_since),
    )
    if sink["last_success"] is not None:
        yield _gauge(
            "last_delivery_timestamp_seconds",
            "when the sink last delivered (Unix time)",
            sink["last_success"],
        )


def _files(files: list[FileState]) -> Iterator[Metric]:
    """Per followed file; a rotated file still being read keeps its path (``rotated="true"``),
    and two rotated ones on the same path add up (offsets: the furthest)."""
    behind: dict[tuple[str, str, str], int] = {}
    offset: dict[tuple[str, str, str], int] = {}
    size: dict[tuple[str, str, str], int] = {}
    for state in files:
        key = (state["path"], state["kind"], "true" if state["rotated"] else "false")
        behind[key] = behind.get(key, 0) + state["behind"]
        offset[key] = max(offset.get(key, 0), state["offset"])
        size[key] = max(size.get(key, 0), state["size"])
    for name, documentation, values in (
        ("bytes_behind", "bytes written to a followed file and not read yet", behind),
        ("file_offset_bytes", "how far a followed file was read", offset),
        ("file_size_bytes", "a followed file's size", size),
    ):
        family = GaugeMetricFamily(f"logpipe_{name}", documentation, labels=FILE_LABELS)
        for labels, value in values.items():
            family.add_metric(labels, value)
        yield family


class OpsMetrics:
    """The registry ``/metrics`` serves: the snapshot's metrics (once ``watch`` gave them a
    snapshot to read), the intake latency histogram, the process's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "logpipe_intake_request_seconds",
            "requests to the logs intake, by how they ended, from start to answer or failure",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        for name in OUTCOMES:
            self._latency.labels(name)
        ProcessCollector(registry=self.registry)

    def observe_attempt(self, attempt: Attempt) -> None:
        """The Datadog sink's ``on_attempt`` hook (on whatever thread sends)."""
        self._latency.labels(outcome(attempt)).observe(attempt.seconds)

    def watch(self, collector: SnapshotCollector) -> None:
        self.registry.register(collector)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (OpenMetrics, else Prometheus text),
        and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

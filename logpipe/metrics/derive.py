"""Datadog metrics derived from logpipe events, sent to DogStatsD.

``EventMetrics`` is a processor: put ``metrics.observe`` in a parser's ``chain`` (or call it on
each event) and it counts what the event says, returning the event unchanged::

    statsd = dogstatsd(None, tags=["service:web", "env:prod"])   # None when --dogstatsd off
    metrics = EventMetrics(statsd)
    parser = AccessParser(chain=[metrics.observe])
    ...
    metrics.count_self("lines_read", 1000)                       # logpipe.lines_read
    metrics.close()                                              # at shutdown: flush, stop

Metrics, all carrying the client's constant tags (``service``, ``env``, the user's tags):

- access events with ``http.status_code``: ``<ns>.requests`` (tagged ``status_class:2xx`` and
  ``status_code:200``), ``<ns>.requests.4xx`` / ``<ns>.requests.5xx``, ``<ns>.requests.bot_errors``
  (``http.useragent_details.device.category == "Bot"``, status 400-599, tagged
  ``bot:<browser family>``), and the distribution ``<ns>.request.duration`` in ms when the event
  has a ``duration`` (ns);
- error events with a known ``level``: ``<ns>.log.critical|error|warning|info|debug``, and
  ``<ns>.log.exception`` when the event has ``error.stack``;
- self-telemetry, never namespaced: ``logpipe.parse_errors`` and ``logpipe.truncations`` from the
  events' ``logpipe.parse_error`` / ``logpipe.truncated``, and whatever ``count_self`` is given.

The ``datadog`` client aggregates counts in process (``disable_aggregation=False``) and packs
datagrams (``disable_buffering=False``); its own thread sends both every 0.3 s, and ``flush``
sends them at once. DogStatsd puts its ``namespace`` in front of every name it serializes, with no
per-call way out, and aggregated metrics are serialized later, by that thread, so the namespace
cannot be switched off around a call either: ``logpipe.*`` goes through a second client with the
same destination and constant tags and no namespace (or through the same client when it has no
namespace).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from logpipe.event import ACCESS_LOGGER, ERROR_LOGGER, Event

if TYPE_CHECKING:  # imported where clients are made: worker processes only count, never send
    from datadog.dogstatsd.base import DogStatsd


DEFAULT_NAMESPACE = "gunicorn.logs"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8125
FLUSH_SECONDS = 0.3  # how often a client's thread sends (datadog's default)
SETTLE_SECONDS = 600  # replay: a bucket this far behind the newest gets no more events
SELF_PREFIX = "logpipe."


# Error-log levels (as logged, and lower-cased) -> metric; other levels are not counted, so a
# stray word in the level position cannot make up new metric names.
_LEVEL_METRICS = {
    "critical": "log.critical",
    "fatal": "log.critical",
    "error": "log.error",
    "warning": "log.warning",
    "warn": "log.warning",
    "info": "log.info",
    "debug": "log.debug",
}
_LEVEL_METRICS.update({level.upper(): metric for level, metric in _LEVEL_METRICS.items()})

# Per-value tag lists are built once and reused (the client keeps them, read-only, until it
# flushes); a cache stops growing at this size, its later values get fresh lists.
_CACHE_LIMIT = 1024


class EventMetrics:
    """Derive Datadog metrics from logpipe events (a processor: observe(event) returns the event).

    ``tags`` are added to every metric sent here, on top of the client's constant tags. The
    instance takes over ``statsd``: ``close`` flushes and stops it.
    """

    def __init__(self, statsd: DogStatsd, *, tags: Sequence[str] = ()) -> None:
        self.statsd = statsd
        # logpipe.* must not get the namespace: a twin client without one (see the module doc).
        self.self_statsd = (
            statsd if not statsd.namespace else _twin_without_namespace(statsd, flush_thread=True)
        )
        self._tags: list[str] | None = list(tags) or None
        self._extra = list(tags)
        self._status: dict[int, tuple[list[str], str | None]] = {}
        self._bots: dict[str, list[str]] = {}
        self._closed = False

    def observe(self, event: Event) -> Event:
        """Count what ``event`` says; return it unchanged."""
        flags = event.get("logpipe")
        if flags:
            if "parse_error" in flags:
                self.count_self("parse_errors")
            if flags.get("truncated"):
                self.count_self("truncations")
        logger = event.get("logger")
        if not isinstance(logger, dict):
            return event
        name = logger.get("name")
        if name == ACCESS_LOGGER:
            http = event.get("http")
            if isinstance(http, dict):
                code = http.get("status_code")
                if type(code) is int:
                    self._request(code, http)
            duration = event.get("duration")
            if type(duration) is int or type(duration) is float:
                self.statsd.distribution("request.duration", duration / 1e6, self._tags)
        elif name == ERROR_LOGGER:
            level = event.get("level")
            if isinstance(level, str):
                metric = _LEVEL_METRICS.get(level) or _LEVEL_METRICS.get(level.lower())
                if metric is not None:
                    self.statsd.count(metric, 1, self._tags)
            error = event.get("error")
            if isinstance(error, dict) and error.get("stack"):
                self.statsd.count("log.exception", 1, self._tags)
        return event

    def count_self(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None:
        """Count ``logpipe.<name>`` (self-telemetry; ``name`` may already start with logpipe.)."""
        metric = name if name.startswith(SELF_PREFIX) else SELF_PREFIX + name
        all_tags = [*tags, *self._extra] if tags else self._tags
        self.self_statsd.count(metric, value, all_tags)

    def gauge_self(self, name: str, value: float) -> None:
        """Set the gauge ``logpipe.<name>`` (self-telemetry)."""
        self.self_statsd.gauge(SELF_PREFIX + name, value, self._tags)

    def flush(self) -> None:
        """Send the aggregated and buffered metrics now (at checkpoints and shutdown)."""
        for client in self._clients():
            client.flush_aggregated_metrics()
            client.flush()  # the datagram buffer, which aggregated metrics went into

    def close(self) -> None:
        """Flush, then stop the clients' flush threads and close their sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for client in self._clients():
            shutdown(client)

    def _clients(self) -> list[DogStatsd]:
        if self.self_statsd is self.statsd:
            return [self.statsd]
        return [self.statsd, self.self_statsd]

    def _request(self, code: int, http: dict[str, Any]) -> None:
        entry = self._status.get(code)
        if entry is None:
            entry = self._status_entry(code)
        tags, errors = entry
        count = self.statsd.count
        count("requests", 1, tags)
        if errors is None:
            return
        count(errors, 1, self._tags)
        details = http.get("useragent_details")
        if not isinstance(details, dict):
            return
        device = details.get("device")
        if not isinstance(device, dict) or device.get("category") != "Bot":
            return
        browser = details.get("browser")
        family = browser.get("family") if isinstance(browser, dict) else None
        family = family if isinstance(family, str) and family else "unknown"
        bot_tags = self._bots.get(family)
        if bot_tags is None:
            bot_tags = [f"bot:{family}", *self._extra]
            if len(self._bots) < _CACHE_LIMIT:
                self._bots[family] = bot_tags
        count("requests.bot_errors", 1, bot_tags)

    def _status_entry(self, code: int) -> tuple[list[str], str | None]:
        """Tags for ``requests`` with this status, and its 4xx/5xx metric if any."""
        hundreds = code // 100
        tags = [f"status_class:{hundreds}xx", f"status_code:{code}", *self._extra]
        errors = {4: "requests.4xx", 5: "requests.5xx"}.get(hundreds)
        entry = (tags, errors)
        if len(self._status) < _CACHE_LIMIT:
            self._status[code] = entry
        return entry


Sums = dict[tuple[str, tuple[str, ...], int], float]  # (metric, tags, bucket start) -> sum


class BucketedCounts:
    """Counts at the events' own time: summed per ``bucket_seconds`` of log time.

    It stands in for the DogStatsd client an ``EventMetrics`` uses: set ``at`` (epoch seconds
    of the event) before each ``observe``. Distributions and gauges cannot carry a timestamp, so
    ``request.duration`` is not counted. Sums of separate parts of a replay ``merge``; a
    ``TimestampedCounts`` sends them.
    """

    namespace = None  # EventMetrics then counts logpipe.* here too; the sender routes them

    def __init__(self, *, bucket_seconds: int = 10) -> None:
        self.bucket = bucket_seconds
        self.sums: Sums = {}
        self.at = 0.0

    def count(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        bucket = int(self.at // self.bucket * self.bucket)
        key = (metric, tuple(tags or ()), bucket)
        self.sums[key] = self.sums.get(key, 0) + value

    def distribution(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        """Not sendable with a timestamp: dropped."""

    def gauge(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        """Not meaningful for past data: dropped."""

    def merge(self, other: BucketedCounts) -> None:
        """Add ``other``'s sums to these."""
        sums = self.sums
        for key, value in other.sums.items():
            sums[key] = sums.get(key, 0) + value

    def take_settled(self) -> Sums:
        """Remove and return the sums of the buckets that ended ``SETTLE_SECONDS`` before the
        newest bucket of the same metric (each series of files has its own times: an error log
        replayed after the access logs starts back in time).

        The Agent does not aggregate timestamped points, so a second point for a bucket could
        replace the first: a bucket is sent when no more events should fall into it (log lines
        are ordered by when requests ended, their time is when they began; consecutive files of
        a series share the bucket of the rotation). Only a log whose clock jumps back more than
        that gets a second point for a bucket. Counts of events without a time (bucket 0) wait
        for the end.
        """
        newest: dict[str, int] = {}
        for metric, _, bucket in self.sums:
            if bucket > newest.get(metric, 0):
                newest[metric] = bucket
        settled = {
            key: value
            for key, value in self.sums.items()
            if 0 < key[2] < newest[key[0]] - SETTLE_SECONDS
        }
        for key in settled:
            del self.sums[key]
        return settled


class TimestampedCounts(BucketedCounts):
    """``BucketedCounts`` sent with ``count_with_timestamp`` (DogStatsD protocol 1.3, Agent
    7.40+) at each flush, for replay. datadogpy's own aggregator ignores timestamps, so the
    client given here has its aggregation turned off.
    """

    def __init__(self, statsd: DogStatsd, *, bucket_seconds: int = 10) -> None:
        super().__init__(bucket_seconds=bucket_seconds)
        statsd.disable_aggregation()
        self._statsd = statsd
        self._plain = (  # flushed by the caller, like ``statsd``
            _twin_without_namespace(statsd, flush_thread=False) if statsd.namespace else statsd
        )
        self._plain.disable_aggregation()

    def flush_aggregated_metrics(self) -> None:
        """Send the bucketed sums (each with its bucket's timestamp) and start afresh."""
        self.send(self.sums)
        self.sums = {}

    def send(self, sums: Sums) -> None:
        """Send ``sums`` (what ``take_settled`` took), each with its bucket's timestamp."""
        for key in sorted(sums):
            metric, tags, bucket = key
            client = self._plain if metric.startswith(SELF_PREFIX) else self._statsd
            client.count_with_timestamp(
                metric, sums[key], timestamp=bucket, tags=list(tags) or None
            )

    def flush(self) -> None:
        self._statsd.flush()
        self._plain.flush()

    def close(self) -> None:
        """Send what is left and close the clients."""
        self.flush_aggregated_metrics()
        for client in {id(self._statsd): self._statsd, id(self._plain): self._plain}.values():
            shutdown(client)


def dogstatsd(
    target: str | None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    tags: Sequence[str] = (),
    flush_thread: bool = True,
) -> DogStatsd | None:
    """The DogStatsD client for ``--dogstatsd`` (None for ``off``).

    ``target``: ``HOST:PORT`` (``[v6addr]:PORT`` too); ``off``; or None for ``DD_AGENT_HOST`` and
    ``DD_DOGSTATSD_PORT``, each defaulting to localhost and 8125. Raises ValueError with a one-line
    reason for anything else. The client aggregates counts and buffers datagrams. Its constant
    tags are ``tags``, then those the ``datadog`` package adds from ``DD_ENV``, ``DD_SERVICE``,
    ``DD_VERSION``, ``DATADOG_TAGS`` and ``DD_ENTITY_ID`` whose key ``tags`` does not have (so
    ``--service web`` with ``DD_SERVICE=api`` tags ``service:web`` only).

    Without ``flush_thread``, nothing is sent in the background: the caller flushes (replay and
    ``check`` do). The client's thread sleeps its whole 0.3 s between flushes, and stopping it
    waits for that sleep to end, which cost every replay ~0.3 s at exit.
    """
    if target is not None and target.strip().lower() == "off":
        return None
    host, port = parse_target(target) if target is not None else _target_from_env()
    wanted = list(tags)
    from datadog.dogstatsd.base import DogStatsd

    client = DogStatsd(
        host=host,
        port=port,
        namespace=namespace or None,
        constant_tags=list(wanted),
        disable_aggregation=False,
        disable_buffering=False,
        flush_interval=FLUSH_SECONDS if flush_thread else 0,
    )
    # The client put the environment's tags after ours; explicit ones win, key by key.
    added = list(client.constant_tags)[len(wanted) :]
    keys = {tag.partition(":")[0] for tag in wanted}
    merged = wanted + [tag for tag in added if tag.partition(":")[0] not in keys]
    client.constant_tags = list(dict.fromkeys(merged))
    return client


def parse_target(target: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> (host, port); ValueError with a one-line reason if it is not that."""
    host, colon, port_text = target.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise ValueError(f"DogStatsD target must be HOST:PORT or off, not {target!r}")
    return host, _port(port_text, f"DogStatsD target {target!r}")


def shutdown(client: DogStatsd) -> None:
    """Flush ``client``, stop its flush thread and close its socket (it can still send after)."""
    client.disable_aggregation()
    client.disable_buffering = True  # with aggregation off too, this stops and joins the thread
    client.flush_aggregated_metrics()  # now straight to the socket
    client.flush()  # what was still in the datagram buffer
    client.close_socket()


def _target_from_env() -> tuple[str, int]:
    host = os.environ.get("DD_AGENT_HOST") or DEFAULT_HOST
    port_text = os.environ.get("DD_DOGSTATSD_PORT")
    port = _port(port_text, "DD_DOGSTATSD_PORT") if port_text else DEFAULT_PORT
    return host, port


def _port(text: str, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"{what}: the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def _twin_without_namespace(statsd: DogStatsd, *, flush_thread: bool) -> DogStatsd:
    """A client sending where ``statsd`` sends, with its constant tags, and no namespace."""
    from datadog.dogstatsd.base import DogStatsd

    twin = DogStatsd(
        host=statsd.host,
        port=statsd.port,
        socket_path=statsd.socket_path,
        socket_timeout=statsd.socket_timeout,
        disable_aggregation=False,
        disable_buffering=False,
        disable_telemetry=True,  # the first client already reports the library's own telemetry
        flush_interval=FLUSH_SECONDS if flush_thread else 0,
    )
    twin.constant_tags = list(statsd.constant_tags)
    return twin

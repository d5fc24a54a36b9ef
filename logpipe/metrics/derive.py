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
  (what Datadog's saved view "Bot errors" selects: ``logpipe.event.bot_error``, tagged
  ``bot:<browser family>``), ``<ns>.requests.bots`` (requests from a user agent with an
  ``http.useragent_details.bot_kind``, tagged ``bot_kind:<kind>`` and ``status_class:4xx``),
  and the distribution ``<ns>.request.duration`` in ms when the event has a ``duration`` (ns);
- error events with a known ``level``: ``<ns>.log.critical|error|warning|info|debug``, and
  ``<ns>.log.exception`` when the event has ``error.stack``;
- self-telemetry, never namespaced: ``logpipe.parse_errors`` and ``logpipe.truncations`` from the
  events' ``logpipe.parse_error`` / ``logpipe.truncated``, and whatever ``count_self`` is given.

``logpipe.*`` goes through a second client without the namespace (``metrics.client``), or
through the same client when it has no namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from logpipe.event import ACCESS_LOGGER, ERROR_LOGGER, Event, bot_error
from logpipe.metrics.client import SELF_PREFIX, flush_soon, shutdown, twin_without_namespace

if TYPE_CHECKING:  # imported where clients are made: worker processes only count, never send
    from datadog.dogstatsd.base import DogStatsd


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
            statsd if not statsd.namespace else twin_without_namespace(statsd, flush_thread=True)
        )
        self._tags: list[str] | None = list(tags) or None
        self._extra = list(tags)
        self._status: dict[int, tuple[list[str], str | None]] = {}
        self._bots: dict[str, list[str]] = {}
        self._kinds: dict[tuple[str, int], list[str]] = {}
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
            self._on_access(event)
        elif name == ERROR_LOGGER:
            self._on_error(event)
        return event

    def _on_access(self, event: Event) -> None:
        """Count an access event: requests by status, 4xx, 5xx, bots, its duration."""
        http = event.get("http")
        if isinstance(http, dict):
            code = http.get("status_code")
            if type(code) is int:
                self._request(code, http)
        duration = event.get("duration")
        if type(duration) is int or type(duration) is float:
            self.statsd.distribution("request.duration", duration / 1e6, self._tags)

    def _on_error(self, event: Event) -> None:
        """Count an error record: its level, and a traceback as an exception."""
        level = event.get("level")
        if isinstance(level, str):
            metric = _LEVEL_METRICS.get(level) or _LEVEL_METRICS.get(level.lower())
            if metric is not None:
                self.statsd.count(metric, 1, self._tags)
        error = event.get("error")
        if isinstance(error, dict) and error.get("stack"):
            self.statsd.count("log.exception", 1, self._tags)

    def count_self(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None:
        """Count ``logpipe.<name>`` (self-telemetry; ``name`` may already start with logpipe.)."""
        metric = name if name.startswith(SELF_PREFIX) else SELF_PREFIX + name
        all_tags = [*tags, *self._extra] if tags else self._tags
        self.self_statsd.count(metric, value, all_tags)

    def gauge_self(self, name: str, value: float) -> None:
        """Set the gauge ``logpipe.<name>`` (self-telemetry)."""
        self.self_statsd.gauge(SELF_PREFIX + name, value, self._tags)

    def flush(self) -> None:
        """Have the aggregated and buffered metrics sent now (at checkpoints): the clients'
        threads are woken, so the caller never waits on DNS or the network."""
        for client in self._clients():
            flush_soon(client)

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
        details = http.get("useragent_details")
        if isinstance(details, dict):
            kind = details.get("bot_kind")
            if kind is not None:
                self._bot_kind(kind, code)
        if errors is None:
            return
        count(errors, 1, self._tags)
        family = bot_error(http)  # the saved view "Bot errors" (logpipe.event.bot_error)
        if family is None:
            return
        bot_tags = self._bots.get(family)
        if bot_tags is None:
            bot_tags = [f"bot:{family}", *self._extra]
            if len(self._bots) < _CACHE_LIMIT:
                self._bots[family] = bot_tags
        count("requests.bot_errors", 1, bot_tags)

    def _bot_kind(self, kind: str, code: int) -> None:
        """``requests.bots``, tagged ``bot_kind:`` and ``status_class:``."""
        key = (kind, code // 100)
        tags = self._kinds.get(key)
        if tags is None:
            tags = [f"bot_kind:{kind}", f"status_class:{key[1]}xx", *self._extra]
            if len(self._kinds) < _CACHE_LIMIT:
                self._kinds[key] = tags
        self.statsd.count("requests.bots", 1, tags)

    def _status_entry(self, code: int) -> tuple[list[str], str | None]:
        """Tags for ``requests`` with this status, and its 4xx/5xx metric if any."""
        hundreds = code // 100
        tags = [f"status_class:{hundreds}xx", f"status_code:{code}", *self._extra]
        errors = {4: "requests.4xx", 5: "requests.5xx"}.get(hundreds)
        entry = (tags, errors)
        if len(self._status) < _CACHE_LIMIT:
            self._status[code] = entry
        return entry

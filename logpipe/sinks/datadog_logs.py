"""Datadog's HTTP logs intake (v2): batches, gzip, retries forever, dead letters, acks.

Events are gathered into batches of at most 1,000 events and 5 MB of JSON, sent when full or
``flush_seconds`` after their first event. A batch is retried on 408, 429, 5xx and network
errors with exponential backoff and jitter (1 s doubling to 120 s, ``Retry-After`` honoured),
for as long as it takes: while it waits nothing else is read (backpressure) and its events are
not acknowledged, so checkpoints stay behind them. Answers that retrying cannot fix (400, 401,
403, 404, 413) are reported once per kind, counted, and the batch is appended to a dead-letter
NDJSON file so that nothing vanishes (``logpipe resend`` sends it again); its events are then
acknowledged, but counted as ``refused``, not ``delivered``. With ``acknowledge_refused=False``
(replay, whose ledger must stay behind them) a refused batch is not kept: ``Refused`` is raised
and nothing more is sent. The API key is sent in
the ``DD-API-KEY`` header and never written anywhere else. With a ``proxy``
(``logpipe.sinks.proxy``) every connection is a CONNECT tunnel through it; a proxy that refuses
the tunnel or cannot be reached is said in one line naming it by ``host:port`` and retried like
any network error. ``check_api_key`` asks Datadog's validate endpoint about the key at start.

At a shutdown (``stop`` set) with a ``shutdown_timeout``, batches are still sent and retried,
but only while the next try can end by the deadline (judged by how long the last one took); a
request still unanswered at the deadline is cut off. Either way ``Interrupted`` is raised and
the batch stays unacknowledged, so the process exits in time and the checkpoints stay behind
what the intake did not accept.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.client
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from logpipe.event import Event, Token
from logpipe.problems import SetupError
from logpipe.sinks import Attempt, Interrupted, Refused, nothing_to_sync
from logpipe.sinks.dead_letters import append_dead_letters
from logpipe.sinks.proxy import Proxy, describe_failure
from logpipe.sinks.proxy import connection as open_connection

MAX_EVENTS = 1000
MAX_BYTES = 5_000_000
FLUSH_SECONDS = 2.0
RETRYABLE = frozenset({408, 429})
FIRST_DELAY, MAX_DELAY = 1.0, 120.0
TIMEOUT = 30.0
VALIDATE_TIMEOUT = 10.0


def intake_url(site: str | None) -> str:
    """The v2 logs intake for a Datadog site (``DD_SITE``; default datadoghq.com)."""
    return f"https://http-intake.logs.{site or 'datadoghq.com'}/api/v2/logs"


def api_url(site: str | None) -> str:
    """The API of a Datadog site (``DD_SITE``; default datadoghq.com)."""
    return f"https://api.{site or 'datadoghq.com'}"


def site_of_intake(url: str) -> str | None:
    """The Datadog site whose logs intake ``url`` is (``http-intake.logs.SITE``), else None."""
    host = urlsplit(url).hostname or ""
    prefix = "http-intake.logs."
    return host[len(prefix) :] if host.startswith(prefix) and len(host) > len(prefix) else None


def check_api_key(
    api: str, api_key: str, proxy: Proxy | None, timeout: float = VALIDATE_TIMEOUT
) -> tuple[int | None, str]:
    """``GET {api}/api/v1/validate`` with the key: (HTTP status, "") when an answer came,
    else (None, why not). The key goes in the ``DD-API-KEY`` header only."""
    url = urlsplit(api.rstrip("/") + "/api/v1/validate")
    link = open_connection(url, proxy, timeout)
    try:
        try:
            link.connect()
        except (OSError, http.client.HTTPException) as error:
            return None, describe_failure(error, proxy, False) or _reason(error)
        link.request("GET", url.path, headers={"DD-API-KEY": api_key, "Accept": "application/json"})
        response = link.getresponse()
        response.read()
        return response.status, ""
    except (OSError, http.client.HTTPException) as error:
        return None, _reason(error)
    finally:
        link.close()


def _reason(error: BaseException) -> str:
    """What went wrong, without anything a request carried (the key is only in headers)."""
    if isinstance(error, TimeoutError):
        return "timed out"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@dataclass
class Counters:
    retries: int = 0
    dead_lettered: int = 0
    refused: int = 0  # events refused for good (dead-lettered, or given back: ``Refused``)
    rejected: dict[int, int] = field(default_factory=dict)


class DatadogLogsSink:
    """See the module documentation."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        dead_letters: Path,
        stop: threading.Event,
        warn: Callable[[str], None],
        flush_seconds: float = FLUSH_SECONDS,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        shutdown_timeout: float | None = None,
        proxy: Proxy | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
        acknowledge_refused: bool = True,
    ) -> None:
        self._url = urlsplit(url)
        self._on_attempt = on_attempt
        self._proxy = proxy
        if self._url.scheme not in ("http", "https") or not self._url.hostname:
            raise SetupError(f"not an http(s) URL: {url}")
        self._api_key = api_key
        self._dead_letters = dead_letters
        self._acknowledge_refused = acknowledge_refused
        self._stop = stop
        self._warn = warn
        self._flush_seconds = flush_seconds
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._clock = clock
        self._events: list[bytes] = []
        self._tokens: list[Token] = []
        self.delivered = 0  # events the intake accepted
        self._bytes = 2  # "[" and "]"
        self._opened = 0.0
        self._connection: http.client.HTTPConnection | None = None
        self._reported: set[int] = set()
        self.counters = Counters()
        self._grace = shutdown_timeout
        self._deadline = math.inf  # set once ``stop`` is, with a shutdown_timeout
        self._deadline_passed = threading.Event()
        self._closed = threading.Event()
        self._post_seconds = 0.0  # how long the last try took
        self._in_flight = False  # a request waits for its answer
        self._cut_off = False  # the deadline cut a request off
        self._failure: str | None = None  # what the proxy did to the last try, if anything
        if shutdown_timeout is not None:
            threading.Thread(
                target=self._watch, args=(shutdown_timeout,), name="logpipe-deadline", daemon=True
            ).start()

    def send(self, events: Iterable[tuple[Event, int]], key: str, end: int) -> list[Token]:
        """Queue events; returns the tokens of the events delivered meanwhile (full batches).
        Each event keeps a token of its own: a batch of the intake may end inside a batch of
        the file, and a shutdown then acknowledges exactly what was delivered."""
        encoded: list[bytes] = []
        tokens: list[Token] = []
        for event, offset in events:
            encoded.append(orjson.dumps(event))
            tokens.append((key, offset))
        return self._queue(encoded, tokens)

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        """``send`` for events already serialised, one per line of ``block``."""
        events = block.split(b"\n")
        events.pop()  # after the last newline
        return self._queue(events, tokens)

    def _queue(self, events: list[bytes], tokens: list[Token]) -> list[Token]:
        delivered: list[Token] = []
        for encoded, token in zip(events, tokens, strict=True):
            if self._events and (
                len(self._events) >= self._max_events
                or self._bytes + len(encoded) + 1 > self._max_bytes
            ):
                try:
                    delivered += self._send_batch()
                except Interrupted as interrupted:
                    interrupted.delivered[:0] = delivered
                    raise
            if not self._events:
                self._opened = self._clock()
            self._events.append(encoded)
            self._tokens.append(token)
            self._bytes += len(encoded) + 1
        return delivered

    def tick(self) -> list[Token]:
        """Send the open batch if it has waited ``flush_seconds``."""
        if self._events and self._clock() - self._opened >= self._flush_seconds:
            return self._send_batch()
        return []

    def drain(self) -> list[Token]:
        """Send everything queued (checkpoint time, shutdown)."""
        return self._send_batch() if self._events else []

    def sync_job(self) -> Callable[[], None]:
        """Delivered means accepted by the intake: nothing to sync locally."""
        return nothing_to_sync

    def stats(self) -> dict[str, int]:
        return {
            "refused": self.counters.refused,
            "pending": len(self._events),
            "retries": self.counters.retries,
        }

    def parallel_append_path(self) -> None:
        """Events reach the intake only through this sink's batches."""

    def reopen(self) -> None:
        """No file to reopen."""

    def close(self) -> None:
        self._closed.set()
        if self._connection is not None:
            self._connection.close()

    # -- the shutdown deadline -----------------------------------------------------------------

    def _watch(self, grace: float) -> None:
        """Once ``stop`` is set, note the deadline; at the deadline, cut off a request still
        waiting for its answer (on a thread of its own: the loop's thread is the one waiting)."""
        self._stop.wait()
        self._deadline = self._clock() + grace
        if self._closed.wait(grace):
            return
        self._deadline_passed.set()
        connection = self._connection
        if self._in_flight and connection is not None and connection.sock is not None:
            self._cut_off = True
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def _check_time(self, wait: float) -> None:
        """At a shutdown, raise ``Interrupted`` unless a try after ``wait`` seconds can end by
        the deadline, judging by how long the last try took. Without a shutdown_timeout, only
        a batch's first try is made."""
        if not self._stop.is_set():
            return
        if self._grace is None:
            if wait > 0:
                raise Interrupted("shutdown while the logs intake was failing")
            return
        if wait + self._post_seconds > self._deadline - self._clock():
            maybe = " (the intake had not answered for them: they may arrive twice)"
            raise Interrupted(
                f"shutdown: {len(self._events)} events not delivered within the shutdown "
                f"timeout of {self._grace:g} s{maybe if self._cut_off else ''}"
            )

    def _wait_to_retry(self, delay: float) -> None:
        """Wait ``delay`` seconds before the next try; a shutdown meanwhile ends the wait only
        when that try could not end by the deadline."""
        self._check_time(delay)
        until = self._clock() + delay
        if self._stop.wait(delay):
            left = max(0.0, until - self._clock())
            self._check_time(left)
            self._deadline_passed.wait(left)

    # -- sending -------------------------------------------------------------------------------

    def _send_batch(self) -> list[Token]:
        body = b"[" + b",".join(self._events) + b"]"
        compressed = _gzip(body)
        attempt = 0
        while True:
            self._check_time(0.0)
            status, retry_after = self._timed_post(compressed)
            if self._on_attempt is not None:
                failure = None if status is not None else self._failure or "no answer"
                self._on_attempt(
                    Attempt(len(self._events), len(compressed), status, self._post_seconds, failure)
                )
            if status is not None and 200 <= status < 300:
                self.delivered += len(self._events)
                return self._take()
            what = f"HTTP {status}" if status is not None else self._failure or "no answer"
            if status is not None and status not in RETRYABLE and status < 500:
                try:
                    self._reject(status, body)
                    return self._take()
                except OSError as error:  # the dead letters cannot be kept: keep the batch
                    what = f"HTTP {status}, and cannot write {error.filename}: {error.strerror}"
            self.counters.retries += 1
            delay = retry_after if retry_after is not None else _backoff(attempt)
            if attempt == 0 or attempt % 10 == 0:
                self._warn(f"logs intake: {what}; retrying in {delay:.1f} s (batch kept)")
            self._wait_to_retry(delay)
            attempt += 1

    def _timed_post(self, body: bytes) -> tuple[int | None, float | None]:
        """``_post``, noting how long it took and that it is under way meanwhile."""
        started = self._clock()
        self._in_flight = True
        try:
            return self._post(body)
        finally:
            self._in_flight = False
            self._post_seconds = self._clock() - started

    def _post(self, body: bytes) -> tuple[int | None, float | None]:
        """(status, Retry-After seconds) of one try; status None when nothing came back."""
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "DD-API-KEY": self._api_key,
        }
        path = self._url.path + (f"?{self._url.query}" if self._url.query else "")
        self._failure = None
        link = self._connect()
        if link.sock is None:
            try:
                link.connect()  # through the proxy's tunnel, if there is one
            except (OSError, http.client.HTTPException) as error:
                self._failure = describe_failure(error, self._proxy, False)
                self.close()
                self._connection = None
                return None, None
        try:
            link.request("POST", path or "/", body=body, headers=headers)
            response = link.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            self._connection = None
            return None, None
        retry_after = response.getheader("Retry-After")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        return response.status, min(seconds, MAX_DELAY) if seconds is not None else None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = open_connection(self._url, self._proxy, TIMEOUT)
        return self._connection

    def _reject(self, status: int, body: bytes) -> None:
        """Keep a refused batch in the dead letters (raising ``OSError`` when it cannot be
        written: the batch is then kept here), then count and report it; without
        ``acknowledge_refused``, raise ``Refused`` instead of keeping it."""
        if self._acknowledge_refused:
            append_dead_letters(self._dead_letters, b"\n".join(self._events) + b"\n", self._warn)
            self.counters.dead_lettered += len(self._events)
        self.counters.rejected[status] = self.counters.rejected.get(status, 0) + 1
        self.counters.refused += len(self._events)
        reason = {401: "API key refused", 403: "API key refused", 413: "batch too large"}
        why = f"HTTP {status} ({reason.get(status, 'bad request')})"
        if not self._acknowledge_refused:
            count = len(self._events)
            raise Refused(f"the logs intake refused {count} events with {why}", self._take())
        if status not in self._reported:
            self._reported.add(status)
            self._warn(
                f"logs intake refused a batch with {why}; not retrying, its "
                f"{len(self._events)} events go to {self._dead_letters}"
            )

    def _take(self) -> list[Token]:
        tokens = self._tokens
        self._events, self._tokens, self._bytes = [], [], 2
        return tokens


def _gzip_with() -> Callable[[bytes], bytes]:
    """How batches are gzipped: with ISA-L at level 3 when installed (about 500 MB/s of JSON
    here, 3x zlib's level 6, for ~1.5x the bytes: CPU beside gunicorn matters more than a few
    hundred KB/s of upload), else with zlib at level 6."""
    try:
        from isal import igzip
    except ImportError:
        return functools.partial(gzip.compress, compresslevel=6)
    return functools.partial(igzip.compress, compresslevel=3)


_gzip = _gzip_with()


def _backoff(attempt: int) -> float:
    """1 s doubling to 120 s, with jitter (between half and all of it)."""
    delay: float = min(MAX_DELAY, FIRST_DELAY * 2.0**attempt)
    return delay * random.uniform(0.5, 1.0)

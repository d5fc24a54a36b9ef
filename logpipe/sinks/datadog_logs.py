"""Datadog's HTTP logs intake (v2): batches, gzip, delivery on its own thread, retries
forever, dead letters, acks.

Events are gathered into batches of at most 1,000 events and 5 MB of JSON on the caller's
thread, and sealed when full or ``flush_seconds`` after their first event. A thread of its own
(``logpipe-delivery``) delivers sealed batches in order, so that the caller (the follow loop)
keeps its pace while the intake is slow or down: ``send``, ``tick`` and ``drain`` hand back the
tokens of what was delivered meanwhile, and ``congested`` tells when the intake fails and
batches pile up. With ``MAX_READY_BATCHES`` sealed, sending waits (backpressure).

A batch is retried on 408, 429, 5xx and network errors with exponential backoff and jitter
(1 s doubling to 8 s, ``Retry-After`` honoured up to 120 s), for as long as it takes; after a
try that got no answer, the intake is probed (a connection opened) every second meanwhile, so
delivery resumes within seconds of a recovery. Its events are not acknowledged until accepted,
so checkpoints stay behind them. Answers that retrying cannot fix (400, 401, 403, 404, 413) are
reported once per kind, counted, and the batch is appended to a dead-letter NDJSON file so that
nothing vanishes (``logpipe resend`` sends it again); its events are then acknowledged, but
counted as ``refused``, not ``delivered``. With ``acknowledge_refused=False`` (replay, whose
ledger must stay behind them) a refused batch is not kept: ``Refused`` is raised and nothing more
is sent. Messages name the intake (``host:port``)
and the cause, with a refusal's error body cut to one line; each request is shown to the
``on_attempt`` hook. The API key is sent in the ``DD-API-KEY`` header and never written anywhere
else. With a ``proxy`` (``logpipe.sinks.proxy``) every connection is a CONNECT tunnel through
it; a proxy that refuses the tunnel or cannot be reached is said in one line naming it by
``host:port`` and retried like any network error. ``check_api_key`` asks Datadog's validate
endpoint about the key at start.

At a shutdown (``stop`` set) with a ``shutdown_timeout``, batches are still sent and retried,
but only while the next try can end by the deadline (judged by how long the last one took); a
request still unanswered at the deadline is cut off. Either way ``Interrupted`` is raised (by
``drain``, or any call after) and the batch stays unacknowledged, so the process exits in time
and the checkpoints stay behind what the intake did not accept.
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
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from logpipe.event import Event, Token
from logpipe.problems import SetupError
from logpipe.sinks import Attempt, Interrupted, Refused, SinkState, nothing_to_sync
from logpipe.sinks.dead_letters import append_dead_letters
from logpipe.sinks.failures import explain, http_failure
from logpipe.sinks.proxy import Proxy
from logpipe.sinks.proxy import connection as open_connection

MAX_EVENTS = 1000
MAX_BYTES = 5_000_000
FLUSH_SECONDS = 2.0
RETRYABLE = frozenset({408, 429})
FIRST_DELAY, MAX_DELAY = 1.0, 8.0  # capped: delivery resumes within seconds of recovery
MAX_RETRY_AFTER = 120.0
PROBE_SECONDS = 1.0  # while waiting after a try got no answer, try to connect this often
CONGESTED_BATCHES = 2  # sealed batches waiting: the follower reads for metrics only
MAX_READY_BATCHES = 8  # sealed batches waiting: sending waits (replay's backpressure)
ANSWER_BYTES = 4096  # of an error answer's body, kept for its reason
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
    """``GET {api}/api/v1/validate`` with the key: (HTTP status, "") for a 2xx answer,
    (HTTP status, ``http_failure``'s line) for another, else (None, ``explain``'s line). The
    key goes in the ``DD-API-KEY`` header only."""
    url = urlsplit(api.rstrip("/") + "/api/v1/validate")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    link = open_connection(url, proxy, timeout)
    try:
        try:
            link.connect()
        except (OSError, http.client.HTTPException) as error:
            return None, explain(error, host, port, proxy, timeout=timeout)
        link.request("GET", url.path, headers={"DD-API-KEY": api_key, "Accept": "application/json"})
        response = link.getresponse()
        body = response.read()
        ok = 200 <= response.status < 300
        return response.status, "" if ok else http_failure(response.status, host, body)
    except (OSError, http.client.HTTPException) as error:
        return None, explain(error, host, port, timeout=timeout)
    finally:
        link.close()


@dataclass
class Counters:
    retries: int = 0
    dead_lettered: int = 0
    refused: int = 0  # events refused for good (dead-lettered, or given back: ``Refused``)
    rejected: dict[int, int] = field(default_factory=dict)


@dataclass
class _Batch:
    """Events sealed into one request, and their tokens."""

    events: list[bytes]
    tokens: list[Token]


@dataclass
class _Health:
    """How delivery went lately (Unix times), for the status snapshot."""

    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failing_since: float | None = None


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
        try:
            port = self._url.port or (443 if self._url.scheme == "https" else 80)
        except ValueError:
            raise SetupError(f"not an http(s) URL: {url}") from None
        self._address = (self._url.hostname, port)  # for messages
        self.target = f"{self._url.hostname}:{port}"  # how messages name the intake
        self._api_key = api_key
        self._dead_letters = dead_letters
        self._acknowledge_refused = acknowledge_refused
        self._stop = stop
        self._warn = warn
        self._flush_seconds = flush_seconds
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._clock = clock
        self._events: list[bytes] = []  # the open batch, on the caller's thread
        self._tokens: list[Token] = []
        self._bytes = 2  # "[" and "]"
        self._opened = 0.0
        # Sealed batches wait in ``_ready`` for the delivery thread, which hands back the
        # tokens of what it delivered in ``_done``; all under ``_lock``.
        self._lock = threading.Condition()
        self._ready: deque[_Batch] = deque()
        self._done: list[Token] = []
        self._ended: BaseException | None = None  # why the delivery thread stopped
        self.delivered = 0  # events the intake accepted
        self.health = _Health()
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
        self._failure: str | None = None  # why the last try got no answer, if it got none
        self._answer = b""  # the body of the last answer (an error's reason)
        if shutdown_timeout is not None:
            threading.Thread(
                target=self._watch, args=(shutdown_timeout,), name="logpipe-deadline", daemon=True
            ).start()
        self._thread = threading.Thread(
            target=self._deliver_all, name="logpipe-delivery", daemon=True
        )
        self._thread.start()

    # -- the caller's side: batches are sealed here and delivered on the delivery thread -------

    def send(self, events: Iterable[tuple[Event, int]], key: str, end: int) -> list[Token]:
        """Queue events; returns the tokens of the events delivered meanwhile. Each event keeps
        a token of its own: a batch of the intake may end inside a batch of the file, and a
        shutdown then acknowledges exactly what was delivered."""
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
        for encoded, token in zip(events, tokens, strict=True):
            if self._events and (
                len(self._events) >= self._max_events
                or self._bytes + len(encoded) + 1 > self._max_bytes
            ):
                self._seal()
            if not self._events:
                self._opened = self._clock()
            self._events.append(encoded)
            self._tokens.append(token)
            self._bytes += len(encoded) + 1
        return self._take_done()

    @property
    def congested(self) -> bool:
        """Whether the intake is failing and sealed batches wait: a follower then reads for
        its metrics only (``FollowPipeline``). A slow intake that answers is not congested:
        sending waits for it instead (``_seal``)."""
        return self.health.failing_since is not None and len(self._ready) >= CONGESTED_BATCHES

    def state(self) -> SinkState:
        health = self.health
        return SinkState(
            kind="datadog",
            target=self.target,
            delivered=self.delivered,
            refused=self.counters.refused,
            pending=self.pending,
            retries=self.counters.retries,
            last_success=health.last_success,
            last_error=health.last_error,
            last_error_at=health.last_error_at,
            failing_since=health.failing_since,
        )

    @property
    def pending(self) -> int:
        """Events taken and not yet delivered nor refused."""
        with self._lock:
            return len(self._events) + sum(len(batch.events) for batch in self._ready)

    def tick(self) -> list[Token]:
        """Seal the open batch if it has waited ``flush_seconds``; the tokens delivered since."""
        if self._events and self._clock() - self._opened >= self._flush_seconds:
            self._seal()
        return self._take_done()

    def drain(self) -> list[Token]:
        """Deliver everything queued and wait for it (shutdown, the end of a replayed file)."""
        if self._events:
            self._seal()
        with self._lock:
            while self._ready and self._ended is None:
                self._lock.wait()
        return self._take_done()

    def _seal(self) -> None:
        """Hand the open batch to the delivery thread; wait while too many batches wait."""
        batch = _Batch(self._events, self._tokens)
        self._events, self._tokens, self._bytes = [], [], 2
        with self._lock:
            self._ready.append(batch)
            self._lock.notify_all()
            while len(self._ready) > MAX_READY_BATCHES and self._ended is None:
                self._lock.wait()

    def _take_done(self) -> list[Token]:
        """The tokens delivered since the last call; raise why delivery stopped, if it did
        (``Interrupted`` at a shutdown, carrying those tokens)."""
        with self._lock:
            done, self._done = self._done, []
            ended = self._ended
        if ended is None:
            return done
        if isinstance(ended, Refused):
            refused = Refused(str(ended), ended.refused)
            refused.delivered = done
            raise refused
        if isinstance(ended, Interrupted):
            interrupted = Interrupted(str(ended))
            interrupted.delivered = done
            raise interrupted
        raise ended

    def sync_job(self) -> Callable[[], None]:
        """Delivered means accepted by the intake: nothing to sync locally."""
        return nothing_to_sync

    def stats(self) -> dict[str, int]:
        return {
            "refused": self.counters.refused,
            "pending": self.pending,
            "retries": self.counters.retries,
        }

    def parallel_append_path(self) -> None:
        """Events reach the intake only through this sink's batches."""

    def reopen(self) -> None:
        """No file to reopen."""

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._ended is None:
                self._ended = Interrupted("the logs sink was closed")
            self._lock.notify_all()
        connection = self._connection
        if connection is not None:
            connection.close()

    # -- the shutdown deadline -----------------------------------------------------------------

    def _watch(self, grace: float) -> None:
        """Once ``stop`` is set, note the deadline; at the deadline, cut off a request still
        waiting for its answer (on a thread of its own: the delivery thread is the one
        waiting)."""
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
                f"shutdown: {self.pending} events not delivered within the shutdown "
                f"timeout of {self._grace:g} s{maybe if self._cut_off else ''}"
            )

    def _wait_to_retry(self, delay: float, probe: bool) -> None:
        """Wait ``delay`` seconds before the next try; with ``probe`` (no answer came), try to
        connect every ``PROBE_SECONDS`` meanwhile and end the wait as soon as that works. A
        shutdown meanwhile ends the wait only when that try could not end by the deadline."""
        self._check_time(delay)
        until = self._clock() + delay
        while (left := until - self._clock()) > 0:
            step = min(left, PROBE_SECONDS) if probe else left
            if self._stop.wait(step):
                left = max(0.0, until - self._clock())
                self._check_time(left)
                self._deadline_passed.wait(left)
                return
            if probe and self._clock() < until and self._reachable():
                return

    def _reachable(self) -> bool:
        """Whether a connection to the intake (through the proxy's tunnel, if any) opens now;
        an open one is kept for the next try."""
        link = self._connect()
        try:
            link.connect()
        except (OSError, http.client.HTTPException):
            link.close()
            self._connection = None
            return False
        return True

    # -- the delivery thread -------------------------------------------------------------------

    def _deliver_all(self) -> None:
        """Deliver sealed batches in order, each until it is accepted or refused for good;
        stop at a shutdown that cannot wait (``Interrupted``) or when closed."""
        while True:
            with self._lock:
                while not self._ready and self._ended is None:
                    self._lock.wait()
                if self._ended is not None:
                    return
                batch = self._ready[0]
            try:
                tokens = self._deliver(batch)
            except Exception as error:  # Interrupted, or a bug: said where the caller waits
                with self._lock:
                    self._ended = self._ended or error
                    self._lock.notify_all()
                return
            with self._lock:
                self._ready.popleft()
                self._done += tokens
                self._lock.notify_all()

    def _deliver(self, batch: _Batch) -> list[Token]:
        body = b"[" + b",".join(batch.events) + b"]"
        compressed = _gzip(body)
        attempt = 0
        while True:
            self._check_time(0.0)
            status, retry_after = self._timed_post(compressed)
            failure = self._describe(status)
            if self._on_attempt is not None:
                self._on_attempt(
                    Attempt(len(batch.events), len(compressed), status, self._post_seconds, failure)
                )
            if status is not None and 200 <= status < 300:
                self.delivered += len(batch.events)
                self.health.last_success = time.time()
                self.health.failing_since = None
                return batch.tokens
            assert failure is not None
            self._said(failure)
            if status is not None and status not in RETRYABLE and status < 500:
                try:
                    self._reject(status, failure, batch)
                    self.health.failing_since = None  # handled: delivery goes on
                    return batch.tokens
                except OSError as error:  # the dead letters cannot be kept: keep the batch
                    failure += f", and cannot write {error.filename}: {error.strerror}"
                    self._said(failure)
            if self.health.failing_since is None:
                self.health.failing_since = time.time()
            self.counters.retries += 1
            delay = retry_after if retry_after is not None else _backoff(attempt)
            if attempt == 0 or attempt % 10 == 0:
                self._warn(f"logs intake: {failure}; retrying in {delay:.1f} s (batch kept)")
            self._wait_to_retry(delay, probe=status is None)
            attempt += 1

    def _describe(self, status: int | None) -> str | None:
        """One line naming the intake and what went wrong with the last try (None: accepted)."""
        if status is None:
            failure = self._failure or f"no answer from {self.target}"
            named = self.target in failure or f"resolve {self._address[0]}" in failure
            return failure if named else f"{self.target}: {failure}"
        if 200 <= status < 300:
            return None
        return http_failure(status, self.target, self._answer)

    def _said(self, failure: str) -> None:
        """Note the last failure (a refusal too: it is shown, though it is not retried)."""
        self.health.last_error, self.health.last_error_at = failure, time.time()

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
        self._failure, self._answer = None, b""
        link = self._connect()
        if link.sock is None:
            try:
                link.connect()  # through the proxy's tunnel, if there is one
            except (OSError, http.client.HTTPException) as error:
                self._failure = explain(error, *self._address, self._proxy, timeout=TIMEOUT)
                self._drop_connection()
                return None, None
        try:
            link.request("POST", path or "/", body=body, headers=headers)
            response = link.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._failure = explain(error, *self._address, timeout=TIMEOUT)
            self._drop_connection()
            return None, None
        if not 200 <= response.status < 300:
            self._answer = answer[:ANSWER_BYTES]
        retry_after = response.getheader("Retry-After")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        return response.status, min(seconds, MAX_RETRY_AFTER) if seconds is not None else None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = open_connection(self._url, self._proxy, TIMEOUT)
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _reject(self, status: int, failure: str, batch: _Batch) -> None:
        """Keep a refused batch in the dead letters (raising ``OSError`` when it cannot be
        written: the batch is then kept here), then count and report it; without
        ``acknowledge_refused``, raise ``Refused`` instead of keeping it."""
        count = len(batch.events)
        if self._acknowledge_refused:
            append_dead_letters(self._dead_letters, b"\n".join(batch.events) + b"\n", self._warn)
            self.counters.dead_lettered += count
        self.counters.rejected[status] = self.counters.rejected.get(status, 0) + 1
        self.counters.refused += count
        reason = {401: "API key refused", 403: "API key refused", 413: "batch too large"}
        why = f"{failure} ({reason.get(status, 'bad request')})"
        if not self._acknowledge_refused:
            raise Refused(f"the logs intake refused {count} events: {why}", batch.tokens)
        if status not in self._reported:
            self._reported.add(status)
            self._warn(
                f"logs intake refused a batch: {why}; not retrying, its {count} events go to "
                f"{self._dead_letters}"
            )


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

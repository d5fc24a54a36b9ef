"""``--http``: a running follower's HTTP endpoint, served on daemon threads.

``GET /health``: 200 ``{"status": "ok"}`` (or ``starting``) while delivering, 503
``{"status": "stuck", "reason": ...}`` once stuck past the threshold (``ops.health``).
``GET /metrics``: Prometheus text, or OpenMetrics when asked (``ops.metrics``).
``GET /status``: the latest snapshot and the health verdict, as JSON (``logpipe status``).
Other paths: 404; other methods: 405. Nothing is logged per request, and a request that
cannot be answered gets one line, never a traceback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from logpipe.ops.address import shown
from logpipe.ops.health import Health, HealthCheck
from logpipe.ops.metrics import OpsMetrics, SnapshotCollector
from logpipe.pipeline.snapshot import Snapshot
from logpipe.problems import SetupError

PATHS = ("/health", "/metrics", "/status")
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class Endpoint:
    """Listens on ``(host, port)`` from its creation (a port in use is a ``SetupError`` at
    once); ``serve`` starts answering, ``close`` stops."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        threshold: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = OpsMetrics()
        self._threshold = threshold
        self._clock = clock
        self._server = _listen(host, port)
        self._server.endpoint = self
        self._snapshot: Callable[[], Snapshot | None] = lambda: None
        self._health = HealthCheck(threshold, clock())  # made again when serving starts
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` it listens on (the port chosen, when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return shown(str(host), int(port))

    def serve(self, snapshot: Callable[[], Snapshot | None]) -> None:
        """Answer from now on, from the snapshots ``snapshot`` returns (called on the
        endpoint's threads: it must only read an attribute)."""
        self._snapshot = snapshot
        self._health = HealthCheck(self._threshold, self._clock())
        self.metrics.watch(SnapshotCollector(snapshot, self._health.judge, self._clock))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="logpipe-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def health(self) -> tuple[Health, Snapshot | None, float]:
        """The verdict now, on the latest snapshot, and the time it was judged at."""
        snapshot, now = self._snapshot(), self._clock()
        return self._health.judge(snapshot, now), snapshot, now

    def answer(self, path: str, accept: str | None) -> tuple[int, bytes, str]:
        """Status, body and content type for ``GET path``."""
        if path == "/metrics":
            body, content_type = self.metrics.exposition(accept)
            return HTTPStatus.OK, body, content_type
        health, snapshot, now = self.health()
        status = HTTPStatus.OK if health.healthy else HTTPStatus.SERVICE_UNAVAILABLE
        if path == "/health":
            return status, _json(health_body(health, snapshot, now)), JSON
        return status, _json(status_body(health, snapshot, now)), JSON


def health_body(health: Health, snapshot: Snapshot | None, now: float) -> dict[str, Any]:
    """``/health``'s answer: the verdict, and a few figures to go with it."""
    body: dict[str, Any] = {"status": health.status}
    if health.reason is not None:
        body["reason"] = health.reason
    if snapshot is not None:
        body["version"] = snapshot["version"]
        body["uptime_seconds"] = round(now - snapshot["started_at"], 3)
        body["snapshot_age_seconds"] = round(now - snapshot["taken_at"], 3)
        body["delivered"] = snapshot["sink"]["delivered"]
        body["pending"] = snapshot["sink"]["pending"]
    return body


def status_body(health: Health, snapshot: Snapshot | None, now: float) -> dict[str, Any]:
    """``/status``'s answer: ``now`` (the endpoint's Unix time, which the snapshot's times
    compare to), the verdict, the snapshot (null before the first)."""
    verdict: dict[str, Any] = {"status": health.status, "reason": health.reason}
    return {"now": now, "health": verdict, "snapshot": snapshot}


def _json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body) + b"\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: Endpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away, or anything else: no traceback on stderr."""


class _Server6(_Server):
    address_family = socket.AF_INET6


def _listen(host: str, port: int) -> _Server:
    where = shown(host, port)
    try:
        families = {info[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as error:
        raise SetupError(f"cannot listen on {where}: {error.strerror}") from None
    server_class = _Server if socket.AF_INET in families else _Server6
    try:
        return server_class((host, port), _Handler)
    except OSError as error:
        reason = error.strerror or str(error)
        raise SetupError(f"cannot listen on {where}: {reason.lower()}") from None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: nothing on stderr per request."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """One line (status and reason), after a status line and headers even when the
        request line was too broken to say its version; an unknown method is 405."""
        self.request_version = self.protocol_version
        if code == HTTPStatus.NOT_IMPLEMENTED:
            self._refuse_method()
            return
        super().send_error(code, message)

    def do_GET(self) -> None:
        self._get(with_body=True)

    def do_HEAD(self) -> None:
        self._get(with_body=False)

    def do_POST(self) -> None:
        self._refuse_method()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"405 only GET and HEAD\n", TEXT, True)

    def _get(self, *, with_body: bool) -> None:
        path = urlsplit(self.path).path
        if path not in PATHS:
            self._send(
                HTTPStatus.NOT_FOUND,
                b"404 not found: try /health, /metrics, /status\n",
                TEXT,
                with_body,
            )
            return
        try:
            status, body, content_type = self.server.endpoint.answer(path, self.headers["Accept"])
        except Exception as error:  # one line, never a traceback
            line = f"500 {type(error).__name__}: {error}".splitlines()[0] + "\n"
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, line.encode(), TEXT, with_body)
            return
        self._send(status, body, content_type, with_body)

    def _send(self, status: int, body: bytes, content_type: str, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

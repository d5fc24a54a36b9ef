"""A strict local stand-in for Datadog's HTTP logs intake (v2), able to inject faults.

The intake's contract, below, is enforced on every request, and
every breach is answered the way the real intake answers it *and* written to
:attr:`Intake.violations`, so a test of a well-behaved sender ends with
``intake.assert_clean()`` (or ``assert intake.violations == []``).

Checks, in the order the answer is decided:

* ``POST /api/v2/logs`` (query string ignored), else 404;
* header ``DD-API-KEY`` equal to the intake's key, else 403;
* ``Content-Encoding`` absent/``identity`` or ``gzip`` (decoded), else 400; undecodable gzip: 400;
* at most 5,000,000 bytes once decoded, else 413;
* ``Content-Type: application/json`` (parameters such as ``charset`` allowed), else 400;
* body a JSON array (else 400) of at most 1000 entries (else 413), every entry an object (else 400).

Then, for an accepted request (202, body ``{}``), per entry: a ``message`` that is not a string
(or is missing) and an empty array are recorded as violations but still accepted (as the real
intake does); entries over 1,000,000 bytes serialized are accepted and counted in
:attr:`RequestRecord.truncated` (the intake would truncate them); entries lacking ``ddsource``,
``service``, ``hostname`` or ``ddtags`` are counted in :attr:`RequestRecord.missing`, and any of
those present but not a string is a violation.

``GET /api/v1/validate`` answers like Datadog's API: 200 ``{"valid": true}`` for the intake's
key in ``DD-API-KEY``, else 403 ``{"errors": ["Forbidden"]}`` (or :attr:`Intake.validate_status`
when set); these calls are kept in :attr:`Intake.validations` (whether the key was right), not
in :attr:`Intake.requests`, so the logs contract and its faults are unaffected.

Faults (:class:`Status`, :class:`Slow`, :class:`Drop`, :class:`Hang`) come from
:meth:`Intake.script` (the next requests, in arrival order, one fault each) and then from
:meth:`Intake.fail_for` windows. A request still has its body read and its contract checked
(violations are recorded) before its fault is applied; the events of a faulted request never
reach :attr:`Intake.events` (the sender must retry them), except for ``Slow`` with status 202,
which only delays the normal answer.
"""

from __future__ import annotations

import contextlib
import gzip
import http
import socket
import ssl
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import orjson

PATH = "/api/v2/logs"
VALIDATE_PATH = "/api/v1/validate"
MAX_ENTRIES = 1000
MAX_PAYLOAD_BYTES = 5_000_000  # uncompressed, per request
MAX_ENTRY_BYTES = 1_000_000  # serialized, per log; larger ones are truncated by the intake
RESERVED = ("ddsource", "service", "hostname", "ddtags")

Event = dict[str, Any]


class IntakeTimeout(AssertionError):
    """A :meth:`Intake.wait_events` / :meth:`Intake.wait_requests` deadline passed."""


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class Fault:
    """Base of the outcomes :meth:`Intake.script` and :meth:`Intake.fail_for` inject."""


@dataclass(frozen=True)
class Status(Fault):
    """Answer ``code`` (4xx/5xx, body like the real intake's) with an optional ``Retry-After``
    header (seconds, written with ``%g``: ``1``, ``0.25``)."""

    code: int
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise ValueError(f"Status fault needs a 4xx/5xx code, not {self.code}")


@dataclass(frozen=True)
class Slow(Fault):
    """Wait ``seconds``, then answer: normally if ``status`` is 202 (events recorded if the
    request is valid), else ``status`` (and ``retry_after``) like :class:`Status`."""

    seconds: float
    status: int = 202
    retry_after: float | None = None


@dataclass(frozen=True)
class Drop(Fault):
    """Read the request, then close the connection without answering."""


@dataclass(frozen=True)
class Hang(Fault):
    """Read the request, say nothing for ``seconds`` (or until :meth:`Intake.stop`), then close."""

    seconds: float


# --------------------------------------------------------------------------------------------
# What was seen
# --------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request, appended to :attr:`Intake.requests` once its body is read (``status`` is
    ``None`` and ``finished_at`` is ``None`` until it is answered or dropped)."""

    seq: int  # 0-based arrival order
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    gzip: bool  # Content-Encoding: gzip
    wire_bytes: int  # body as received
    raw_bytes: int  # body once decoded (0 if it could not be)
    n_events: int  # entries in the JSON array (0 if the body is not one)
    entries: list[Event]  # the parsed objects, kept even when rejected or faulted
    truncated: int  # entries over MAX_ENTRY_BYTES serialized
    missing: dict[str, int]  # reserved attribute -> entries lacking it
    violations: list[str]
    contract_status: int  # what the contract alone answers (202 or an error)
    detail: str  # why the contract rejects it ("" if it does not)
    fault: Fault | None
    received_at: float  # time.monotonic() once the body was read
    status: int | None = None  # what was answered; None: nothing (Drop, Hang, stop)
    accepted: bool = False  # its entries went to Intake.events
    delivered: bool = False  # the answer was written without error
    finished_at: float | None = None

    def summary(self) -> str:
        fault = f" fault={self.fault}" if self.fault else ""
        return (
            f"#{self.seq} {self.method} {self.path} -> {self.status}{fault} "
            f"events={self.n_events} gzip={self.gzip} bytes={self.wire_bytes}/{self.raw_bytes}"
            + (f" violations={self.violations}" if self.violations else "")
        )


@dataclass
class _Verdict:
    status: int
    detail: str = ""
    violations: list[str] = field(default_factory=list)
    gzip: bool = False
    raw_bytes: int = 0
    entries: list[Event] = field(default_factory=list)
    truncated: int = 0
    missing: dict[str, int] = field(default_factory=dict)


def check(method: str, path: str, headers: dict[str, str], body: bytes, api_key: str) -> _Verdict:
    """The real intake's answer to one request, with the contract breaches found."""

    def reject(status: int, why: str, **kw: Any) -> _Verdict:
        return _Verdict(status, why, [f"{status}: {why}"], **kw)

    if method != "POST" or path.split("?", 1)[0] != PATH:
        return reject(404, f"{method} {path}: only POST {PATH} exists")
    key = headers.get("dd-api-key")
    if key is None:
        return reject(403, "no DD-API-KEY header")
    if key != api_key:
        return reject(403, "wrong DD-API-KEY")
    encoding = headers.get("content-encoding", "identity").strip().lower()
    is_gzip = encoding == "gzip"
    if is_gzip:
        try:
            raw = _gunzip(body, MAX_PAYLOAD_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            return reject(400, f"body is not valid gzip: {exc}", gzip=True)
    elif encoding in ("identity", ""):
        raw = body
    else:
        return reject(400, f"unsupported Content-Encoding {encoding!r}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        what = f"more than {MAX_PAYLOAD_BYTES}" if is_gzip else f"{len(raw)}"
        return reject(
            413, f"payload {what} bytes uncompressed (limit {MAX_PAYLOAD_BYTES})", gzip=is_gzip
        )
    common: dict[str, Any] = {"gzip": is_gzip, "raw_bytes": len(raw)}
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return reject(400, f"Content-Type {headers.get('content-type')!r}, not JSON", **common)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return reject(400, f"body is not valid JSON: {exc}", **common)
    if not isinstance(doc, list):
        return reject(400, f"body is a JSON {type(doc).__name__}, not an array", **common)
    objects = [e for e in doc if isinstance(e, dict)]
    if len(doc) > MAX_ENTRIES:
        return reject(413, f"{len(doc)} entries (limit {MAX_ENTRIES})", entries=objects, **common)
    if len(objects) != len(doc):
        bad = len(doc) - len(objects)
        return reject(400, f"{bad} array entries are not objects", entries=objects, **common)

    verdict = _Verdict(202, entries=objects, **common)
    if not objects:
        verdict.violations.append("202: empty array (nothing to send)")
    no_message = sum(1 for e in objects if not isinstance(e.get("message"), str))
    if no_message:
        verdict.violations.append(f"202: {no_message} entries without a string 'message'")
    missing: Counter[str] = Counter()
    wrong_type: Counter[str] = Counter()
    for entry in objects:
        for name in RESERVED:
            if name not in entry:
                missing[name] += 1
            elif not isinstance(entry[name], str):
                wrong_type[name] += 1
    for name, n in sorted(wrong_type.items()):
        verdict.violations.append(f"202: {n} entries with a non-string {name!r}")
    verdict.missing = dict(missing)
    verdict.truncated = sum(1 for e in objects if len(orjson.dumps(e)) > MAX_ENTRY_BYTES)
    return verdict


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decode (possibly multi-member) gzip, stopping once more than ``limit`` bytes come out."""
    out = bytearray()
    while data and len(out) < limit:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(data, limit - len(out))
        if len(out) >= limit:
            break
        out += d.flush()
        if not d.eof:
            raise EOFError("gzip stream ends before its end marker")
        data = d.unused_data
    return bytes(out)


# --------------------------------------------------------------------------------------------
# The intake
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # handler threads are still joined by server_close (block_on_close)
    intake: Intake

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients going away mid-request is part of the job; nothing to print


class Intake:
    """``with Intake() as intake:`` (or ``Intake().start()`` ... ``stop()``) serves
    ``POST http://127.0.0.1:<port>/api/v2/logs`` from a background thread."""

    def __init__(self, api_key: str = "test-key", tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with this server context (see ``tests/support/tls.py``)."""
        self.api_key = api_key
        self._tls = tls
        self.events: list[Event] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[str] = []
        self.validations: list[bool] = []  # GET /api/v1/validate: was the key right?
        self.validate_status: int | None = None  # answer every validate call with this
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._script: list[Fault] = []
        self._windows: list[tuple[float, float, Fault]] = []
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("intake already started")
        server = _Server(("127.0.0.1", 0), _Handler)
        if self._tls is not None:  # the handshake happens in the handler's thread
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        server.intake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="intake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections (waking Slow/Hang waits), join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            self._stopping.set()
            conns = list(self._conns)
        server.shutdown()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins handler threads
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("intake not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}{PATH}"

    @property
    def _scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def api_url(self) -> str:
        """The base of the API (``GET {api_url}/api/v1/validate``)."""
        return f"{self._scheme}://127.0.0.1:{self.port}"

    # -- faults --------------------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """The next requests get these outcomes, one each in arrival order, then normal ones
        (appends to what is still scripted)."""
        with self._lock:
            self._script.extend(faults)

    def fail_for(self, seconds: float, fault: Fault) -> None:
        """Every request arriving in the next ``seconds`` (and not scripted) gets ``fault``."""
        now = time.monotonic()
        with self._lock:
            self._windows.append((now, now + seconds, fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._script.clear()
            self._windows.clear()

    def _next_fault(self) -> Fault | None:  # called with the lock held
        if self._script:
            return self._script.pop(0)
        now = time.monotonic()
        self._windows = [w for w in self._windows if w[1] > now]
        for start, end, fault in reversed(self._windows):
            if start <= now < end:
                return fault
        return None

    # -- waiting and asserting -----------------------------------------------------------

    def wait_events(self, count: int, timeout: float) -> list[Event]:
        """A copy of :attr:`events` once at least ``count`` were accepted; IntakeTimeout if
        ``timeout`` seconds pass first."""
        return self._wait(lambda: len(self.events) >= count, timeout, f"{count} events")[0]

    def wait_requests(self, count: int, timeout: float) -> list[RequestRecord]:
        """A copy of :attr:`requests` once at least ``count`` arrived (bodies read)."""
        return self._wait(lambda: len(self.requests) >= count, timeout, f"{count} requests")[1]

    def _wait(
        self, ready: Callable[[], bool], timeout: float, what: str
    ) -> tuple[list[Event], list[RequestRecord]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IntakeTimeout(
                        f"no {what} after {timeout:.2f}s: {len(self.events)} events in "
                        f"{len(self.requests)} requests\n{self._summary()}"
                    )
                self._changed.wait(left)
            return list(self.events), list(self.requests)

    def assert_clean(self) -> None:
        """Raise AssertionError listing the contract breaches seen, if any."""
        with self._lock:
            if self.violations:
                raise AssertionError(
                    "intake contract violations:\n  " + "\n  ".join(self.violations)
                )

    def statuses(self) -> list[int | None]:
        with self._lock:
            return [r.status for r in self.requests]

    def _summary(self) -> str:  # lock held
        return "\n".join(r.summary() for r in self.requests[-20:])

    # -- called from handler threads -----------------------------------------------------

    def _register(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._conns.add(conn)
            return True

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _arrived(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> RequestRecord:
        verdict = check(method, path, headers, body, self.api_key)
        with self._changed:
            seq = len(self.requests)
            record = RequestRecord(
                seq=seq,
                method=method,
                path=path,
                headers=headers,
                gzip=verdict.gzip,
                wire_bytes=len(body),
                raw_bytes=verdict.raw_bytes,
                n_events=len(verdict.entries),
                entries=verdict.entries,
                truncated=verdict.truncated,
                missing=verdict.missing,
                violations=verdict.violations,
                contract_status=verdict.status,
                detail=verdict.detail,
                fault=self._next_fault(),
                received_at=time.monotonic(),
            )
            self.violations.extend(f"#{seq} {method} {path}: {v}" for v in verdict.violations)
            self.requests.append(record)
            self._changed.notify_all()
        return record

    def _decided(self, record: RequestRecord, status: int | None, accept: bool) -> None:
        with self._changed:
            record.status = status
            if accept:
                record.accepted = True
                self.events.extend(record.entries)
            self._changed.notify_all()

    def _finished(self, record: RequestRecord, delivered: bool) -> None:
        with self._changed:
            record.delivered = delivered
            record.finished_at = time.monotonic()
            self._changed.notify_all()


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real intake
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self._registered = self.server.intake._register(self.connection)
        if not self._registered:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def handle(self) -> None:
        if self._registered:
            with contextlib.suppress(OSError):
                super().handle()

    def finish(self) -> None:
        self.server.intake._unregister(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method reaches _serve (and gets 404 unless POST)
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        intake = self.server.intake
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.command == "GET" and self.path.split("?", 1)[0] == VALIDATE_PATH:
            self._validate(intake, headers)
            return
        body = self._read_body(headers)
        if body is None:  # the client went away mid-body
            self.close_connection = True
            return
        record = intake._arrived(self.command, self.path, headers, body)
        fault = record.fault
        status: int | None = record.contract_status
        retry_after: float | None = None
        if isinstance(fault, Status):
            status, retry_after = fault.code, fault.retry_after
        elif isinstance(fault, Slow):
            if intake._stopping.wait(fault.seconds):
                status = None
            elif fault.status != 202:
                status, retry_after = fault.status, fault.retry_after
        elif isinstance(fault, Hang):
            intake._stopping.wait(fault.seconds)
            status = None
        elif isinstance(fault, Drop):
            status = None
        accept = status == 202 and record.contract_status == 202
        intake._decided(record, status, accept)
        delivered = False
        if status is None:
            self.close_connection = True
        else:
            detail = "" if status != record.contract_status else record.detail
            delivered = self._answer(status, retry_after, detail)
        if intake._stopping.is_set():
            self.close_connection = True
        intake._finished(record, delivered)

    def _validate(self, intake: Intake, headers: dict[str, str]) -> None:
        valid = headers.get("dd-api-key") == intake.api_key
        with intake._changed:
            intake.validations.append(valid)
            intake._changed.notify_all()
        status = intake.validate_status or (200 if valid else 403)
        payload = b'{"valid":true}' if status == 200 else b'{"errors":["Forbidden"]}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return self._read_chunked()
            length = int(headers.get("content-length", "0") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            return body if len(body) == length else None
        except (OSError, ValueError):
            return None

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return None
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                return None
            parts.append(chunk)
            self.rfile.readline(65537)  # the CRLF after the chunk

    def _answer(self, status: int, retry_after: float | None, detail: str) -> bool:
        if status == 202:
            payload = b"{}"
        else:
            title = _phrase(status)
            error = {"status": str(status), "title": title}
            if detail:
                error["detail"] = detail
            payload = orjson.dumps({"errors": [error]})
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if retry_after is not None:
                self.send_header("Retry-After", f"{retry_after:g}")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def gzip_body(events: list[Event]) -> bytes:
    """``events`` as the gzipped JSON array a sender posts (a convenience for tests)."""
    return gzip.compress(orjson.dumps(events))

"""A small threaded HTTP CONNECT proxy on 127.0.0.1, for tests.

``with ConnectProxy() as proxy:`` listens on ``proxy.port``; each ``CONNECT host:port`` opens a
TCP connection to the target, answers ``200 Connection established`` and relays bytes both
ways until either side closes. ``ConnectProxy(credentials=("user", "pass"))`` answers 407 to a
CONNECT without the matching ``Proxy-Authorization: Basic`` header; ``refuse = 403`` refuses
every tunnel with that status. Other methods get 405. :attr:`ConnectProxy.tunnels` lists the
targets of the tunnels made, :attr:`ConnectProxy.refused` the statuses of those refused, and
:attr:`ConnectProxy.authorizations` every ``Proxy-Authorization`` value seen and
:attr:`ConnectProxy.upstream_bytes` what clients sent inside the tunnels.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import socketserver
import threading
from typing import Any, Self


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ConnectProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class ConnectProxy:
    """See the module documentation."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.refuse: int | None = None
        self.tunnels: list[tuple[str, int]] = []
        self.refused: list[int] = []
        self.authorizations: list[str] = []
        self.upstream_bytes = bytearray()  # client -> target, inside the tunnels
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.server_address[1])

    def url(self, credentials: tuple[str, str] | None = None) -> str:
        """``http://[user:pass@]127.0.0.1:PORT``."""
        auth = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def _expected(self) -> str | None:
        if self.credentials is None:
            return None
        pair = f"{self.credentials[0]}:{self.credentials[1]}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    rbufsize = 0  # the head is read byte by byte: nothing after it is buffered away

    def handle(self) -> None:
        proxy = self.server.proxy
        proxy._track(self.connection, True)
        try:
            self._handle(proxy)
        except OSError:
            pass
        finally:
            proxy._track(self.connection, False)

    def _handle(self, proxy: ConnectProxy) -> None:
        request = self.rfile.readline(65537).decode("latin-1").split()
        headers: dict[str, str] = {}
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request) != 3 or request[0] != "CONNECT":
            self._answer(405, "Method Not Allowed")
            return
        authorization = headers.get("proxy-authorization")
        with proxy._lock:
            if authorization is not None:
                proxy.authorizations.append(authorization)
        expected = proxy._expected()
        if expected is not None and authorization != expected:
            self._refuse(proxy, 407, "Proxy Authentication Required")
            return
        if proxy.refuse is not None:
            self._refuse(proxy, proxy.refuse, "Forbidden")
            return
        host, _, port = request[1].rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            self._answer(502, "Bad Gateway")
            return
        with proxy._lock:
            proxy.tunnels.append((host, int(port)))
        proxy._track(upstream, True)
        try:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self._relay(upstream)
        finally:
            proxy._track(upstream, False)
            upstream.close()

    def _refuse(self, proxy: ConnectProxy, status: int, phrase: str) -> None:
        with proxy._lock:
            proxy.refused.append(status)
        extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
        self._answer(status, phrase, extra)

    def _answer(self, status: int, phrase: str, extra: str = "") -> None:
        self.wfile.write(
            f"HTTP/1.1 {status} {phrase}\r\n{extra}Content-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        self.wfile.flush()

    def _relay(self, upstream: socket.socket) -> None:
        client = self.connection
        upstream.settimeout(None)
        client.settimeout(None)
        pair = {client: upstream, upstream: client}
        while True:
            ready, _, _ = select.select(list(pair), [], [], 1.0)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    with self.server.proxy._lock:
                        self.server.proxy.upstream_bytes += data
                pair[sock].sendall(data)

"""One line per failed request: ``explain`` on errors raised by real sockets (a closed port, a
silent server, a self-signed certificate, a server that hangs up, a proxy), ``http_failure``
on the bodies intakes answer with."""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from logpipe.sinks.failures import MAX_DETAIL, explain, http_failure
from logpipe.sinks.proxy import Proxy, connection, proxy_for
from tests.support.connect_proxy import ConnectProxy
from tests.support.intake import Intake
from tests.support.tls import openssl_available, self_signed, server_context

KEY = "0123456789abcdef0123456789abcdef"


def closed_port() -> int:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port: int = closed.getsockname()[1]
    return port


def failure_of(request: Callable[[], object]) -> BaseException:
    try:
        request()
    except (OSError, http.client.HTTPException) as error:
        return error
    raise AssertionError("the request did not fail")


def get(url: str, proxy: Proxy | None = None, timeout: float = 5.0) -> Callable[[], object]:
    def request() -> object:
        link = connection(urlsplit(url), proxy, timeout)
        try:
            link.request("GET", "/api/v1/validate", headers={"DD-API-KEY": KEY})
            return link.getresponse().read()
        finally:
            link.close()

    return request


class OneShotServer:
    """Accepts connections on 127.0.0.1 and does ``act`` with each (after reading a little)."""

    def __init__(self, act: Callable[[socket.socket], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port: int = self.listener.getsockname()[1]
        self._act = act
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.recv(65536)
            self._act(conn)

    def close(self) -> None:
        self._done.set()
        self.listener.close()


@pytest.fixture
def server_doing() -> Iterator[Callable[[Callable[[socket.socket], None]], OneShotServer]]:
    servers: list[OneShotServer] = []

    def start(act: Callable[[socket.socket], None]) -> OneShotServer:
        servers.append(OneShotServer(act))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def hang_up(conn: socket.socket) -> None:
    conn.close()


def reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


kept: list[socket.socket] = []


def keep_silent(conn: socket.socket) -> None:
    kept.append(conn)  # open, never answered


@pytest.mark.integration
def test_a_closed_port_is_connection_refused() -> None:
    port = closed_port()
    error = failure_of(get(f"http://127.0.0.1:{port}"))
    assert explain(error, "127.0.0.1", port) == f"127.0.0.1:{port}: connection refused"


@pytest.mark.integration
def test_a_name_that_does_not_resolve_is_named() -> None:
    error = failure_of(get("https://intake.invalid"))
    assert isinstance(error, socket.gaierror)
    line = explain(error, "intake.invalid", 443)
    assert line.startswith("cannot resolve intake.invalid: "), line
    assert line == f"cannot resolve intake.invalid: {error.strerror}"


@pytest.mark.integration
def test_a_silent_server_is_no_answer_within_the_timeout(server_doing) -> None:  # type: ignore[no-untyped-def]
    server = server_doing(keep_silent)
    error = failure_of(get(f"http://127.0.0.1:{server.port}", timeout=0.3))
    assert explain(error, "127.0.0.1", server.port, timeout=0.3) == (
        f"no answer from 127.0.0.1:{server.port} within 0.3 s"
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("act", "said"),
    [
        (hang_up, "closed the connection without answering"),
        (reset, "reset the connection mid-request"),
    ],
)
def test_a_server_hanging_up_mid_request_is_said(server_doing, act, said) -> None:  # type: ignore[no-untyped-def]
    server = server_doing(act)
    error = failure_of(get(f"http://127.0.0.1:{server.port}"))
    assert explain(error, "127.0.0.1", server.port) == f"127.0.0.1:{server.port} {said}"


@pytest.mark.integration
@pytest.mark.skipif(not openssl_available(), reason="the openssl command makes the certificate")
def test_an_untrusted_certificate_is_a_tls_failure(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with Intake(KEY, tls=server_context(cert, key)) as intake:
        port = intake.port
        error = failure_of(get(intake.api_url))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert explain(error, "127.0.0.1", port) == (
        f"TLS with 127.0.0.1:{port} failed: certificate verify failed: self-signed certificate"
    )


@pytest.mark.integration
@pytest.mark.skipif(not openssl_available(), reason="the openssl command makes the certificate")
def test_tls_spoken_to_a_plain_server_is_a_tls_failure() -> None:
    with Intake(KEY) as intake:
        port = intake.port
        error = failure_of(get(intake.api_url.replace("http://", "https://")))
    assert isinstance(error, ssl.SSLError)
    line = explain(error, "127.0.0.1", port)
    assert line.startswith(f"TLS with 127.0.0.1:{port} failed: "), line
    assert "_ssl.c" not in line and "[SSL" not in line


@pytest.mark.integration
def test_proxy_failures_name_the_proxy_never_its_credentials() -> None:
    with Intake(KEY) as intake, ConnectProxy(("user", "s3cret")) as proxy:
        wrong = proxy_for(intake.api_url, {"HTTP_PROXY": proxy.url(("user", "wrong"))})
        assert wrong is not None
        error = failure_of(get(intake.api_url, wrong))
        line = explain(error, "127.0.0.1", intake.port, wrong)
        assert line == f"proxy 127.0.0.1:{proxy.port} refused the tunnel (HTTP 407)"
        port = closed_port()
        down = proxy_for(intake.api_url, {"HTTP_PROXY": f"http://user:s3cret@127.0.0.1:{port}"})
        error = failure_of(get(intake.api_url, down))
        line = explain(error, "127.0.0.1", intake.port, down)
    assert line == f"proxy 127.0.0.1:{port} unreachable (connection refused)"
    assert "s3cret" not in line and "user" not in line


@pytest.mark.integration
def test_a_403_with_a_json_body_is_one_line_with_the_intakes_words() -> None:
    with Intake(KEY) as intake:
        link = http.client.HTTPConnection("127.0.0.1", intake.port, timeout=5)
        link.request("GET", "/api/v1/validate", headers={"DD-API-KEY": "not-the-key"})
        response = link.getresponse()
        body = response.read()
        link.close()
    assert response.status == 403
    assert http_failure(403, "127.0.0.1", body) == "HTTP 403 from 127.0.0.1: Forbidden"


def test_json_api_errors_are_joined() -> None:
    body = (
        b'{"errors":[{"status":"400","title":"Bad Request","detail":"invalid JSON"},'
        b'"and\\nanother"]}'
    )
    assert http_failure(400, "intake.example", body) == (
        "HTTP 400 from intake.example: Bad Request: invalid JSON; and another"
    )


def test_a_text_body_is_cut_to_one_clean_line() -> None:
    body = b"<html>\r\n<b>Service\x1b[31m Unavailable</b>\t" + b"x" * 500 + b"\n</html>"
    line = http_failure(503, "intake.example", body)
    detail = line.removeprefix("HTTP 503 from intake.example: ")
    assert detail.startswith("<html> <b>Service [31m Unavailable</b> xxx")
    assert len(detail) == MAX_DETAIL and detail.endswith("...")
    assert "\n" not in line and "\x1b" not in line and "\t" not in line


def test_an_empty_body_gives_the_status_phrase() -> None:
    assert http_failure(413, "h", b"") == "HTTP 413 from h: Request Entity Too Large"
    assert http_failure(599, "h", b"  ") == "HTTP 599 from h"

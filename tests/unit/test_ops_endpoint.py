"""The --http endpoint on a real socket (127.0.0.1, a free port), answering from fabricated
snapshots, and `logpipe status` asking it."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from logpipe.cli.main import main
from logpipe.ops.endpoint import Endpoint
from logpipe.pipeline.snapshot import Snapshot
from logpipe.problems import SetupError
from tests.unit.test_ops import FAILING, NOW, snapshot

# Integration tier: every test opens sockets.
pytestmark = pytest.mark.integration


class Published:
    """What the follow loop would have published last."""

    def __init__(self) -> None:
        self.latest: Snapshot | None = None


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def endpoint(published: Published) -> Iterator[Endpoint]:
    served = Endpoint("127.0.0.1", 0, threshold=60, clock=lambda: NOW)
    served.serve(lambda: published.latest)
    try:
        yield served
    finally:
        served.close()


def get(
    endpoint: Endpoint, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    host, port = endpoint.address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=10)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_health_follows_the_snapshots(endpoint: Endpoint, published: Published) -> None:
    assert get(endpoint, "/health")[::2] == (200, b'{"status":"starting"}\n')
    published.latest = snapshot()
    status, headers, body = get(endpoint, "/health")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert orjson.loads(body) == {
        "status": "ok",
        "version": "0.1.0",
        "uptime_seconds": 7500.0,
        "snapshot_age_seconds": 0.5,
        "delivered": 12_000,
        "pending": 335,
    }
    published.latest = snapshot(**FAILING)
    status, _, body = get(endpoint, "/health?verbose=1")
    assert status == 503
    assert orjson.loads(body)["status"] == "stuck"
    assert orjson.loads(body)["reason"] == (
        "logs intake: 127.0.0.1:9: connection refused for 75 s, 1,234 events pending"
    )


def test_status_is_the_snapshot_and_the_verdict(endpoint: Endpoint, published: Published) -> None:
    published.latest = snapshot()
    status, headers, body = get(endpoint, "/status")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert orjson.loads(body) == {
        "now": NOW,
        "health": {"status": "ok", "reason": None},
        "snapshot": snapshot(),
    }
    published.latest = snapshot(**FAILING)
    assert get(endpoint, "/status")[0] == 503


def test_metrics_in_both_formats(endpoint: Endpoint, published: Published) -> None:
    published.latest = snapshot()
    status, headers, body = get(endpoint, "/metrics")
    assert (status, headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    assert values["logpipe_lines_read_total"] == 12_345
    assert values["logpipe_events_pending"] == 335
    assert values["process_resident_memory_bytes"] > 0
    status, headers, body = get(
        endpoint, "/metrics", Accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert b"\nlogpipe_lines_read_total 12345.0\n" in body and body.endswith(b"# EOF\n")


def test_other_paths_methods_and_bad_requests(
    endpoint: Endpoint, capfd: pytest.CaptureFixture[str]
) -> None:
    assert get(endpoint, "/")[::2] == (404, b"404 not found: try /health, /metrics, /status\n")
    assert get(endpoint, "/health/x")[0] == 404
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        status, headers, body = get(endpoint, "/health", method)
        assert (status, headers["Allow"], body) == (405, "GET, HEAD", b"405 only GET and HEAD\n")
    status, headers, body = get(endpoint, "/health", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(b'{"status":"starting"}\n')
    host, port = endpoint.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /health HTTP/1.1 extra\r\n\r\n")
        answer = raw.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.0 400 Bad request version ('extra')\r\n")
    assert answer.endswith(b"\r\n\r\n400 Bad request version ('extra')\n")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\n")
        raw.shutdown(socket.SHUT_WR)  # gone before the headers ended
        raw.makefile("rb").read()
    assert get(endpoint, "/health")[0] == 200
    assert capfd.readouterr() == ("", "")  # no access log, no traceback


def test_a_snapshot_that_cannot_be_read_is_one_line(published: Published) -> None:
    def broken() -> Snapshot | None:
        raise RuntimeError("no snapshot\nsecond line")

    served = Endpoint("127.0.0.1", 0, threshold=60)
    served.serve(broken)
    try:
        assert get(served, "/health")[::2] == (500, b"500 RuntimeError: no snapshot\n")
    finally:
        served.close()


def test_a_port_in_use_is_one_line(endpoint: Endpoint) -> None:
    host, port = endpoint.address.rsplit(":", 1)
    with pytest.raises(SetupError) as refused:
        Endpoint(host, int(port), threshold=60)
    assert str(refused.value) == f"cannot listen on {endpoint.address}: address already in use"
    with pytest.raises(SetupError) as unknown:
        Endpoint("no-such-host.invalid", 8686, threshold=60)
    assert str(unknown.value).startswith("cannot listen on no-such-host.invalid:8686: ")


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        served = Endpoint("::1", 0, threshold=60, clock=lambda: NOW)
    except SetupError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    served.serve(lambda: snapshot(**FAILING))
    try:
        assert served.address.startswith("[::1]:")
        assert get(served, "/health")[0] == 503
        assert main(["status", "--http", served.address]) == 1
    finally:
        served.close()


# -- logpipe status ----------------------------------------------------------------------------


def test_status_command_exits_by_health(
    endpoint: Endpoint, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    published.latest = snapshot()
    assert main(["status", "--http", endpoint.address]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("logpipe 0.1.0\n=============\n  Health:            ok\n")
    assert "  /var/log/app/access.log  access  " in out and err == ""
    published.latest = snapshot(**FAILING)
    assert main(["status", "--http", endpoint.address, "--json"]) == 1
    out, _ = capsys.readouterr()
    answer: dict[str, Any] = orjson.loads(out)
    assert answer["health"]["status"] == "stuck" and answer["snapshot"] == snapshot(**FAILING)
    port = endpoint.address.rsplit(":", 1)[1]
    assert main(["status", "--http", port]) == 1  # PORT alone: 127.0.0.1


def test_status_command_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: refused
        assert main(["status", "--http", f":{port}"]) == 2
    assert capsys.readouterr() == (
        "",
        f"logpipe: error: no logpipe answers at 127.0.0.1:{port} (connection refused); "
        "is it running with --http?\n",
    )
    assert main(["status", "--http", "1:2:3"]) == 2
    assert capsys.readouterr().err == (
        "logpipe: error: --http: write an IPv6 address in brackets, as in [::1]:PORT, not '1:2:3'\n"
    )


def test_status_command_asking_something_else(capsys: pytest.CaptureFixture[str]) -> None:
    class NotLogpipe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), NotLogpipe) as server:
        Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        try:
            assert main(["status", "--http", f"127.0.0.1:{port}"]) == 2
        finally:
            server.shutdown()
    assert capsys.readouterr().err == (
        f"logpipe: error: 127.0.0.1:{port} answered GET /status with HTTP 200, not logpipe's "
        "status; is --http right?\n"
    )

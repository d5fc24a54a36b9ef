"""The Datadog sink and the API key check through a real CONNECT proxy on 127.0.0.1: tunnels,
Basic credentials, refusals said in one line naming the proxy, secrets never shown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logpipe.sinks import Interrupted, datadog_logs
from logpipe.sinks.datadog_logs import DatadogLogsSink, check_api_key
from logpipe.sinks.proxy import proxy_for
from tests.support.connect_proxy import ConnectProxy
from tests.support.intake import Intake

# Integration tier: sockets (an intake and a proxy on 127.0.0.1).
pytestmark = pytest.mark.integration

KEY = "proxy-test-key-0123456789"
USER, PASSWORD = "alice", "pr0xy-s3cr3t"


@pytest.fixture
def intake() -> Iterator[Intake]:
    with Intake(api_key=KEY) as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy(credentials=(USER, PASSWORD)) as server:
        yield server


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datadog_logs, "FIRST_DELAY", 0.05)


def event(n: int) -> dict[str, object]:
    return {"message": f"line {n}", "ddsource": "g", "service": "s", "hostname": "h", "ddtags": ""}


def through(
    intake: Intake,
    proxy_url: str,
    tmp_path: Path,
    warnings: list[str],
    stop: threading.Event | None = None,
) -> DatadogLogsSink:
    return DatadogLogsSink(
        intake.url,
        KEY,
        dead_letters=tmp_path / "dead.ndjson",
        stop=stop or threading.Event(),
        warn=warnings.append,
        flush_seconds=60,
        proxy=proxy_for(intake.url, {"HTTP_PROXY": proxy_url}),
    )


def assert_no_secrets(text: str) -> None:
    for secret in (KEY, PASSWORD, "YWxpY2U6cHIweHktczNjcjN0"):  # base64 of alice:pr0xy-s3cr3t
        assert secret not in text


def test_delivery_through_the_tunnel_with_credentials(
    intake: Intake, proxy: ConnectProxy, tmp_path: Path
) -> None:
    warnings: list[str] = []
    logs = through(intake, proxy.url((USER, PASSWORD)), tmp_path, warnings)
    try:
        for n in range(5):
            logs.send([(event(n), n)], "f", n)  # type: ignore[list-item]
        assert len(logs.drain()) == 5
        logs.send([(event(5), 5)], "f", 5)  # type: ignore[list-item]
        assert len(logs.drain()) == 1  # the same tunnel, kept alive
    finally:
        logs.close()
    assert [e["message"] for e in intake.events] == [f"line {n}" for n in range(6)]
    assert proxy.tunnels == [("127.0.0.1", intake.port)]
    assert proxy.refused == [] and warnings == []
    intake.assert_clean()


@pytest.mark.parametrize("refusal", [407, 403])
def test_a_refusing_proxy_is_one_line_and_retried(
    intake: Intake, proxy: ConnectProxy, tmp_path: Path, refusal: int
) -> None:
    warnings: list[str] = []
    url = proxy.url((USER, "wrong-" + PASSWORD) if refusal == 407 else (USER, PASSWORD))
    if refusal == 403:
        proxy.refuse = 403
    logs = through(intake, url, tmp_path, warnings)

    def relent() -> None:
        proxy.credentials, proxy.refuse = None, None

    threading.Timer(0.3, relent).start()
    try:
        logs.send([(event(1), 1)], "f", 1)  # type: ignore[list-item]
        assert len(logs.drain()) == 1
    finally:
        logs.close()
    assert proxy.refused[0] == refusal
    assert warnings[0].startswith(
        f"logs intake 127.0.0.1:{intake.port}: proxy 127.0.0.1:{proxy.port} refused the tunnel "
        f"(HTTP {refusal}); "
        "retrying in "
    )
    assert len(warnings) == 1 and len(intake.events) == 1
    assert_no_secrets("\n".join(warnings))


def test_an_unreachable_proxy_is_one_line(intake: Intake, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    warnings: list[str] = []
    stop = threading.Event()
    stop.set()  # one try, then Interrupted
    logs = through(intake, f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", tmp_path, warnings, stop)
    logs.send([(event(1), 1)], "f", 1)  # type: ignore[list-item]
    with pytest.raises(Interrupted) as raised:
        logs.drain()
    logs.close()
    assert warnings == [
        f"logs intake 127.0.0.1:{intake.port}: proxy 127.0.0.1:{port} unreachable "
        "(Connection refused); " + warnings[0].split("; ", 1)[1]
    ]
    assert_no_secrets("\n".join(warnings) + str(raised.value) + repr(raised.value))
    assert intake.events == []


def test_the_key_check_goes_through_the_proxy(intake: Intake, proxy: ConnectProxy) -> None:
    via = proxy_for(intake.api_url, {"HTTP_PROXY": proxy.url((USER, PASSWORD))})
    assert check_api_key(intake.api_url, KEY, via) == (200, "")
    assert check_api_key(intake.api_url, "not-the-key", via) == (403, "")
    assert intake.validations == [True, False]
    assert len(proxy.tunnels) == 2
    wrong = proxy_for(intake.api_url, {"HTTP_PROXY": proxy.url((USER, "nope"))})
    status, reason = check_api_key(intake.api_url, KEY, wrong)
    assert (status, reason) == (None, f"proxy 127.0.0.1:{proxy.port} refused the tunnel (HTTP 407)")
    intake.validate_status = 503
    assert check_api_key(intake.api_url, KEY, via) == (503, "")
    assert intake.requests == []  # validate calls are not logs requests

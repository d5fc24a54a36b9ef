"""Follow mode (and replay) shipping through a real CONNECT proxy to the intake stand-in, and the
API key check at start: every line once through the tunnels, NO_PROXY, refusals said in one
line, a refused key stopping logpipe before it reads, secrets never on stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.follow.harness import REPO_ROOT, Accounting, FollowEnv, create_empty, wait_until
from tests.support.connect_proxy import ConnectProxy
from tests.support.intake import Intake
from tests.support.tls import openssl_available, self_signed, server_context

# Integration tier: logpipe subprocesses, a proxy and an intake on 127.0.0.1.
pytestmark = pytest.mark.integration

KEY = "e2e-proxy-key-5f3a9c"
USER, PASSWORD = "alice", "pr0xy-s3cr3t"
BASIC = "YWxpY2U6cHIweHktczNjcjN0"  # base64 of alice:pr0xy-s3cr3t
PROXY_VARIABLES = (
    "DD_PROXY_HTTPS",
    "DD_PROXY_HTTP",
    "DD_PROXY_NO_PROXY",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        monkeypatch.setenv("LOGPIPE_API_URL", server.api_url)  # check the key with the stand-in
        yield server


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy(credentials=(USER, PASSWORD)) as server:
        yield server


def datadog(intake: Intake) -> list[str]:
    return ["--output", "datadog", "--intake-url", intake.url]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_secrets(text: str) -> None:
    for secret in (KEY, PASSWORD, BASIC):
        assert secret not in text, f"{secret!r} on stderr:\n{text}"


def deliver(follow_env: FollowEnv, intake: Intake, count: int) -> tuple[Accounting, str]:
    """Follow a log a writer fills with ``count`` lines until all reached the intake; stop."""
    access = follow_env.log("access.log")
    create_empty(access)
    follow_env.logpipe(access=[access], extra_args=datadog(intake))
    stream = follow_env.writer(access, rate=2000, count=count).wait()

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 60, interval=0.2, what="every line delivered to the intake")
    run = follow_env.runs[-1]
    assert run.stop() == 0
    return Accounting.of(intake.events, [stream]), run.stderr_text()


def test_every_line_once_through_an_authenticating_proxy(
    follow_env: FollowEnv, intake: Intake, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url((USER, PASSWORD)))
    acc, stderr = deliver(follow_env, intake, 3000)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert intake.validations == [True]  # the key was checked, through the proxy
    assert len(proxy.tunnels) >= 2 and set(proxy.tunnels) == {("127.0.0.1", intake.port)}
    assert KEY.encode() in proxy.upstream_bytes  # plain http: the tunnel carries the request
    assert proxy.refused == []
    assert "could not check" not in stderr and "refused" not in stderr
    assert_no_secrets(stderr)
    intake.assert_clean()


def test_a_refusing_proxy_is_one_line_then_delivery_goes_on(
    follow_env: FollowEnv, intake: Intake, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong proxy credentials: the key check warns and goes on, the intake's batches are
    refused (407) and retried, said in one line naming the proxy; once the proxy lets them
    through, every line arrives once."""
    monkeypatch.setenv("DD_PROXY_HTTP", proxy.url((USER, "wrong-" + PASSWORD)))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # DD_PROXY_HTTP takes precedence
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access], extra_args=datadog(intake))
    stream = follow_env.writer(access, rate=2000, count=1000).wait()
    named = f"proxy 127.0.0.1:{proxy.port} refused the tunnel (HTTP 407)"
    wait_until(
        lambda: f"logs intake 127.0.0.1:{intake.port}: {named}" in run.stderr_text(),
        30,
        what="the refusal",
    )
    assert intake.events == []
    proxy.credentials = None  # the proxy relents

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 60, interval=0.2, what="every line delivered after the refusal")
    assert run.stop() == 0
    acc = Accounting.of(intake.events, [stream])
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    stderr = run.stderr_text()
    assert f"could not check DD_API_KEY with {intake.api_url} ({named}); going on" in stderr
    refusals = [line for line in stderr.splitlines() if named in line]
    assert len(refusals) == 2, stderr  # the check's warning, the intake's first retry line
    assert_no_secrets(stderr)
    intake.assert_clean()


def test_no_proxy_reaches_the_intake_directly(
    follow_env: FollowEnv, intake: Intake, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url((USER, PASSWORD)))
    monkeypatch.setenv("NO_PROXY", f"example.org,127.0.0.1:{intake.port}")
    acc, stderr = deliver(follow_env, intake, 500)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert proxy.tunnels == [] and proxy.authorizations == []
    assert intake.validations == [True]
    assert_no_secrets(stderr)


def test_a_refused_key_stops_follow_before_anything_is_read(
    follow_env: FollowEnv, intake: Intake, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DD_API_KEY", "not-" + KEY)
    monkeypatch.setenv("HTTP_PROXY", proxy.url((USER, PASSWORD)))
    access = follow_env.log("access.log")
    access.write_bytes(
        b'127.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 2 "-" "-"\n'
    )
    run = follow_env.logpipe(access=[access], extra_args=datadog(intake))
    assert wait_until(lambda: run.returncode is not None, 30, what="the exit") is not None
    assert run.returncode == 2
    stderr = run.stderr_text()
    assert stderr == (f"logpipe: error: DD_API_KEY was refused by {intake.api_url} (HTTP 403)\n"), (
        stderr
    )
    assert intake.validations == [False] and intake.requests == []
    assert proxy.tunnels == [("127.0.0.1", intake.port)]  # the check went through the proxy
    assert not run.output.exists() or run.output.read_bytes() == b""
    assert not list(follow_env.state.glob("*checkpoint*"))
    assert "not-" + KEY not in stderr


def test_a_refused_key_stops_replay(intake: Intake, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b'127.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 2 "-" "-"\n')
    done = subprocess.run(
        [
            *(sys.executable, "-m", "logpipe", "replay", "--access", str(log)),
            *datadog(intake),
            *("--state-dir", str(tmp_path / "state"), "--max-age", "none"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "DD_API_KEY": "wrong-key"},
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"logpipe: error: DD_API_KEY was refused by {intake.api_url} (HTTP 403)\n"
    )
    assert intake.requests == []


def test_an_unreachable_key_check_warns_and_delivery_goes_on(
    follow_env: FollowEnv, intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("LOGPIPE_API_URL", f"http://127.0.0.1:{port}")
    acc, stderr = deliver(follow_env, intake, 500)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert (
        f"logpipe: could not check DD_API_KEY with http://127.0.0.1:{port} "
        "(Connection refused); going on\n"
    ) in stderr
    assert intake.validations == []
    assert_no_secrets(stderr)


def test_a_key_check_answering_5xx_warns_and_delivery_goes_on(
    follow_env: FollowEnv, intake: Intake
) -> None:
    intake.validate_status = 503
    acc, stderr = deliver(follow_env, intake, 200)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert f"could not check DD_API_KEY with {intake.api_url} (HTTP 503); going on" in stderr


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
def test_an_https_intake_through_the_proxy(
    follow_env: FollowEnv,
    proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """HTTPS end to end inside the tunnel: logpipe verifies the intake's certificate (trusted
    through SSL_CERT_FILE) for the intake's host while connected to the proxy."""
    cert, key = self_signed(tmp_path)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("DD_API_KEY", KEY)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url((USER, PASSWORD)))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for an https URL
    with Intake(api_key=KEY, tls=server_context(cert, key)) as intake:
        monkeypatch.setenv("LOGPIPE_API_URL", intake.api_url)
        assert intake.url.startswith("https://")
        port = intake.port
        acc, stderr = deliver(follow_env, intake, 500)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert intake.validations == [True]
    assert len(proxy.tunnels) >= 2 and set(proxy.tunnels) == {("127.0.0.1", port)}
    assert proxy.upstream_bytes and KEY.encode() not in proxy.upstream_bytes  # TLS inside
    assert "could not check" not in stderr
    assert_no_secrets(stderr)
    intake.assert_clean()

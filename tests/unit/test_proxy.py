"""Which proxy reaches the intake: variables and their precedence, NO_PROXY, credentials."""

from __future__ import annotations

import base64
import http.client
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from logpipe.problems import SetupError
from logpipe.sinks.failures import explain
from logpipe.sinks.proxy import Proxy, bypassed, connection, proxy_for

INTAKE = "https://http-intake.logs.datadoghq.com/api/v2/logs"


def test_no_variable_no_proxy() -> None:
    assert proxy_for(INTAKE, {}) is None
    assert proxy_for(INTAKE, {"HTTPS_PROXY": "  "}) is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HTTPS_PROXY": "http://upper:1"}, ("upper", 1)),
        ({"https_proxy": "http://lower:2"}, ("lower", 2)),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, ("lower", 2)),
        (
            {"DD_PROXY_HTTPS": "http://dd:3", "https_proxy": "http://lower:2", "HTTPS_PROXY": "x"},
            ("dd", 3),
        ),
        ({"HTTP_PROXY": "http://plain:4"}, None),  # an https URL ignores HTTP_PROXY
        ({"HTTPS_PROXY": "proxy.internal"}, ("proxy.internal", 80)),  # no scheme, no port
    ],
)
def test_precedence_for_an_https_intake(
    environ: dict[str, str], expected: tuple[str, int] | None
) -> None:
    proxy = proxy_for(INTAKE, environ)
    assert (None if proxy is None else (proxy.host, proxy.port)) == expected


def test_an_http_intake_takes_http_proxy() -> None:
    url = "http://127.0.0.1:8080/api/v2/logs"
    assert proxy_for(url, {"HTTPS_PROXY": "http://s:1"}) is None
    assert proxy_for(url, {"HTTP_PROXY": "http://p:2", "HTTPS_PROXY": "http://s:1"}) == Proxy(
        "p", 2
    )
    assert proxy_for(url, {"DD_PROXY_HTTP": "http://dd:3", "http_proxy": "http://p:2"}) == Proxy(
        "dd", 3
    )


@pytest.mark.parametrize(
    ("host", "port", "entries", "expected"),
    [
        ("http-intake.logs.datadoghq.com", 443, ["*"], True),
        ("http-intake.logs.datadoghq.com", 443, ["datadoghq.com"], True),
        ("http-intake.logs.datadoghq.com", 443, [".datadoghq.com"], True),
        ("http-intake.logs.datadoghq.com", 443, ["*.datadoghq.com"], True),
        ("datadoghq.com", 443, [".datadoghq.com"], True),
        ("notdatadoghq.com", 443, ["datadoghq.com"], False),
        ("HTTP-Intake.Logs.DatadogHQ.com", 443, ["DATADOGHQ.COM"], True),
        ("api.datadoghq.eu", 443, ["datadoghq.com", "example.org"], False),
        ("api.datadoghq.com", 443, ["datadoghq.com:443"], True),
        ("api.datadoghq.com", 443, ["datadoghq.com:8443"], False),
        ("127.0.0.1", 8080, ["127.0.0.1"], True),
        ("127.0.0.1", 8080, ["127.0.0.1:8080"], True),
        ("127.0.0.1", 8080, ["127.0.0.1:9090"], False),
        ("127.0.0.1", 8080, ["127.0.0.0/8"], True),
        ("10.1.2.3", 80, ["127.0.0.0/8"], False),
        ("::1", 443, ["::1"], True),
        ("::1", 443, ["[::1]:443"], True),
        ("::1", 443, ["[::1]:80"], False),
        ("127.0.0.1", 80, ["0.1"], False),  # no suffix matching for addresses
        ("example.com", 80, [], False),
    ],
)
def test_no_proxy_matching(host: str, port: int, entries: list[str], expected: bool) -> None:
    assert bypassed(host, port, entries) is expected


def test_no_proxy_variables() -> None:
    proxy = {"HTTPS_PROXY": "http://p:1"}
    assert proxy_for(INTAKE, {**proxy, "NO_PROXY": "example.org, datadoghq.com"}) is None
    assert proxy_for(INTAKE, {**proxy, "no_proxy": "datadoghq.com"}) is None
    assert proxy_for(INTAKE, {**proxy, "DD_PROXY_NO_PROXY": "a.org datadoghq.com"}) is None
    assert proxy_for(INTAKE, {**proxy, "NO_PROXY": "datadoghq.com:80"}) == Proxy("p", 1)
    # no_proxy (lower case) is read first, as for the proxy variables
    assert proxy_for(INTAKE, {**proxy, "no_proxy": "x.org", "NO_PROXY": "*"}) == Proxy("p", 1)


def test_credentials_become_a_basic_header_and_stay_out_of_sight() -> None:
    proxy = proxy_for(INTAKE, {"HTTPS_PROXY": "http://us%40er:p%3Ass@proxy:3128"})
    assert proxy is not None
    assert proxy.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert (proxy.host, proxy.port, proxy.name) == ("proxy", 3128, "proxy:3128")
    assert "p:ss" not in repr(proxy) and "p%3Ass" not in repr(proxy)
    assert "cDpzcw" not in repr(proxy) and proxy.authorization not in repr(proxy)


@pytest.mark.parametrize(
    "value",
    [
        "https://alice:s3cr3t@proxy:3128",
        "socks5://alice:s3cr3t@proxy:1080",
        "http://alice:s3cr3t@:99x",
    ],
)
def test_an_unusable_proxy_url_names_the_variable_not_its_value(value: str) -> None:
    with pytest.raises(SetupError) as raised:
        proxy_for(INTAKE, {"DD_PROXY_HTTPS": value})
    assert str(raised.value).startswith("DD_PROXY_HTTPS")
    assert "s3cr3t" not in str(raised.value) and "alice" not in str(raised.value)


def test_connections_tunnel_through_the_proxy() -> None:
    proxy = Proxy("proxy", 3128, "Basic abc")
    https = connection(urlsplit(INTAKE), proxy, 5.0)
    assert isinstance(https, http.client.HTTPSConnection)
    assert (https.host, https.port) == ("proxy", 3128)
    assert (https._tunnel_host, https._tunnel_port) == ("http-intake.logs.datadoghq.com", 443)  # type: ignore[attr-defined]
    assert https._tunnel_headers == {"Proxy-Authorization": "Basic abc"}  # type: ignore[attr-defined]
    plain = connection(urlsplit("http://127.0.0.1:8080/x"), Proxy("proxy", 3128), 5.0)
    assert type(plain) is http.client.HTTPConnection
    assert (plain._tunnel_host, plain._tunnel_port) == ("127.0.0.1", 8080)  # type: ignore[attr-defined]
    assert plain._tunnel_headers == {}  # type: ignore[attr-defined]
    direct = connection(urlsplit(INTAKE), None, 5.0)
    assert (direct.host, direct.port, direct._tunnel_host) == (  # type: ignore[attr-defined]
        "http-intake.logs.datadoghq.com",
        443,
        None,
    )


def test_failures_the_proxy_caused_are_said_by_its_name() -> None:
    proxy = Proxy("proxy", 3128, "Basic c2VjcmV0")
    refused = OSError("Tunnel connection failed: 407 Proxy Authentication Required")
    refusal = "proxy proxy:3128 refused the tunnel (HTTP 407)"
    assert explain(refused, "intake", 443, proxy) == refusal
    down = ConnectionRefusedError(111, "Connection refused")
    unreachable = "proxy proxy:3128 unreachable (connection refused)"
    assert explain(down, "intake", 443, proxy) == unreachable
    assert explain(ssl.SSLError("bad cert"), "intake", 443, proxy) == (
        "TLS with intake:443 failed: bad cert (through proxy proxy:3128)"
    )
    assert explain(down, "intake", 443) == "intake:443: connection refused"  # no tunnel involved


@pytest.mark.parametrize(
    ("intake", "api", "site", "expected"),
    [
        (None, None, None, "https://api.datadoghq.com"),
        (None, None, "datadoghq.eu", "https://api.datadoghq.eu"),
        (
            "https://http-intake.logs.us5.datadoghq.com/api/v2/logs",
            None,
            "datadoghq.eu",
            "https://api.us5.datadoghq.com",
        ),
        ("http://127.0.0.1:9/api/v2/logs", None, "datadoghq.eu", None),
        ("http://127.0.0.1:9/api/v2/logs", "http://127.0.0.1:9", None, "http://127.0.0.1:9"),
        (None, "https://api.example", None, "https://api.example"),
    ],
)
def test_where_the_key_is_checked(
    intake: str | None,
    api: str | None,
    site: str | None,
    expected: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """DD_SITE's API; with --intake-url, the API of the site it names, or nothing (another
    intake: its API is unknown) unless an API URL is given."""
    from logpipe.cli.outputs import OutputSettings, key_check_url

    if site is None:
        monkeypatch.delenv("DD_SITE", raising=False)
    else:
        monkeypatch.setenv("DD_SITE", site)
    settings = OutputSettings("datadog", intake, tmp_path, api_url=api)
    assert key_check_url(settings) == expected


def test_a_skipped_check_is_a_debug_note(tmp_path: Path) -> None:
    from logpipe.cli.outputs import OutputSettings, check_key

    notes: list[str] = []
    intake = "http://127.0.0.1:9/api/v2/logs"
    check_key(OutputSettings("datadog", intake, tmp_path), "k", notes.append)
    assert notes == []
    check_key(OutputSettings("datadog", intake, tmp_path, debug=True), "k", notes.append)
    assert len(notes) == 1 and notes[0].startswith("debug: DD_API_KEY not checked")

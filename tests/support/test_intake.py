"""The local logs intake stand-in, driven by a real HTTP client over loopback."""

from __future__ import annotations

import gzip
import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.support.intake import (
    MAX_ENTRIES,
    MAX_PAYLOAD_BYTES,
    Drop,
    Hang,
    Intake,
    IntakeTimeout,
    Slow,
    Status,
)

# Integration tier: the intake is an HTTP server on a local socket.
pytestmark = pytest.mark.integration

KEY = "test-key"


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "message": f"line {i}",
        "ddsource": "gunicorn",
        "service": "web",
        "hostname": "host-1",
        "ddtags": "env:test,version:1",
        **extra,
    }


def post(
    url: str,
    payload: Any = None,
    *,
    raw: bytes | None = None,
    key: str | None = KEY,
    gzipped: bool = True,
    content_type: str = "application/json",
    method: str = "POST",
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib; (status, headers with lower-cased names, body) even for 4xx/5xx."""
    body = raw if raw is not None else orjson.dumps(payload)
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["DD-API-KEY"] = key
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def poll_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(interval)


@pytest.fixture
def intake() -> Iterator[Intake]:
    with Intake(api_key=KEY) as server:
        yield server


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


def test_accepts_gzip_and_identity(intake: Intake) -> None:
    assert intake.url.startswith("http://127.0.0.1:") and intake.url.endswith("/api/v2/logs")
    status, headers, body = post(intake.url, [event(0), event(1)])
    assert (status, body, headers["content-type"]) == (202, b"{}", "application/json")
    status, _, body = post(intake.url, [event(2)], gzipped=False)
    assert (status, body) == (202, b"{}")

    assert [e["message"] for e in intake.events] == ["line 0", "line 1", "line 2"]
    first, second = intake.requests
    assert (first.status, first.gzip, first.n_events, first.accepted) == (202, True, 2, True)
    assert (second.status, second.gzip, second.n_events) == (202, False, 1)
    assert first.raw_bytes == len(orjson.dumps([event(0), event(1)])) < first.wire_bytes + 200
    assert first.headers["dd-api-key"] == KEY and first.delivered
    assert first.missing == {} and first.truncated == 0
    intake.assert_clean()


def test_wrong_or_missing_key_is_403_and_a_violation(intake: Intake) -> None:
    assert post(intake.url, [event(0)], key="nope")[0] == 403
    assert post(intake.url, [event(1)], key=None)[0] == 403
    assert intake.events == []
    assert intake.statuses() == [403, 403]
    assert len(intake.violations) == 2 and "wrong DD-API-KEY" in intake.violations[0]
    assert "no DD-API-KEY" in intake.violations[1]
    with pytest.raises(AssertionError, match="DD-API-KEY"):
        intake.assert_clean()


@pytest.mark.parametrize(
    ("raw", "content_type", "why"),
    [
        (b'{"message": "not in an array"}', "application/json", "not an array"),
        (b"[1, 2]", "application/json", "not objects"),
        (b"[{]", "application/json", "not valid JSON"),
        (b'[{"message": "x"}]', "text/plain", "Content-Type"),
    ],
)
def test_bad_payloads_are_400(intake: Intake, raw: bytes, content_type: str, why: str) -> None:
    status, _, body = post(intake.url, raw=raw, content_type=content_type)
    assert status == 400
    assert orjson.loads(body)["errors"][0]["status"] == "400"
    assert intake.events == [] and intake.requests[0].contract_status == 400
    assert len(intake.violations) == 1 and why in intake.violations[0]


def test_bad_gzip_and_unknown_encoding_are_400(intake: Intake) -> None:
    req = urllib.request.Request(
        intake.url,
        data=b"not gzip at all",
        headers={"DD-API-KEY": KEY, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
    err.value.close()
    req.headers["Content-encoding"] = "br"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
    err.value.close()
    assert len(intake.violations) == 2


def test_wrong_path_or_method_is_404(intake: Intake) -> None:
    assert post(intake.url.replace("/v2/", "/v1/"), [event(0)])[0] == 404
    assert post(intake.url, [event(0)], method="PUT")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(intake.url, timeout=5)  # GET
    assert err.value.code == 404
    err.value.close()
    assert intake.statuses() == [404, 404, 404] and len(intake.violations) == 3


def test_entry_count_limit(intake: Intake) -> None:
    assert post(intake.url, [event(i) for i in range(MAX_ENTRIES)])[0] == 202
    assert post(intake.url, [event(i) for i in range(MAX_ENTRIES + 1)])[0] == 413
    assert len(intake.events) == MAX_ENTRIES
    assert intake.requests[1].n_events == MAX_ENTRIES + 1 and not intake.requests[1].accepted
    assert len(intake.violations) == 1 and "1001 entries" in intake.violations[0]


def test_payload_size_limit_counts_uncompressed_bytes(intake: Intake) -> None:
    # One entry padded so the array is exactly the limit: accepted, and counted as truncated.
    pad = MAX_PAYLOAD_BYTES - len(orjson.dumps([{"message": ""}]))
    exact = [{"message": "x" * pad}]
    assert len(orjson.dumps(exact)) == MAX_PAYLOAD_BYTES
    assert post(intake.url, exact)[0] == 202
    assert intake.requests[0].truncated == 1 and intake.requests[0].raw_bytes == MAX_PAYLOAD_BYTES
    # One byte more is 413, gzipped (tiny on the wire) or not.
    over = [{"message": "x" * (pad + 1)}]
    assert post(intake.url, over)[0] == 413
    assert intake.requests[1].wire_bytes < 100_000
    assert post(intake.url, over, gzipped=False)[0] == 413
    assert len(intake.events) == 1
    assert intake.statuses() == [202, 413, 413] and len(intake.violations) == 2


def test_entry_checks_are_recorded(intake: Intake) -> None:
    entries = [{"message": "ok"}, {"msg": "no message"}, event(2, ddtags=["env:test"])]
    assert post(intake.url, entries)[0] == 202  # the real intake accepts them
    assert len(intake.events) == 3
    record = intake.requests[0]
    assert record.missing == {"ddsource": 2, "service": 2, "hostname": 2, "ddtags": 2}
    assert any("without a string 'message'" in v for v in intake.violations)
    assert any("non-string 'ddtags'" in v for v in intake.violations)
    assert post(intake.url, [])[0] == 202
    assert "empty array" in intake.violations[-1]


def test_keep_alive_and_chunked_bodies(intake: Intake) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", intake.port, timeout=5)
    headers = {"DD-API-KEY": KEY, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    try:
        for i in range(3):
            conn.request("POST", "/api/v2/logs", gzip.compress(orjson.dumps([event(i)])), headers)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (202, b"{}")
        blob = gzip.compress(orjson.dumps([event(3)]))
        chunks = iter([blob[:10], blob[10:]])
        conn.request("POST", "/api/v2/logs", chunks, headers, encode_chunked=True)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (202, b"{}")
    finally:
        conn.close()
    assert [e["message"] for e in intake.events] == [f"line {i}" for i in range(4)]
    intake.assert_clean()


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def test_scripted_faults_in_order_then_normal(intake: Intake) -> None:
    intake.script(Status(503, retry_after=2), Status(429, retry_after=0.25), Status(413))
    results = [post(intake.url, [event(i)]) for i in range(4)]
    assert [r[0] for r in results] == [503, 429, 413, 202]
    assert results[0][1]["retry-after"] == "2" and results[1][1]["retry-after"] == "0.25"
    assert "retry-after" not in results[2][1]
    assert orjson.loads(results[0][2]) == {
        "errors": [{"status": "503", "title": "Service Unavailable"}]
    }
    assert [e["message"] for e in intake.events] == ["line 3"]  # faulted events not recorded
    assert [r.fault for r in intake.requests] == [
        Status(503, 2),
        Status(429, 0.25),
        Status(413),
        None,
    ]
    assert intake.requests[0].n_events == 1 and intake.requests[0].entries == [event(0)]
    intake.assert_clean()  # injected faults are not the client's breaches


def test_fail_for_window(intake: Intake) -> None:
    window = 0.4
    started = time.monotonic()
    intake.fail_for(window, Status(500))
    assert post(intake.url, [event(0)])[0] == 500
    poll_until(lambda: post(intake.url, [event(1)])[0] == 202, timeout=5.0)
    assert time.monotonic() - started >= window
    assert set(intake.statuses()[:-1]) == {500} and intake.statuses()[-1] == 202
    assert [e["message"] for e in intake.events] == ["line 1"]


def test_script_comes_before_window(intake: Intake) -> None:
    intake.fail_for(30, Status(503))
    intake.script(Status(408))
    assert [post(intake.url, [event(i)])[0] for i in range(2)] == [408, 503]
    intake.clear_faults()
    assert post(intake.url, [event(2)])[0] == 202


def test_drop_is_a_connection_error(intake: Intake) -> None:
    intake.script(Drop())
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        post(intake.url, [event(0)])
    assert post(intake.url, [event(1)])[0] == 202
    dropped = intake.requests[0]
    assert (dropped.status, dropped.fault, dropped.n_events) == (None, Drop(), 1)
    assert [e["message"] for e in intake.events] == ["line 1"]


def test_slow_delays_the_answer(intake: Intake) -> None:
    intake.script(Slow(0.3), Slow(0.2, status=503, retry_after=1))
    started = time.monotonic()
    assert post(intake.url, [event(0)])[0] == 202
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    status, headers, _ = post(intake.url, [event(1)])
    assert (status, headers["retry-after"]) == (503, "1")
    assert time.monotonic() - started >= 0.2
    assert [e["message"] for e in intake.events] == ["line 0"]


def test_hang_times_the_client_out_and_stop_is_fast() -> None:
    intake = Intake(api_key=KEY).start()
    idle = http.client.HTTPConnection("127.0.0.1", intake.port, timeout=5)
    try:
        intake.script(Hang(30))
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            post(intake.url, [event(0)], timeout=0.3)
        assert intake.wait_requests(1, timeout=2)[0].status is None
        # An idle keep-alive connection must not hold stop() up either.
        headers = {"DD-API-KEY": KEY, "Content-Type": "application/json"}
        idle.request("POST", "/api/v2/logs", orjson.dumps([event(1)]), headers)
        assert idle.getresponse().read() and intake.wait_requests(2, timeout=2)
    finally:
        started = time.monotonic()
        intake.stop()
        stopped_in = time.monotonic() - started
        idle.close()
    assert stopped_in < 1.0
    assert intake.requests[0].finished_at is not None and not intake.requests[0].delivered
    intake.stop()  # idempotent


def test_wait_events(intake: Intake) -> None:
    started = time.monotonic()
    with pytest.raises(IntakeTimeout, match=r"no 1 events after 0\.20s"):
        intake.wait_events(1, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 1.0

    sender = threading.Thread(target=lambda: [post(intake.url, [event(i)]) for i in range(3)])
    sender.start()
    try:
        events = intake.wait_events(3, timeout=5)
    finally:
        sender.join(5)
    assert [e["message"] for e in events] == ["line 0", "line 1", "line 2"]
    assert events is not intake.events  # a copy

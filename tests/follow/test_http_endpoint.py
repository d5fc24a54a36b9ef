"""--http on a real follower shipping to the local intake: /metrics, /status and /health, and
`logpipe status`, before, during and after an intake outage."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.follow.harness import REPO_ROOT, Accounting, FollowEnv, LogpipeProcess, wait_until
from tests.follow.test_datadog_delivery import datadog, intake, statsd, to_statsd
from tests.support.intake import Intake, Status

# Integration tier: a logpipe subprocess, a writer, the intake stand-in, HTTP on 127.0.0.1.
pytestmark = pytest.mark.integration

__all__ = ["intake", "statsd"]  # fixtures, used by name

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def endpoint_of(run: LogpipeProcess) -> str:
    """``host:port`` the follower says it serves on (it was given port 0: any free one)."""

    def said() -> str | None:
        assert run.running, run.stderr_tail()
        found = re.search(
            r"serving /health, /metrics and /status on http://(\S+)\n", run.stderr_text()
        )
        return found.group(1) if found else None

    return wait_until(said, 30, what="the endpoint's address on stderr")


def get(address: str, path: str) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def health(address: str) -> tuple[int, dict[str, Any]]:
    status, body = get(address, "/health")
    return status, orjson.loads(body)


def snapshot(address: str) -> dict[str, Any]:
    snap: dict[str, Any] = orjson.loads(get(address, "/status")[1])["snapshot"]
    return snap


def scrape(address: str) -> Samples:
    status, body = get(address, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def logpipe_status(address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logpipe", "status", "--http", address],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )


def test_endpoint_through_an_intake_outage(
    follow_env: FollowEnv, intake: Intake, statsd: socket.socket
) -> None:
    access = follow_env.log("access.log")
    access.touch()
    run = follow_env.logpipe(
        access=[access],
        extra_args=[
            *datadog(intake),
            *to_statsd(statsd),
            "--http",
            "127.0.0.1:0",
            "--health-threshold",
            "2",
        ],
    )
    address = endpoint_of(run)
    writer = follow_env.writer(access, rate=300, count=6000)

    # delivering: 200, the counters move, `logpipe status` exits 0
    def delivering() -> bool:
        snap = snapshot(address)
        return snap is not None and snap["sink"]["delivered"] >= 300

    wait_until(delivering, 30, what="events delivered")
    assert health(address)[0] == 200
    shown = logpipe_status(address)
    assert shown.returncode == 0, shown.stderr
    assert "  Health:            ok\n" in shown.stdout
    assert re.search(rf"\n  {re.escape(str(access))}  access  ", shown.stdout), shown.stdout
    samples = scrape(address)
    assert samples["logpipe_intake_request_seconds_count", (("outcome", "2xx"),)] >= 1
    assert samples["logpipe_healthy", ()] == 1

    # the intake fails: lines are still read, events pile up, /health turns 503 with the reason
    intake.fail_for(600, Status(503))

    def stuck() -> dict[str, Any] | None:
        follow_env.check_alive()
        status, body = health(address)
        return body if status == 503 else None

    verdict = wait_until(stuck, 30, interval=0.2, what="/health 503")
    reason = verdict["reason"]
    assert re.fullmatch(
        rf"logs intake: HTTP 503 from 127\.0\.0\.1:{intake.port}: .* for (\d+) s, [\d,]+ events "
        "pending",
        reason,
    ), reason
    assert int(reason.split(" for ")[1].split(" s,")[0]) >= 2  # not before the threshold
    before = scrape(address)
    assert before["logpipe_events_pending", ()] > 0
    assert before["logpipe_healthy", ()] == 0
    assert before["logpipe_intake_request_seconds_count", (("outcome", "5xx"),)] >= 1

    def read_on() -> Samples | None:
        now = scrape(address)
        grew = now["logpipe_lines_read_total", ()] > before["logpipe_lines_read_total", ()]
        return now if grew and now["logpipe_logs_paused", ()] == 1 else None

    during = wait_until(read_on, 30, interval=0.3, what="lines read while the intake fails")
    assert during["logpipe_retries_total", ()] > before["logpipe_retries_total", ()] - 1
    assert during["logpipe_delivery_failing_seconds", ()] >= 2
    shown = logpipe_status(address)
    assert shown.returncode == 1, shown.stderr
    assert "  Health:            stuck: logs intake: HTTP 503 from 127.0.0.1:" in shown.stdout
    assert "  Logs paused:       yes: lines are read for metrics only\n" in shown.stdout

    # it recovers: 200 again, and every line arrives once
    intake.clear_faults()
    wait_until(lambda: health(address)[0] == 200, 60, interval=0.2, what="/health 200 again")
    stream = writer.wait()

    def all_delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(all_delivered, 60, interval=0.3, what="every line delivered")
    acc = Accounting.of(intake.events, [stream])
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()

    def settled() -> Samples | None:
        now = scrape(address)
        return now if now["logpipe_events_delivered_total", ()] == stream.count else None

    final = wait_until(settled, 30, what="the delivered counter at the count written")
    assert final["logpipe_lines_read_total", ()] == stream.count  # read again, counted once
    assert final["logpipe_events_pending", ()] == 0
    assert final["logpipe_logs_paused", ()] == 0
    assert final["logpipe_healthy", ()] == 1
    labels = (("kind", "access"), ("path", str(access)), ("rotated", "false"))
    assert final["logpipe_bytes_behind", labels] == 0
    assert final["logpipe_file_offset_bytes", labels] == access.stat().st_size
    shown = logpipe_status(address)
    assert shown.returncode == 0, shown.stderr
    assert f"  Delivered:      {stream.count:,}\n" in shown.stdout
    assert run.stop() == 0
    assert "Traceback" not in run.stderr_text()
    intake.assert_clean()


def test_a_port_in_use_is_one_line(follow_env: FollowEnv) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        access = follow_env.log("access.log")
        access.touch()
        run = follow_env.logpipe(access=[access], extra_args=["--http", str(port)])
        assert run.proc is not None
        assert run.proc.wait(30) == 2
    assert run.stderr_text() == (
        f"logpipe: error: --http: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )

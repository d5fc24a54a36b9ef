"""Follow mode into the Datadog logs intake (the local stand-in): outages, restarts, exactly
what was written arrives, once."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logpipe.event import bot_error
from tests.follow.conftest import Report
from tests.follow.harness import Accounting, FollowEnv, create_empty, wait_until
from tests.support.intake import Drop, Intake, Status

# Integration tier: logpipe subprocesses shipping to a local intake.
pytestmark = pytest.mark.integration

KEY = "e2e-key"
LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "default"


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A real UDP socket for DogStatsD datagrams; no DD_* environment leaking into tags."""
    for name in ("DD_ENV", "DD_SERVICE", "DD_TAGS", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_ORIGIN_DETECTION_ENABLED", "false")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind(("127.0.0.1", 0))
        yield sock


def to_statsd(sock: socket.socket) -> list[str]:
    return ["--dogstatsd", f"127.0.0.1:{sock.getsockname()[1]}"]


def datadog(intake: Intake) -> list[str]:
    return ["--output", "datadog", "--intake-url", intake.url]


def test_outage_with_a_restart_in_the_middle(
    follow_env: FollowEnv, intake: Intake, report: Report
) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    follow_env.logpipe(access=[access], extra_args=datadog(intake))
    writer = follow_env.writer(access, rate=2000, count=12_000)
    writer.wait_written(3000)
    intake.fail_for(6, Status(503))
    intake.script(Drop(), Status(500), Status(429, retry_after=1))
    writer.wait_written(6000)
    assert follow_env.runs[-1].stop() == 0  # shutdown during the outage: batch kept, not acked
    follow_env.logpipe(access=[access], extra_args=datadog(intake))
    stream = writer.wait()

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 60, interval=0.2, what="every line delivered to the intake")
    assert follow_env.runs[-1].stop() == 0
    acc = Accounting.of(intake.events, [stream])
    report(
        "intake outage + restart: delivered / lost / duplicated",
        f"{len(acc.seen)} / {len(acc.lost)} / {acc.duplicated}",
    )
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    intake.assert_clean()
    assert sum(1 for request in intake.requests if request.status != 202) >= 3
    events = intake.events
    assert all(event["ddsource"] == "gunicorn" for event in events)
    assert all(event["http"]["status_code"] == 200 for event in events)
    assert KEY not in "".join(run.stderr_text() for run in follow_env.runs)


def test_refused_batches_are_dead_lettered(follow_env: FollowEnv, intake: Intake) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    follow_env.logpipe(access=[access], extra_args=datadog(intake))
    intake.script(Status(400))
    writer = follow_env.writer(access, rate=1000, count=500)
    stream = writer.wait()
    dead = follow_env.state / "dead-letters.ndjson"

    def everything_handled() -> bool:
        follow_env.check_alive()
        shipped = len(intake.events)
        refused = len(dead.read_bytes().splitlines()) if dead.exists() else 0
        return shipped + refused == stream.count

    wait_until(everything_handled, 30, interval=0.2, what="lines delivered or dead-lettered")
    assert follow_env.runs[-1].stop() == 0
    assert dead.exists() and "HTTP 400" in follow_env.runs[-1].stderr_text()


def test_real_gunicorn_logs_to_the_intake_and_dogstatsd(
    follow_env: FollowEnv, intake: Intake, statsd: socket.socket
) -> None:
    """The bundled real gunicorn logs, followed through a rename and a copytruncate: every
    access line reaches the intake once, and the metrics equal the counts in the logs."""
    from tests.unit.test_metrics import by_name, counts, ours, receive

    lines = (LOGS / "access.log").read_bytes().splitlines(keepends=True)
    records = (LOGS / "error.log").read_bytes()
    access, error = follow_env.log("access.log"), follow_env.log("error.log")
    access.write_bytes(b"".join(lines[:40]))
    error.write_bytes(records)
    follow_env.logpipe(
        access=[access],
        error=[error],
        extra_args=[
            *datadog(intake),
            *to_statsd(statsd),
            "--service",
            "shop",
            "--env",
            "test",
        ],
    )
    intake.wait_events(40, timeout=30)
    os.rename(access, follow_env.log("access.log.1"))  # rename + create
    access.write_bytes(b"".join(lines[40:80]))
    intake.wait_events(80, timeout=30)
    shutil.copyfile(access, follow_env.log("access.log.2"))  # copytruncate
    os.truncate(access, 0)
    with open(access, "ab") as file:
        file.write(b"".join(lines[80:]))
    wait_until(lambda: len(access_events(intake)) >= len(lines), 30, what="all lines")
    assert follow_env.runs[-1].stop() == 0
    metrics = ours(receive(statsd))
    shipped = [event["message"].encode() + b"\n" for event in access_events(intake)]
    assert sorted(shipped) == sorted(lines)  # each access line exactly once
    intake.assert_clean()
    statuses = [int(line.split(b'" ')[1].split(b" ")[0]) for line in lines]
    totals = counts(metrics)
    assert by_name(totals, "gunicorn.logs.requests") == len(lines)
    assert by_name(totals, "gunicorn.logs.requests.4xx") == sum(400 <= s < 500 for s in statuses)
    assert by_name(totals, "gunicorn.logs.requests.5xx") == sum(500 <= s < 600 for s in statuses)
    # what the saved view "Bot errors" selects, by its own query (logpipe.event.bot_error)
    bots = [event for event in access_events(intake) if bot_error(event["http"])]
    assert by_name(totals, "gunicorn.logs.requests.bot_errors") == len(bots) > 0
    exceptions = sum(1 for event in intake.events if "error" in event and "stack" in event["error"])
    assert by_name(totals, "gunicorn.logs.log.exception") == exceptions == 8
    assert all({"service:shop", "env:test"} <= set(metric.tags) for metric in metrics)
    assert by_name(totals, "logpipe.events_sent") == len(intake.events)


def access_events(intake: Intake) -> list[dict[str, Any]]:
    return [event for event in intake.events if event["logger"]["name"] == "gunicorn.access"]


AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
STATUSES = (200, 404, 500, 200, 503, 429, 200)


def test_live_gunicorn_rotated_twice_into_the_intake_and_dogstatsd(
    follow_env: FollowEnv, intake: Intake, statsd: socket.socket
) -> None:
    """Real gunicorn serving real traffic (statuses, bots), rotated with rename + SIGUSR1 and
    with copytruncate: every request's line arrives once; 4xx/5xx/bot-error totals match."""
    from tests.follow.harness import create_empty, rotate_copytruncate, rotate_rename
    from tests.unit.test_metrics import by_name, counts, ours, receive

    access, error = follow_env.log("access.log"), follow_env.log("error.log")
    create_empty(access)
    server = follow_env.gunicorn(access, error)
    sent: list[tuple[int, int, str]] = []
    follow_env.logpipe(
        access=[access],
        error=[error],
        start_at="end",
        extra_args=[*datadog(intake), *to_statsd(statsd)],
    )
    wait_until(lambda: "opened" in follow_env.runs[-1].stderr_text(), 20, what="following")
    for phase in range(3):
        for n in range(phase * 100, phase * 100 + 100):
            status, agent = STATUSES[n % len(STATUSES)], AGENTS[n % len(AGENTS)]
            assert server.get(f"/seq/{n}?status={status}", user_agent=agent) == status
            sent.append((n, status, agent))
        if phase == 0:
            rotate_rename(access, server)
        elif phase == 1:
            # Copy and truncate once the new file's lines were shipped, as a daily logrotate
            # would: a file the follower has never read holds no head to know its copy by.
            wait_until(lambda: len(access_events(intake)) >= len(sent), 30, what="phase shipped")
            rotate_copytruncate(access)
    wait_until(lambda: len(access_events(intake)) >= len(sent), 60, what="all requests")
    assert server.stop() == 0
    assert follow_env.runs[-1].stop() == 0
    metrics = ours(receive(statsd))
    urls = [event["http"]["url"] for event in access_events(intake)]
    seqs = sorted(int(url.split("/")[2].split("?")[0]) for url in urls)
    assert seqs == list(range(300))  # every request's line, exactly once
    intake.assert_clean()
    totals = counts(metrics)
    assert by_name(totals, "gunicorn.logs.requests") == 300
    assert by_name(totals, "gunicorn.logs.requests.4xx") == sum(400 <= s < 500 for _, s, _ in sent)
    assert by_name(totals, "gunicorn.logs.requests.5xx") == sum(500 <= s < 600 for _, s, _ in sent)
    bot_errors = sum(1 for _, s, agent in sent if s >= 400 and "Googlebot" in agent)
    assert by_name(totals, "gunicorn.logs.requests.bot_errors") == bot_errors > 0

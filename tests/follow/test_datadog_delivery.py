"""Follow mode into the Datadog logs intake (the local stand-in): outages, restarts, exactly
what was written arrives, once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import Accounting, FollowEnv, create_empty, wait_until
from tests.support.intake import Drop, Intake, Status

KEY = "e2e-key"


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


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

"""Follow mode into an intake that refuses: the status line counts refused events apart from
delivered ones, and ``logpipe resend`` sends the dead letters once, also while a follower
goes on refusing (real processes, the local intake stand-in)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from logpipe.sinks.dead_letters import DEAD_LETTERS, PROGRESS, RESENDING
from tests.follow.harness import Accounting, FollowEnv, create_empty, wait_until
from tests.support.intake import Intake, Status

pytestmark = pytest.mark.integration

KEY = "dead-letters-key"


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


def datadog(intake: Intake) -> list[str]:
    return ["--output", "datadog", "--intake-url", intake.url]


def resend(state: Path, intake: Intake, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "logpipe", "resend", "--state-dir", str(state)]
    return subprocess.run(
        [*command, "--intake-url", intake.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_refused_events_are_counted_apart_and_resent_once(
    follow_env: FollowEnv, intake: Intake
) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    intake.fail_for(600, Status(403))
    follow_env.logpipe(access=[access], extra_args=[*datadog(intake), "--status-interval", "1"])
    stream = follow_env.writer(access, rate=1000, count=500).wait()
    dead = follow_env.state / DEAD_LETTERS

    def all_refused() -> bool:
        follow_env.check_alive()
        return lines(dead) == 500

    wait_until(all_refused, 30, interval=0.2, what="every line dead-lettered")
    status = "delivered=0 refused=500 pending=0 "

    def counted() -> bool:
        follow_env.check_alive()
        return status in follow_env.runs[-1].stderr_text()

    wait_until(counted, 30, interval=0.2, what=f"a status line with {status}")
    assert follow_env.runs[-1].stop() == 0
    assert intake.events == []

    intake.clear_faults()
    first = resend(follow_env.state, intake)
    assert first.returncode == 0, first.stderr
    assert first.stderr == "logpipe: resent 500 events: 500 accepted, 0 refused again, 0 pending\n"
    acc = Accounting.of(intake.events, [stream])
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()

    second = resend(follow_env.state, intake)
    assert (second.returncode, second.stderr) == (
        0,
        f"logpipe: no dead letters in {follow_env.state}\n",
    )
    assert len(intake.events) == 500
    assert not any(
        (follow_env.state / name).exists() for name in (DEAD_LETTERS, RESENDING, PROGRESS)
    )
    intake.assert_clean()


def test_resend_while_a_follower_goes_on_refusing(follow_env: FollowEnv, intake: Intake) -> None:
    """The follower's intake refuses everything; resends into another intake take the dead
    letters again and again as the follower appends to them: each line arrives once."""
    access = follow_env.log("access.log")
    create_empty(access)
    with Intake(api_key=KEY) as refusing:
        refusing.fail_for(600, Status(403))
        follow_env.logpipe(access=[access], extra_args=datadog(refusing))
        writer = follow_env.writer(access, rate=2000, count=8000)
        runs = 0
        while writer.running or runs == 0:
            follow_env.check_alive()
            result = resend(follow_env.state, intake)
            assert result.returncode == 0, result.stderr
            runs += 1
        stream = writer.wait()
        dead = follow_env.state / DEAD_LETTERS

        def all_handled() -> bool:
            follow_env.check_alive()
            return len(intake.events) + lines(dead) + lines(follow_env.state / RESENDING) == 8000

        wait_until(all_handled, 60, interval=0.2, what="every line resent or dead-lettered")
        assert follow_env.runs[-1].stop() == 0
    last = resend(follow_env.state, intake)
    assert last.returncode == 0, last.stderr
    acc = Accounting.of(intake.events, [stream])
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    assert runs >= 2
    intake.assert_clean()

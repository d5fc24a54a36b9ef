"""``logpipe resend`` against the local intake stand-in: what is refused again is kept, a
killed or stopped resend goes on where it stopped, an unreachable intake is bounded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from logpipe.sinks.dead_letters import DEAD_LETTERS, PROGRESS, RESENDING
from tests.support.intake import Intake, Slow, Status

pytestmark = pytest.mark.integration

KEY = "resend-key"


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


def dead_letters(state: Path, numbers: range, tail: bytes = b"") -> None:
    """Refused events as the Datadog sink keeps them, one JSON object a line."""
    state.mkdir(exist_ok=True)
    events = (
        orjson.dumps(
            {"message": f"event {n}", "ddsource": "gunicorn", "service": "s", "hostname": "h"}
            | {"ddtags": "env:test"}
        )
        + b"\n"
        for n in numbers
    )
    (state / DEAD_LETTERS).write_bytes(b"".join(events) + tail)


def command(state: Path, intake: Intake, *args: str) -> list[str]:
    resend = [sys.executable, "-m", "logpipe", "resend", "--state-dir", str(state)]
    return [*resend, "--intake-url", intake.url, *args]


def resend(state: Path, intake: Intake, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(state, intake, *args), capture_output=True, text=True, timeout=120, check=False
    )


def numbers_in(events: list[dict[str, object]]) -> Counter[int]:
    return Counter(int(str(event["message"]).split()[1]) for event in events)


def kept(state: Path) -> list[int]:
    return [int(orjson.loads(line)["message"].split()[1]) for line in read(state / DEAD_LETTERS)]


def read(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_what_is_refused_again_is_kept_and_sent_by_the_next_resend(
    tmp_path: Path, intake: Intake
) -> None:
    state = tmp_path / "state"
    dead_letters(state, range(2500))  # three batches: 1000, 1000, 500
    intake.script(Slow(0), Status(400), Slow(0))
    first = resend(state, intake)
    assert first.returncode == 1
    assert first.stderr.splitlines()[-1] == (
        f"logpipe: resent 2500 events: 1500 accepted, 1000 refused again (kept in "
        f"{state / DEAD_LETTERS}), 0 pending"
    )
    assert kept(state) == list(range(1000, 2000))
    assert not (state / RESENDING).exists() and not (state / PROGRESS).exists()
    second = resend(state, intake)
    assert (second.returncode, second.stderr) == (
        0,
        "logpipe: resent 1000 events: 1000 accepted, 0 refused again, 0 pending\n",
    )
    assert numbers_in(intake.events) == Counter(range(2500))  # each once
    assert [request.n_events for request in intake.requests] == [1000, 1000, 500, 1000]


def test_a_killed_resend_goes_on_where_it_stopped(tmp_path: Path, intake: Intake) -> None:
    state = tmp_path / "state"
    dead_letters(state, range(5000))
    intake.fail_for(600, Slow(0.3))
    process = subprocess.Popen(command(state, intake), stderr=subprocess.DEVNULL)
    wait_for(lambda: sum(request.accepted for request in intake.requests) >= 2)
    process.kill()
    process.wait(timeout=10)
    wait_for(lambda: all(request.status is not None for request in intake.requests))
    accepted_before = len(intake.events)
    offset = int((state / PROGRESS).read_text())
    covered = len((state / RESENDING).read_bytes()[:offset].splitlines())
    assert covered % 1000 == 0 and accepted_before - covered in (0, 1000)  # one batch in flight
    intake.clear_faults()
    result = resend(state, intake)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"logpipe: going on with the resend of {state / RESENDING} stopped at byte {offset:,}",
        f"logpipe: resent {5000 - covered} events: {5000 - covered} accepted, 0 refused again, "
        "0 pending",
    ]
    received = numbers_in(intake.events)
    assert set(received) == set(range(5000))
    duplicated = sum(received.values()) - 5000
    assert duplicated == accepted_before - covered  # exactly the batch in flight, if any
    assert not (state / RESENDING).exists() and not (state / PROGRESS).exists()


def test_an_unreachable_intake_is_given_up_after_the_timeout(
    tmp_path: Path, intake: Intake
) -> None:
    state = tmp_path / "state"
    dead_letters(state, range(10))
    intake.fail_for(600, Status(503))
    result = resend(state, intake, "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "logpipe: resent 10 events: 0 accepted, 0 refused again, 10 pending",
        f"logpipe: the intake did not take them within --timeout 1 s: they stay in {state}; "
        "logpipe resend goes on from there",
    ]
    intake.clear_faults()
    assert resend(state, intake).returncode == 0
    assert numbers_in(intake.events) == Counter(range(10))


def test_sigterm_stops_a_resend_with_its_progress_kept(tmp_path: Path, intake: Intake) -> None:
    state = tmp_path / "state"
    dead_letters(state, range(3000))
    intake.script(Slow(0))
    intake.fail_for(600, Status(503))
    process = subprocess.Popen(command(state, intake), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(intake.requests) >= 2)  # the first batch taken, the second failing
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=30)[1]
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[-2:] == [
        "logpipe: resent 3000 events: 1000 accepted, 0 refused again, 2000 pending",
        f"logpipe: stopped by SIGTERM: they stay in {state}; logpipe resend goes on from there",
    ]
    intake.clear_faults()
    assert resend(state, intake).returncode == 0
    assert numbers_in(intake.events) == Counter(range(3000))


def test_a_torn_last_line_is_cut_and_no_dead_letters_is_said(
    tmp_path: Path, intake: Intake
) -> None:
    state = tmp_path / "state"
    dead_letters(state, range(3), tail=b'{"message":"ev')
    result = resend(state, intake)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"logpipe: {state / DEAD_LETTERS} ended in 14 bytes of an event cut short (a crash "
        "mid-write): cut",
        "logpipe: resent 3 events: 3 accepted, 0 refused again, 0 pending",
    ]
    assert numbers_in(intake.events) == Counter(range(3))
    again = resend(state, intake)
    assert (again.returncode, again.stderr) == (0, f"logpipe: no dead letters in {state}\n")
    missing = resend(tmp_path / "nowhere", intake)
    assert missing.returncode == 2
    assert (
        missing.stderr == f"logpipe: error: state dir {tmp_path / 'nowhere'}: no such directory\n"
    )

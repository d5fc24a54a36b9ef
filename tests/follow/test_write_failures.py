"""Follow mode, parse and replay in bad output environments, with real processes: a torn
output file, full disks (a small tmpfs) for the output and the state dir, a state dir remounted
read-only, a slow intake at SIGTERM, SIGHUP after the output was renamed. Each test counts
every line written: delivered exactly once, no torn line, one clear message, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    PYTHON,
    REPO_ROOT,
    Accounting,
    FollowEnv,
    LogpipeProcess,
    Stream,
    create_empty,
    read_events,
    wait_until,
)
from tests.support.intake import Hang, Intake, Slow

# Integration tier: logpipe processes, writers, mounts and a local intake.
pytestmark = pytest.mark.integration

KEY = "write-failures-key"
DISK_SIZE = "16m"  # room for the events written (~550 bytes each) once space is freed


def mount_tmpfs(where: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``where``; the test is skipped where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A small file system of its own (tmpfs), to fill up."""
    where = tmp_path / "disk"
    mount_tmpfs(where, DISK_SIZE)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` up with one file (returned: delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def follow_into(
    env: FollowEnv, access: Path, output: Path, state: Path | None = None, *extra: str
) -> LogpipeProcess:
    """Start follow mode on ``access`` into ``output`` (counted as one of ``env``'s runs)."""
    n = len(env.runs) + 1
    run = LogpipeProcess(
        access=[access],
        state_dir=state or env.state,
        output=output,
        stderr_path=env.out / f"run-{n}.stderr",
        extra_args=["--dogstatsd", "off", *extra],
    )
    env.runs.append(run)
    run.start()
    # started: the disk may be filled or remounted now (before, logpipe would refuse to start)
    wait_said(run, f"opened {access} ")
    return run


def said(run: LogpipeProcess, text: str) -> int:
    """How many stderr lines of ``run`` contain ``text``."""
    return sum(text in line for line in run.stderr_text().splitlines())


def wait_said(run: LogpipeProcess, text: str, timeout: float = 20.0) -> None:
    def seen() -> bool:
        assert run.running or said(run, text), f"logpipe exited: {run.stderr_tail()}"
        return said(run, text) > 0

    wait_until(seen, timeout, interval=0.1, what=f"logpipe said {text!r}")


def exact(events: list[dict[str, object]], streams: list[Stream]) -> Accounting:
    acc = Accounting.of(events, streams)
    assert not (acc.lost or acc.duplicated or acc.malformed), acc.summary()
    return acc


def test_a_torn_output_file_is_cut_back_before_appending(
    follow_env: FollowEnv, report: Report
) -> None:
    access, output = follow_env.log("access.log"), follow_env.out / "events.ndjson"
    create_empty(access)
    first = follow_into(follow_env, access, output)
    writer = follow_env.writer(access, rate=5000, count=2000, label="a")
    stream_a = writer.wait()
    follow_env.wait_shipped([stream_a])
    assert first.stop() == 0
    torn = output.read_bytes().splitlines(keepends=True)[-1][:100]  # half an event
    with open(output, "ab") as file:
        file.write(torn)
    second = follow_into(follow_env, access, output)
    stream_b = follow_env.writer(access, rate=5000, count=2000, label="b").wait()
    follow_env.wait_shipped([stream_a, stream_b])
    assert second.stop() == 0
    events = read_events(output, strict=True)  # every line whole JSON, the last one ended
    acc = exact(events, [stream_a, stream_b])
    assert said(second, f"{output} ended in {len(torn)} bytes of an event cut short") == 1
    assert "Traceback" not in second.stderr_text()
    report(
        "torn output: cut / delivered / lost / duplicated",
        f"{len(torn)} B / {len(acc.seen)} / 0 / 0",
    )


def test_a_full_output_disk_pauses_then_delivers_everything_once(
    follow_env: FollowEnv, small_disk: Path, report: Report
) -> None:
    access, output = follow_env.log("access.log"), small_disk / "events.ndjson"
    create_empty(access)
    run = follow_into(follow_env, access, output)
    writer = follow_env.writer(access, rate=2000, count=6000)
    writer.wait_written(1000)
    filler = fill(small_disk)
    wait_said(run, f"cannot write {output}: No space left on device; reading paused")
    writer.wait_written(4000)
    assert run.running
    filler.unlink()
    stream = writer.wait()
    follow_env.wait_shipped([stream], timeout=60)
    assert run.stop() == 0
    acc = exact(read_events(output, strict=True), [stream])
    assert said(run, "cannot write") == 1
    assert said(run, "writing again after") == 1
    assert "Traceback" not in run.stderr_text()
    report(
        "full output disk: written / delivered / lost / duplicated",
        f"{stream.count} / {len(acc.seen)} / 0 / 0",
    )


def test_a_full_state_dir_holds_the_checkpoints_back_and_loses_nothing(
    follow_env: FollowEnv, small_disk: Path, report: Report
) -> None:
    access, output = follow_env.log("access.log"), follow_env.out / "events.ndjson"
    create_empty(access)
    run = follow_into(follow_env, access, output, small_disk)
    writer = follow_env.writer(access, rate=2000, count=6000)
    writer.wait_written(1000)
    filler = fill(small_disk)
    wait_said(run, "No space left on device; reading paused")
    assert said(run, f"cannot write {small_disk}/checkpoints.json.tmp") == 1
    writer.wait_written(4000)
    assert run.running
    filler.unlink()
    stream = writer.wait()
    follow_env.wait_shipped([stream], timeout=60)
    wait_said(run, "writing again after")
    assert run.stop() == 0
    acc = exact(read_events(output, strict=True), [stream])
    assert said(run, "cannot write") == 1
    assert "Traceback" not in run.stderr_text()
    checkpoint = (small_disk / "checkpoints.json").read_text()
    assert f'"offset":{access.stat().st_size}' in checkpoint
    report(
        "full state dir: written / delivered / lost / duplicated",
        f"{stream.count} / {len(acc.seen)} / 0 / 0",
    )


def test_a_state_dir_remounted_read_only_then_writable(
    follow_env: FollowEnv, small_disk: Path, report: Report
) -> None:
    access, output = follow_env.log("access.log"), follow_env.out / "events.ndjson"
    create_empty(access)
    run = follow_into(follow_env, access, output, small_disk)
    writer = follow_env.writer(access, rate=2000, count=6000)
    writer.wait_written(1000)
    remount(small_disk, "ro")
    try:
        wait_said(run, "Read-only file system; reading paused")
        writer.wait_written(4000)
        assert run.running
    finally:
        remount(small_disk, "rw")
    stream = writer.wait()
    follow_env.wait_shipped([stream], timeout=60)
    wait_said(run, "writing again after")
    assert run.stop() == 0
    acc = exact(read_events(output, strict=True), [stream])
    assert said(run, "cannot write") == 1
    assert "Traceback" not in run.stderr_text()
    report(
        "read-only state dir: written / delivered / lost / duplicated",
        f"{stream.count} / {len(acc.seen)} / 0 / 0",
    )


def logpipe_command(*arguments: str, stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run a logpipe command to its end; its stdout goes to ``stdout`` (a descriptor) when
    given."""
    return subprocess.run(
        [PYTHON, "-m", "logpipe", *arguments],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )


def test_parse_into_a_full_disk_is_one_line_and_exit_1(follow_env: FollowEnv) -> None:
    access = follow_env.log("access.log")
    follow_env.writer(access, rate=20000, count=5000).wait()
    with open("/dev/full", "wb") as full:
        done = logpipe_command("parse", "--kind", "access", str(access), stdout=full.fileno())
    assert done.returncode == 1
    assert done.stderr == "logpipe: error: cannot write output: No space left on device\n"


def test_replay_into_a_full_disk_stops_and_a_rerun_sends_the_rest_once(
    follow_env: FollowEnv, small_disk: Path, report: Report
) -> None:
    access, output = follow_env.log("access.log"), small_disk / "events.ndjson"
    stream = follow_env.writer(access, rate=50000, count=15000).wait()  # ~8 MB of events
    filler = fill(small_disk)
    os.truncate(filler, filler.stat().st_size - (3 << 20))  # 3 MB of room
    replay = ("replay", "--access", str(access), "--state-dir", str(follow_env.state))
    replay += ("--output", f"file:{output}", "--jobs", "2", "--quiet")
    first = logpipe_command(*replay)
    assert first.returncode == 1, first.stderr
    assert first.stderr == (
        f"logpipe: error: cannot write {output}: No space left on device; replay stopped: "
        "the ledger keeps what was delivered before, and a re-run goes on from there\n"
    )
    sent_first = len(read_events(output, strict=True))  # whole events only
    filler.unlink()
    second = logpipe_command(*replay)
    assert second.returncode == 0, second.stderr
    acc = exact(read_events(output, strict=True), [stream])
    report(
        "replay into a full disk: first run / re-run / lost / duplicated",
        f"{sent_first} / {len(acc.seen) - sent_first} / 0 / 0",
    )


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as server:
        yield server


def test_replay_with_an_unusable_state_dir_sends_nothing(
    follow_env: FollowEnv, intake: Intake, tmp_path: Path
) -> None:
    access = follow_env.log("access.log")
    follow_env.writer(access, rate=20000, count=100).wait()
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    done = logpipe_command(
        "replay",
        "--access",
        str(access),
        "--state-dir",
        str(not_a_dir / "state"),
        "--output",
        "datadog",
        "--intake-url",
        intake.url,
        "--jobs",
        "1",
    )
    assert done.returncode == 2
    assert done.stderr == f"logpipe: error: state dir {not_a_dir / 'state'}: Not a directory\n"
    assert intake.requests == []


def test_replay_with_a_full_state_dir_sends_nothing(
    follow_env: FollowEnv, intake: Intake, small_disk: Path
) -> None:
    access = follow_env.log("access.log")
    follow_env.writer(access, rate=20000, count=100).wait()
    fill(small_disk)
    done = logpipe_command(
        "replay",
        "--access",
        str(access),
        "--state-dir",
        str(small_disk),
        "--output",
        "datadog",
        "--intake-url",
        intake.url,
        "--jobs",
        "1",
    )
    assert done.returncode == 2
    assert done.stderr == f"logpipe: error: state dir {small_disk}: No space left on device\n"
    assert intake.requests == []


def test_a_slow_intake_at_sigterm_exits_within_the_shutdown_timeout(
    follow_env: FollowEnv, intake: Intake, report: Report
) -> None:
    """Each request is answered after 3 s: the drain stops starting requests that cannot end
    by the deadline, the process exits in time, and a restart sends the rest, once."""
    access = follow_env.log("access.log")
    create_empty(access)
    args = ["--output", "datadog", "--intake-url", intake.url, "--dogstatsd", "off"]
    follow_env.logpipe(access=[access], extra_args=[*args, "--shutdown-timeout", "8"])
    run = follow_env.runs[-1]
    wait_until(lambda: run.handles(signal.SIGHUP), 10, what="SIGHUP handled")
    os.kill(run.pid, signal.SIGHUP)  # harmless without an output file
    wait_said(run, "SIGHUP: the output is not a file; nothing to reopen")
    intake.fail_for(600, Slow(3))
    stream = follow_env.writer(access, rate=20000, count=20000).wait()
    intake.wait_requests(2, timeout=30)
    started = time.monotonic()
    assert run.stop(timeout=8 + 5) == 0
    took = time.monotonic() - started
    assert took < 8 + 2, f"exit took {took:.1f} s"
    sent_before = len(intake.events)
    intake.clear_faults()
    follow_env.logpipe(access=[access], extra_args=args)

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 60, interval=0.2, what="every line delivered to the intake")
    assert follow_env.runs[-1].stop() == 0
    acc = exact(intake.events, [stream])
    assert "Traceback" not in run.stderr_text()
    report(
        "slow intake (3 s a request) at SIGTERM, --shutdown-timeout 8: exit after / sent "
        "before / delivered / lost / duplicated",
        f"{took:.1f} s / {sent_before} / {len(acc.seen)} / 0 / 0",
    )


def test_an_unanswered_request_is_cut_off_at_the_shutdown_deadline(
    follow_env: FollowEnv, intake: Intake, report: Report
) -> None:
    """The intake never answers: the request in flight is cut off at the deadline, and a
    restart sends its events (the intake did not keep them), once."""
    access = follow_env.log("access.log")
    create_empty(access)
    args = ["--output", "datadog", "--intake-url", intake.url, "--dogstatsd", "off"]
    follow_env.logpipe(access=[access], extra_args=[*args, "--shutdown-timeout", "3"])
    run = follow_env.runs[-1]
    intake.fail_for(600, Hang(600))
    stream = follow_env.writer(access, rate=20000, count=3000).wait()
    intake.wait_requests(1, timeout=30)
    started = time.monotonic()
    assert run.stop(timeout=3 + 5) == 0
    took = time.monotonic() - started
    assert took < 3 + 2, f"exit took {took:.1f} s"
    assert said(run, "events not delivered within the shutdown timeout of 3 s") == 1
    intake.clear_faults()
    follow_env.logpipe(access=[access], extra_args=args)

    def delivered() -> bool:
        follow_env.check_alive()
        return not Accounting.of(intake.events, [stream]).lost

    wait_until(delivered, 60, interval=0.2, what="every line delivered to the intake")
    assert follow_env.runs[-1].stop() == 0
    acc = exact(intake.events, [stream])
    report(
        "intake silent at SIGTERM, --shutdown-timeout 3: exit after / delivered / lost / "
        "duplicated",
        f"{took:.1f} s / {len(acc.seen)} / 0 / 0",
    )


def test_sighup_reopens_an_output_renamed_away(follow_env: FollowEnv, report: Report) -> None:
    access, output = follow_env.log("access.log"), follow_env.out / "events.ndjson"
    rotated = output.with_name("events.ndjson.1")
    create_empty(access)
    run = follow_into(follow_env, access, output)
    writer = follow_env.writer(access, rate=2000, count=8000)
    writer.wait_written(2000)
    wait_until(lambda: run.handles(signal.SIGHUP), 10, what="SIGHUP handled")
    os.rename(output, rotated)  # logrotate, then its postrotate: kill -HUP
    os.kill(run.pid, signal.SIGHUP)
    wait_said(run, f"SIGHUP: reopened {output}")
    stream = writer.wait()

    def shipped() -> bool:
        return not Accounting.of(read_events(rotated, output), [stream]).lost

    wait_until(shipped, 30, interval=0.2, what="every line in the old or the new file")
    assert run.stop() == 0
    old, new = read_events(rotated, strict=True), read_events(output, strict=True)
    exact(old + new, [stream])
    assert old and new
    assert "Traceback" not in run.stderr_text()
    report("SIGHUP: old file / new file / lost / duplicated", f"{len(old)} / {len(new)} / 0 / 0")

"""Restart reconciliation: logs rotated while logpipe is down must still be delivered whole.

logpipe keeps a checkpoint per file identity (device + inode + head hash). When it starts again
and a checkpointed file is no longer at its path, it must find it among the rotated siblings in
the same directory (``.1``, ``.2``, ``-YYYYMMDD``, and their ``.gz`` forms), drain it from the
checkpoint, read the rotated files made while it was down from their start, and read the file
now at the followed path (which replaced the checkpointed one) from 0. A file renamed while
logpipe runs stays open until nothing was added for ``--rotate-wait`` seconds after the rename.

Every scenario here is exact: 0 lost; 0 duplicated after SIGTERM, and after SIGKILL no more than
the lines written in ``KILL_DUP_WINDOW_S`` at the writer's rate. Each records ``written /
delivered / lost / duplicated`` in the "follow harness measurements" summary.

logpipe runs with ``--start-at end`` (its default): the first run is started on an empty file
and waited for before anything is written, so whatever is read from a start later is read
because logpipe knows it has to, not because every unknown file is read from byte 0.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    Accounting,
    FollowEnv,
    LogpipeProcess,
    Stream,
    WaitTimeout,
    append,
    create_empty,
    fd_inodes,
    follow_available,
    rotate_copytruncate,
    rotate_rename,
    rotated_name,
    truncate,
    wait_until,
)
from tests.follow.restart_helpers import (
    FIGURES,
    CpuLoad,
    checkpoint_bytes,
    compress_rotated,
    figures,
    rotate_dated,
    settle,
    wait_checkpoint_saved,
    wait_opened,
)
from tests.follow.writer import access_line, error_record

pytestmark = pytest.mark.integration  # logpipe and writers as subprocesses


@pytest.fixture(autouse=True)
def _follow_mode_exists() -> None:
    if not follow_available():
        pytest.skip("follow mode not there yet: `python -m logpipe --help` has no --access")


DELIVERED = 600  # lines delivered before logpipe is stopped
WHILE_STOPPED = 300  # appended to the same file while it is stopped, before the rotation
AFTER_ROTATION = 200  # written to the new file while it is stopped
RATE = 1000  # lines/s of the running writers (SIGKILL scenarios)
KILL_DUP_WINDOW_S = 2.0  # after a SIGKILL, at most this much writing may be delivered twice
ROTATE_WAIT_S = 5.0  # logpipe's default --rotate-wait


def assert_exact(acc: Accounting, env: FollowEnv) -> None:
    """Nothing lost, duplicated, reordered within a file, garbled or unknown."""
    assert acc.clean(), f"{acc.summary()}\n{env.diagnostics()}"


def assert_no_loss(acc: Accounting, env: FollowEnv, dup_bound: int) -> None:
    """Nothing lost, reordered or garbled; at most ``dup_bound`` duplicates (SIGKILL)."""
    detail = f"{acc.summary()}\n{env.diagnostics()}"
    assert not (acc.lost or acc.order_violations or acc.malformed or acc.unexpected), detail
    assert acc.duplicated <= dup_bound, f"more than {dup_bound} duplicates: {detail}"


def lines(first: int, count: int) -> bytes:
    """Access lines ``GET /seq/first`` .. ``first+count-1``."""
    return b"".join(access_line(seq) for seq in range(first, first + count))


def write_lines(path: Path, first: int, count: int) -> Stream:
    """Append ``count`` access lines numbered from ``first`` (one write); what was sent."""
    append(path, lines(first, count))
    return Stream(first=first, count=count)


def follow(
    env: FollowEnv, access: tuple[Path, ...] = (), error: tuple[Path, ...] = ()
) -> LogpipeProcess:
    """Start logpipe (``--start-at end``) on these logs, without waiting for anything."""
    return env.logpipe(access=list(access), error=list(error), start_at="end")


def follow_new(
    env: FollowEnv, access: tuple[Path, ...] = (), error: tuple[Path, ...] = ()
) -> LogpipeProcess:
    """Create the logs empty, start logpipe on them and wait until it has opened each."""
    for path in (*access, *error):
        create_empty(path)
    run = follow(env, access, error)
    wait_opened(run, *access, *error)
    return run


def delivered_then_sigterm(env: FollowEnv) -> tuple[Path, Stream]:
    """logpipe follows a new access.log; DELIVERED lines are written and delivered; logpipe is
    stopped with SIGTERM (exit 0). The log and the lines."""
    access = env.log("access.log")
    run = follow_new(env, (access,))
    before = write_lines(access, 0, DELIVERED)
    env.wait_shipped([before])
    assert run.stop() == 0, env.diagnostics()
    return access, before


# --------------------------------------------------------------------------------------------
# a-d: one or two rotations while stopped after SIGTERM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_at", ["end", "beginning"])
def test_rename_rotation_while_stopped(
    follow_env: FollowEnv, report: Report, start_at: str
) -> None:
    """(a) Stopped after 600 lines; 300 appended; access.log renamed to access.log.1 and a new
    access.log created with 200 lines; restarted: the 300 are read from access.log.1 (from the
    checkpoint) and the 200 from the new file's start, each line once."""
    access, before = delivered_then_sigterm(follow_env)
    stopped = write_lines(access, DELIVERED, WHILE_STOPPED)
    rotate_rename(access)
    after = write_lines(access, DELIVERED + WHILE_STOPPED, AFTER_ROTATION)
    follow_env.logpipe(access=[access], start_at=start_at)
    acc = settle(follow_env, [before, stopped, after])
    report(FIGURES, figures(acc))
    assert_exact(acc, follow_env)


def test_copytruncate_while_stopped(follow_env: FollowEnv, report: Report) -> None:
    """(b) Stopped after 600 lines; 300 appended; access.log copied to access.log.1 and
    truncated in place (same inode); 200 lines written to it; restarted: the 300 are read from
    the copy (from the checkpoint, which is past the truncated file's end), then access.log
    from 0."""
    access, before = delivered_then_sigterm(follow_env)
    stopped = write_lines(access, DELIVERED, WHILE_STOPPED)
    rotation = rotate_copytruncate(access)
    assert rotation.copied == rotation.size_at_truncate  # nothing written during the copy
    after = write_lines(access, DELIVERED + WHILE_STOPPED, AFTER_ROTATION)
    follow(follow_env, (access,))
    acc = settle(follow_env, [before, stopped, after])
    report(FIGURES, figures(acc))
    assert_exact(acc, follow_env)


def test_rename_and_gzip_while_stopped(follow_env: FollowEnv, report: Report) -> None:
    """(c) logrotate ``compress`` without ``delaycompress``: stopped after 600 lines; 300
    appended; access.log renamed to access.log.1, gzipped to access.log.1.gz and access.log.1
    removed; a new access.log with 200 lines; restarted: the 300 are read from the archive
    (recognised by its decompressed head), the 200 from the new file."""
    access, before = delivered_then_sigterm(follow_env)
    stopped = write_lines(access, DELIVERED, WHILE_STOPPED)
    rotation = rotate_rename(access)
    assert rotation.rotated is not None
    archive = compress_rotated(rotation.rotated)
    assert archive.name == "access.log.1.gz" and not rotation.rotated.exists()
    after = write_lines(access, DELIVERED + WHILE_STOPPED, AFTER_ROTATION)
    follow(follow_env, (access,))
    acc = settle(follow_env, [before, stopped, after])
    report(FIGURES, figures(acc))
    assert_exact(acc, follow_env)


def rotate_named(access: Path, naming: str, n: int) -> None:
    """The ``n``-th rotation (from 1) while stopped: ``access.log.1`` (older ones shifted up)
    or ``access.log-2026120<n>``."""
    if naming == "numbered":
        rotate_rename(access)
    else:
        rotate_dated(access, f"2026120{n}")


@pytest.mark.parametrize("naming", ["numbered", "dated"])
def test_two_rotations_while_stopped(follow_env: FollowEnv, report: Report, naming: str) -> None:
    """(d) Stopped after 600 lines; 300 appended; rotated; 200 lines to the new file; rotated
    again (numbered: the original ends as access.log.2 and the file made while stopped as
    access.log.1; dated: access.log-20261201 and access.log-20261202); 100 lines to the newest;
    restarted: the original drained from its checkpoint, the file logpipe never saw read whole,
    then the newest."""
    access, before = delivered_then_sigterm(follow_env)
    stopped = write_lines(access, DELIVERED, WHILE_STOPPED)
    rotate_named(access, naming, 1)
    unseen = write_lines(access, DELIVERED + WHILE_STOPPED, AFTER_ROTATION)
    rotate_named(access, naming, 2)
    newest = write_lines(access, unseen.first + unseen.count, 100)
    if naming == "numbered":
        assert rotated_name(access, 2).exists() and rotated_name(access, 1).exists()
    follow(follow_env, (access,))
    acc = settle(follow_env, [before, stopped, unseen, newest])
    report(FIGURES, figures(acc))
    assert_exact(acc, follow_env)


# --------------------------------------------------------------------------------------------
# e-f: SIGKILL
# --------------------------------------------------------------------------------------------


def test_sigkill_then_rename_rotation_while_stopped(follow_env: FollowEnv, report: Report) -> None:
    """(e) As (a), but logpipe is SIGKILLed while a writer runs at RATE, once it has delivered
    600 lines and saved a checkpoint after that; the writer goes on for 300 more lines, then
    the rename rotation and 200 lines to the new file; restarted: nothing lost, duplicates
    bounded by what is written in KILL_DUP_WINDOW_S."""
    access = follow_env.log("access.log")
    run = follow_new(follow_env, (access,))
    writer = follow_env.writer(access, rate=RATE, duration=60)
    follow_env.wait_shipped([Stream(count=DELIVERED)])
    wait_checkpoint_saved(follow_env.state, checkpoint_bytes(follow_env.state))
    run.kill()
    writer.wait_written(writer.written + WHILE_STOPPED)
    before = writer.stop()
    rotate_rename(access)
    after = write_lines(access, before.count, AFTER_ROTATION)
    follow(follow_env, (access,))
    acc = settle(follow_env, [before, after])
    bound = int(writer.rate * KILL_DUP_WINDOW_S)
    report(FIGURES, figures(acc))
    report("duplicates after SIGKILL / bound", f"{acc.duplicated} / {bound}")
    assert_no_loss(acc, follow_env, bound)


KILL_ROUNDS = 3
KILL_AFTER_ROTATION_S = (0.0, 0.3)


def test_sigkill_just_after_rename_rotation_under_load(
    follow_env: FollowEnv, report: Report, cpu_load: CpuLoad
) -> None:
    """(f) A writer at RATE lines/s beside two CPU-bound processes; KILL_ROUNDS times: once
    the current run has saved a checkpoint, access.log is renamed (the writer reopens on
    SIGUSR1) and logpipe is SIGKILLed 0-0.3 s later, then started again at once. Every line is
    delivered; duplicates at most KILL_DUP_WINDOW_S of writing per kill."""
    seed = random.randrange(1 << 32)
    report("random seed", seed)
    rng = random.Random(seed)
    access = follow_env.log("access.log")
    run = follow_new(follow_env, (access,))
    writer = follow_env.writer(access, rate=RATE, duration=120)
    for round_ in range(KILL_ROUNDS):
        wait_checkpoint_saved(follow_env.state, checkpoint_bytes(follow_env.state))
        rotate_rename(access, writer)
        time.sleep(rng.uniform(*KILL_AFTER_ROTATION_S))  # the random moment of the kill
        run.kill()
        writer.wait_reopens(round_ + 1)
        run = follow(follow_env, (access,))
    wait_checkpoint_saved(follow_env.state, checkpoint_bytes(follow_env.state))
    stream = writer.stop()
    assert len(stream.generations) == KILL_ROUNDS + 1
    acc = settle(follow_env, [stream])
    bound = int(writer.rate * KILL_DUP_WINDOW_S) * KILL_ROUNDS
    report(FIGURES, figures(acc))
    report("duplicates after the SIGKILLs / bound", f"{acc.duplicated} / {bound}")
    assert_no_loss(acc, follow_env, bound)


# --------------------------------------------------------------------------------------------
# g: a renamed file written once more after a quiet period (gunicorn's "Handling signal: usr1")
# --------------------------------------------------------------------------------------------

ERROR_ROTATIONS = 4
QUIET_BEFORE_ROTATION_S = 6.0  # > ROTATE_WAIT_S: the file was idle that long when renamed
LATE_RECORD_AFTER_S = 0.5  # the master's record lands in the renamed file this long after


def test_record_written_into_quiet_renamed_error_log(follow_env: FollowEnv, report: Report) -> None:
    """(g) error.log, idle for QUIET_BEFORE_ROTATION_S, is renamed to error.log.1 (a new one
    created), and 0.5 s later one more record is written into error.log.1, as gunicorn's master
    logs "Handling signal: usr1" to its old file before reopening. Done ERROR_ROTATIONS times,
    one run of logpipe throughout: every record is delivered (the rotate-wait quiet period
    counts from the rename, not from the file's last write), and the last renamed file is
    still closed once quiet for ROTATE_WAIT_S."""
    error = follow_env.log("error.log")
    run = follow_new(follow_env, error=(error,))
    main = Stream(label="main", kind="error", count=ERROR_ROTATIONS + 1)
    late = Stream(label="late", kind="error", count=ERROR_ROTATIONS)
    last_rotated = (0, 0)
    for n in range(ERROR_ROTATIONS):
        append(error, error_record(n, "main"))
        written_at = time.monotonic()
        follow_env.wait_shipped([Stream(label="main", kind="error", count=n + 1)])
        time.sleep(max(0.0, written_at + QUIET_BEFORE_ROTATION_S - time.monotonic()))  # idle
        rotation = rotate_rename(error)
        assert rotation.rotated is not None
        time.sleep(LATE_RECORD_AFTER_S)  # the master's reopen comes a little after the rename
        append(rotation.rotated, error_record(n, "late"))
        last_rotated = (rotation.rotated.stat().st_dev, rotation.old_inode)
    append(error, error_record(ERROR_ROTATIONS, "main"))
    closed_after = seconds_until_closed(run, last_rotated, ROTATE_WAIT_S + 10.0)
    acc = settle(follow_env, [main, late])
    report(FIGURES, figures(acc))
    report("last renamed file closed after its last write (s)", closed_after)
    assert_exact(acc, follow_env)
    assert closed_after is not None, "the last renamed error.log was never closed"


def seconds_until_closed(
    run: LogpipeProcess, dev_ino: tuple[int, int], timeout: float
) -> float | None:
    """How long until ``run`` no longer holds the file ``dev_ino`` open (None: not within
    ``timeout``, or logpipe exited)."""
    start = time.monotonic()
    try:
        wait_until(lambda: dev_ino not in fd_inodes(run.pid), timeout, interval=0.1)
    except WaitTimeout:
        return None
    return None if not run.running else round(time.monotonic() - start, 1)


# --------------------------------------------------------------------------------------------
# h: a checkpoint past the end of the file
# --------------------------------------------------------------------------------------------

HEALTH_LINE = (
    b'127.0.0.1 - - [01/Dec/2026:00:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" '
    b'"kube-probe/1.29"\n'
)
HEALTH_LINES = 12  # > 1024 bytes: with the "same" head the fingerprinted head is byte-equal


@pytest.mark.parametrize("head", ["same", "new"])
def test_checkpoint_beyond_the_end_of_a_regrown_file(
    follow_env: FollowEnv, report: Report, head: str
) -> None:
    """(h) 2,000 lines delivered, SIGTERM; access.log truncated in place and regrown with 300
    lines, smaller than the checkpoint's offset; restarted: it is taken for a truncation and
    read from 0, all 300 delivered. ``same``: both contents start with the same health-check
    lines (so the 1024-byte head still matches the checkpoint); ``new``: another head."""
    access = follow_env.log("access.log")
    header = HEALTH_LINE * HEALTH_LINES if head == "same" else b""
    assert len(header) >= 1024 or head == "new"
    run = follow_new(follow_env, (access,))
    append(access, header)
    before = write_lines(access, 0, 2000)
    follow_env.wait_shipped([before])
    assert run.stop() == 0, follow_env.diagnostics()
    checkpoint_offset = access.stat().st_size
    truncate(access)
    append(access, header)
    after = write_lines(access, 2000, 300)
    assert access.stat().st_size < checkpoint_offset
    follow(follow_env, (access,))
    acc = settle(follow_env, [before, after])
    report(FIGURES, figures(acc))
    assert_exact(acc, follow_env)
    health = sum("/healthz" in message for message in acc.unparsed)
    assert health == 2 * header.count(b"\n"), f"{health} health-check lines delivered"

"""Reliability scenarios of peers.md section 4 against ``logpipe``'s follow command, scaled down
(5k lines/s for a few seconds instead of minutes). Numbers in test names are the scenario numbers.

Each test asserts exact delivery (0 lost, 0 duplicated, per-file order kept, every message whole)
unless the scenario allows less: copytruncate may lose what was not read before each truncation
(the copy -> truncate window plus the poll lag), SIGKILL may duplicate up to about one checkpoint
interval. Such counts are printed in the "follow harness measurements" terminal summary.

Contract assumed of the follow command (see the constants below for the timing assumptions):
it handles SIGTERM by draining and exiting 0; ``--output file:PATH`` writes NDJSON events with
``message``; a ``--access``/``--error`` path may not exist yet; oversized lines and capped records
carry ``logpipe.truncated: true``; a corrupt checkpoint is reported on stderr with "corrupt".
Run against another command with ``LOGPIPE_FOLLOW_COMMAND="..."``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    Accounting,
    FollowEnv,
    GunicornServer,
    Key,
    LogpipeProcess,
    RequestLoop,
    SequencedWriter,
    Stream,
    append,
    append_paced,
    create_empty,
    delete_and_recreate,
    event_field,
    follow_available,
    holds_for,
    keys_in_files,
    message_keys,
    rotate_copytruncate,
    rotate_rename,
    rotated_name,
    truncate,
    wait_until,
)
from tests.follow.writer import access_line, error_record

pytestmark = pytest.mark.integration  # logpipe, writers and gunicorn as subprocesses


@pytest.fixture(autouse=True)
def _follow_mode_exists() -> None:
    """Checked when a scenario runs, not at collection: finding out starts a process."""
    if not follow_available():
        pytest.skip(
            "follow mode not there yet: `python -m logpipe [follow] --help` has no --access"
        )


RATE = 5000  # lines/s
COUNT = 3 * RATE  # 3 s of writing
CHECKPOINT_INTERVAL_S = 1.0  # assumed upper bound of logpipe's checkpoint interval
KILL_DUP_BOUND = int(RATE * (CHECKPOINT_INTERVAL_S + 1.0))  # dups allowed per SIGKILL
RELEASE_TIMEOUT_S = 20.0  # rotated/deleted file drained -> fd closed (quiet period included)
MULTILINE_GAP_S = 0.3  # slow writer's gap between lines; must stay below the multiline timeout
PEAK_RSS_LIMIT_MIB = 200  # while reading 1 MiB and 10 MiB lines
COPYTRUNCATE_LAG_S = 1.0  # copytruncate: loss allowed before each truncation (poll lag)
START_S = 10.0  # start-up and checkpoint-save deadlines
PARTIAL_WAIT_S = 1.5  # a partial last line must stay unshipped this long (peers: 5 s)


def assert_clean(acc: Accounting, env: FollowEnv) -> None:
    assert acc.clean(), f"{acc.summary()}\n{env.diagnostics()}"


def followed_under_load(
    follow_env: FollowEnv, count: int = COUNT, **writer_options: Any
) -> tuple[Path, LogpipeProcess, SequencedWriter]:
    """A new, empty access.log followed by logpipe, and a writer of ``count`` lines at RATE."""
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access])
    return access, run, follow_env.writer(access, rate=RATE, count=count, **writer_options)


def big_access_line(seq: int, pad: int) -> bytes:
    """An access line for ``seq`` whose URL carries ``pad`` extra bytes."""
    line = access_line(seq)
    return line.replace(f"/seq/{seq} ".encode(), f"/seq/{seq}?pad={'x' * pad} ".encode())


# --------------------------------------------------------------------------------------------
# 1-3: rotation under load
# --------------------------------------------------------------------------------------------


def test_01_rename_rotation_under_load(follow_env: FollowEnv) -> None:
    access, _, writer = followed_under_load(follow_env)
    for n in (1, 2):
        writer.wait_written(n * COUNT // 3)
        rotate_rename(access, writer)
        writer.wait_reopens(n)
    stream = writer.wait()
    assert len(stream.generations) == 3
    assert_clean(follow_env.finish([stream]), follow_env)


def test_02_writer_keeps_appending_to_rotated_file(follow_env: FollowEnv, report: Report) -> None:
    access, run, writer = followed_under_load(follow_env, reopen_delay=1.5)
    writer.wait_written(COUNT // 3)
    rotation = rotate_rename(access, writer)
    at_rename = writer.written
    stream = writer.wait()
    late = stream.generations[1] - at_rename
    assert late >= RATE, f"only {late} lines went to the renamed file after the mv"
    report("late lines in the rotated file", late)
    follow_env.wait_shipped([stream])
    rotated = str(rotation.rotated)
    wait_until(
        lambda: rotated not in run.open_paths(),
        RELEASE_TIMEOUT_S,
        what=f"logpipe closing {rotated} after EOF and a quiet period",
    )
    assert_clean(follow_env.finish([stream]), follow_env)


def gunicorn_with_two_rotations(
    env: FollowEnv, rotate: Callable[[Path, GunicornServer], object]
) -> tuple[Stream, Counter[Key]]:
    """Real gunicorn serving 1,500 requests at 500/s while logpipe follows, ``rotate``d after
    500 and 1,000; the requests sent, and which of their lines are in some file on disk."""
    access, error = env.log("access.log"), env.log("error.log")
    server = env.gunicorn(access, error)
    run = env.logpipe(access=[access], error=[error])
    # requests start once logpipe has the file open: started after a rotation, it would not
    # read the rotated file (a first start reads only what is at the path)
    wait_until(lambda: f"opened {access} " in run.stderr_text(), 30, what="logpipe started")
    client = RequestLoop(server, count=1500, rate=500)
    client.start()
    for target in (500, 1000):
        client.wait_sent(target)
        rotate(access, server)
    client.join(30)
    assert client.sent == 1500 and not client.errors, client.errors
    assert server.stop() == 0
    return client.stream(), keys_in_files(
        [access, rotated_name(access, 1), rotated_name(access, 2)]
    )


def test_02_real_gunicorn_usr1(follow_env: FollowEnv) -> None:
    stream, on_disk = gunicorn_with_two_rotations(follow_env, rotate_rename)
    assert on_disk == dict.fromkeys(stream.sent_keys(), 1)
    acc = follow_env.finish([stream])
    # Two workers reopen at slightly different times: no global order to check here.
    assert not (acc.lost or acc.duplicated or acc.malformed or acc.unexpected), acc.summary()


def test_03_real_gunicorn_copytruncate(follow_env: FollowEnv) -> None:
    """logrotate copytruncate on real gunicorn (no signal: workers keep their O_APPEND fds)."""
    stream, on_disk = gunicorn_with_two_rotations(
        follow_env, lambda access, server: rotate_copytruncate(access)
    )
    # Only lines that copytruncate itself destroyed (written between the copy and the truncate,
    # so in no file on disk) may be missing.
    destroyed = set(stream.sent_keys()) - set(on_disk)
    acc = follow_env.finish([stream], allowed_lost=destroyed)
    assert not (acc.duplicated or acc.malformed or acc.unexpected), acc.summary()
    assert set(acc.lost) <= destroyed, acc.summary()


def test_03_copytruncate_under_load(follow_env: FollowEnv, report: Report) -> None:
    access, _, writer = followed_under_load(follow_env)
    for n in (1, 2):
        writer.wait_written(n * COUNT // 3)
        rotate_copytruncate(access)
    stream = writer.wait()
    files = [rotated_name(access, 2), rotated_name(access, 1), access]  # oldest first
    on_disk = keys_in_files(files)
    destroyed = set(stream.sent_keys()) - set(on_disk)  # appended between copy and truncate
    # Lines not yet read when the file was truncated survive only in the copy: a tailer of
    # access.log alone loses them. Allowed: up to COPYTRUNCATE_LAG_S of lines before each cut.
    cuts = [min(seq for _, seq in keys_in_files([path])) for path in files[1:]]
    window = {("", seq) for cut in cuts for seq in range(cut - int(RATE * COPYTRUNCATE_LAG_S), cut)}
    acc = follow_env.finish([stream], allowed_lost=window)
    report(
        "copytruncate: lost / destroyed by copy->truncate", f"{len(acc.lost)} / {len(destroyed)}"
    )
    assert destroyed <= window and set(acc.lost) <= window, acc.summary()
    assert not (acc.duplicated or acc.order_violations or acc.malformed), acc.summary()


# --------------------------------------------------------------------------------------------
# 4-6: identity and restarts
# --------------------------------------------------------------------------------------------


def test_04_truncated_while_stopped_then_grown(follow_env: FollowEnv) -> None:
    access = follow_env.log("access.log")
    first = follow_env.writer(access, rate=0, count=2000).wait()
    follow_env.logpipe(access=[access])
    follow_env.finish([first])
    old_size = truncate(access)
    second = follow_env.writer(access, rate=0, count=4000, start=2000).wait()
    assert access.stat().st_size > old_size
    follow_env.logpipe(access=[access])
    assert_clean(follow_env.finish([first, second]), follow_env)


def test_05_delete_recreate_same_inode_while_stopped(follow_env: FollowEnv, report: Report) -> None:
    access = follow_env.log("access.log")
    first = follow_env.writer(access, rate=0, count=2000).wait()
    follow_env.logpipe(access=[access])
    follow_env.finish([first])
    rotation = delete_and_recreate(access, same_inode=True)
    report("inode reused (stopped)", rotation.inode_reused)
    if not rotation.inode_reused:
        pytest.skip("this filesystem did not hand the inode back")
    second = follow_env.writer(access, rate=0, count=4000, start=2000).wait()
    follow_env.logpipe(access=[access])
    assert_clean(follow_env.finish([first, second]), follow_env)


@pytest.fixture
def other_fs_dir() -> Iterator[Path | None]:
    """A scratch directory on another filesystem (tmpfs /dev/shm), or None."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="logpipe-state-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_05_delete_recreate_same_inode_while_running(
    follow_env: FollowEnv, report: Report, other_fs_dir: Path | None
) -> None:
    access = follow_env.log("access.log")
    first = follow_env.writer(access, rate=0, count=2000).wait()
    # Checkpoints kept on the logs' filesystem would likely take the freed inode first.
    run = follow_env.logpipe(access=[access], state_dir=other_fs_dir)
    follow_env.wait_shipped([first])
    rotation = delete_and_recreate(
        access, same_inode=True, holders=[run.pid], release_timeout=RELEASE_TIMEOUT_S
    )
    report("inode reused (running; needs logpipe to close the deleted file)", rotation.inode_reused)
    second = follow_env.writer(access, rate=0, count=4000, start=2000).wait()
    assert_clean(follow_env.finish([first, second]), follow_env)


def test_06_restart_sigterm_mid_file(follow_env: FollowEnv) -> None:
    access, run, writer = followed_under_load(follow_env)
    writer.wait_written(COUNT // 3)
    follow_env.wait_shipped([Stream(count=COUNT // 4)])
    assert run.stop() == 0, follow_env.diagnostics()
    follow_env.logpipe(access=[access])
    assert_clean(follow_env.finish([writer.wait()]), follow_env)


def test_06_restart_sigkill_mid_file(follow_env: FollowEnv, report: Report) -> None:
    access, run, writer = followed_under_load(follow_env)
    writer.wait_written(COUNT // 2)
    follow_env.wait_shipped([Stream(count=COUNT // 3)])
    run.kill()
    follow_env.logpipe(access=[access])
    acc = follow_env.finish([writer.wait()])
    report("SIGKILL: duplicates", acc.duplicated)
    assert not (acc.lost or acc.order_violations or acc.malformed), acc.summary()
    assert acc.duplicated <= KILL_DUP_BOUND, acc.summary()


# --------------------------------------------------------------------------------------------
# 9-11: line and record shapes
# --------------------------------------------------------------------------------------------


def test_09_lines_larger_than_the_limit(follow_env: FollowEnv, report: Report) -> None:
    access = follow_env.log("access.log")
    big = {100: 1 << 20, 200: 10 << 20}
    with open(access, "wb") as f:
        for seq in range(300):
            f.write(big_access_line(seq, big[seq]) if seq in big else access_line(seq))
    run = follow_env.logpipe(access=[access])
    follow_env.wait_shipped([Stream(count=300)])
    peak = run.peak_rss_kib() // 1024
    report("peak RSS with 1 MiB + 10 MiB lines (MiB)", peak)
    acc = follow_env.finish([Stream(count=300)])
    assert not (acc.lost or acc.duplicated or acc.order_violations), acc.summary()
    assert {key for key, _ in acc.malformed} <= {("", 100), ("", 200)}
    for event in follow_env.events():
        if "/seq/100?" in event["message"] or "/seq/200?" in event["message"]:
            assert event_field(event, "logpipe.truncated") is True
            assert len(event["message"].encode()) <= 1 << 20
    assert peak <= PEAK_RSS_LIMIT_MIB, f"peak RSS {peak} MiB reading lines cut at the limit"


def test_10_partial_last_line_completed_later(follow_env: FollowEnv) -> None:
    access = follow_env.log("access.log")
    last = access_line(10)
    append(access, b"".join(access_line(seq) for seq in range(10)) + last[:-20])
    follow_env.logpipe(access=[access])
    follow_env.wait_shipped([Stream(count=10)])
    assert holds_for(lambda: not follow_env.account([]).seen[("", 10)], PARTIAL_WAIT_S)
    append(access, last[-20:] + access_line(11))
    acc = follow_env.finish([Stream(count=12)])
    assert_clean(acc, follow_env)
    assert not acc.unparsed


def test_10_shutdown_while_partial(follow_env: FollowEnv) -> None:
    access = follow_env.log("access.log")
    last = access_line(10)
    append(access, b"".join(access_line(seq) for seq in range(10)) + last[:-20])
    run = follow_env.logpipe(access=[access])
    follow_env.wait_shipped([Stream(count=10)])
    assert run.stop() == 0, follow_env.diagnostics()
    append(access, last[-20:] + access_line(11))
    follow_env.logpipe(access=[access])
    acc = follow_env.finish([Stream(count=12)])
    assert_clean(acc, follow_env)
    assert not acc.unparsed


def test_11_tracebacks_across_read_buffers(follow_env: FollowEnv) -> None:
    error = follow_env.log("error.log")
    create_empty(error)
    follow_env.logpipe(error=[error])
    writer = follow_env.writer(
        error, kind="error", rate=2000, count=4000, traceback_every=2, frames=5, burst=50
    )
    assert_clean(follow_env.finish([writer.wait()]), follow_env)


def test_11_slow_writer_within_timeout(follow_env: FollowEnv) -> None:
    error = follow_env.log("error.log")
    create_empty(error)
    follow_env.logpipe(error=[error])
    record = error_record(0, traceback=True, frames=3)
    append_paced(error, record.splitlines(keepends=True), MULTILINE_GAP_S)
    append(error, error_record(1))
    stream = Stream(kind="error", count=2, traceback_every=2, frames=3)
    assert_clean(follow_env.finish([stream]), follow_env)


def records(seqs: range, label: str = "", every: int = 2) -> bytes:
    """Error records, one in ``every`` with a traceback (``Stream.traceback_every``)."""
    return b"".join(error_record(seq, label, traceback=seq % every == 0) for seq in seqs)


def test_11_rotation_with_a_pending_record(follow_env: FollowEnv) -> None:
    error = follow_env.log("error.log")
    stream = Stream(kind="error", count=101, traceback_every=2, generations=(0, 51))
    append(error, records(range(51)))  # the last one (50, with a traceback) is still pending
    follow_env.logpipe(error=[error])
    follow_env.wait_shipped([stream], allowed_lost=[("", n) for n in range(50, 101)])
    rotate_rename(error)
    append(error, records(range(51, 101)))
    assert_clean(follow_env.finish([stream]), follow_env)


def test_11_huge_traceback_is_capped(follow_env: FollowEnv, report: Report) -> None:
    error = follow_env.log("error.log")
    records = [error_record(seq) for seq in range(10)]
    records[1] = error_record(1, traceback=True, frames=50_000)  # 100,002 lines
    append(error, b"".join(records))
    run = follow_env.logpipe(error=[error])
    follow_env.wait_shipped([Stream(kind="error", count=10)])
    report("peak RSS with a 100k-line traceback (MiB)", run.peak_rss_kib() // 1024)
    acc = follow_env.finish([Stream(kind="error", count=10)])
    assert not (acc.lost or acc.duplicated or acc.order_violations), acc.summary()
    assert [key for key, _ in acc.malformed] == [("", 1)]
    report("events for the 100k-line record", 1 + len(acc.unparsed))
    first = next(e for e in follow_env.events() if message_keys(e["message"])[1][:1] == [("", 1)])
    assert event_field(first, "logpipe.truncated") is True


# --------------------------------------------------------------------------------------------
# 12-16: discovery, odd files, checkpoints
# --------------------------------------------------------------------------------------------


def test_12_inotify_overflow_burst(follow_env: FollowEnv) -> None:
    """20,000 files created and deleted beside the log (inotify's queue overflows) while it is
    rotated: nothing lost. The writer runs long enough to still be writing at the rotation
    however slowly the file system creates files (20,000 took 4 s on a loaded machine)."""
    access, _, writer = followed_under_load(follow_env, count=4 * COUNT)
    writer.wait_written(COUNT // 3)
    junk = [follow_env.log(f"junk-{n}.tmp") for n in range(20_000)]
    for n, path in enumerate(junk):
        create_empty(path)
        if n == 10_000:
            rotate_rename(access, writer)
    for path in junk:
        path.unlink()
    writer.wait_reopens(1)
    assert_clean(follow_env.finish([writer.wait()]), follow_env)


def test_13_new_file_written_before_discovery(follow_env: FollowEnv) -> None:
    probe, new = follow_env.log("probe.log"), follow_env.log("new.log")
    append(probe, b"".join(access_line(seq, "old") for seq in range(100)))
    follow_env.logpipe(access=[probe, new], start_at="end")
    follow_env.wait_following(probe)
    append(new, b"".join(access_line(seq, "new") for seq in range(200)))
    stream = Stream(label="new", count=200)
    follow_env.finish([stream])
    acc = follow_env.final_account([stream])
    assert not (acc.lost or acc.duplicated or acc.order_violations or acc.malformed)
    assert not [key for key in acc.seen if key[0] == "old"], "--start-at end shipped old lines"


def test_14_tiny_files(follow_env: FollowEnv) -> None:
    error, access = follow_env.log("error.log"), follow_env.log("access.log")
    append(error, error_record(0, "tiny"))
    append(access, access_line(0, "one"))
    assert error.stat().st_size <= 80
    follow_env.logpipe(access=[access], error=[error])
    streams = [Stream(label="tiny", count=1, kind="error"), Stream(label="one", count=1)]
    follow_env.wait_shipped(streams, timeout=5.0)
    assert_clean(follow_env.finish(streams), follow_env)


def test_15_invalid_utf8_nul_bytes_crlf(follow_env: FollowEnv) -> None:
    access, nul = follow_env.log("access.log"), follow_env.log("nul.log")
    lines = [access_line(seq) for seq in range(20)]
    lines[10] = lines[10].replace(b"seq-writer", b"seq-\xff\xfewriter")
    lines[11] = lines[11].replace(b"seq-writer", b"seq-\x00writer")
    lines[12] = access_line(12, end=b"\r\n")
    lines[13] = access_line(13, end=b"\r\n").replace(b"seq-writer", b"seq-\xff\xfewriter")
    lines.insert(15, b"\xff\xfe\x00 not a log line\n")
    append(access, b"".join(lines))
    append(nul, b"\x00" * 4096 + b"".join(access_line(seq, "n") for seq in range(10)))
    run = follow_env.logpipe(access=[access, nul])
    streams = [Stream(count=20), Stream(label="n", count=10)]
    follow_env.wait_shipped(streams)
    assert run.running
    acc = follow_env.finish(streams)
    assert not (acc.lost or acc.duplicated or acc.order_violations), acc.summary()
    assert {key for key, _ in acc.malformed} <= {("n", 0)}, acc.summary()
    for event in follow_env.events():
        assert not event["message"].endswith("\r")
        if "/seq/10 " in event["message"] or "/seq/13 " in event["message"]:
            assert "\ufffd" in event["message"] or event_field(event, "logpipe.invalid_utf8")


BACKUP_NAME = re.compile(r"(\.bak|\.tmp|\.old|\.prev|~)(\.\d+)?$")
STATE_PROBLEM = re.compile(r"corrupt|unusable|damaged|invalid|torn", re.IGNORECASE)


def state_files(state: Path, *, backups: bool) -> list[Path]:
    """Checkpoint files of ``state``: the main ones, or also backups and temporaries."""
    files = sorted(p for p in state.rglob("checkpoints*") if p.is_file())  # not the lock file
    return files if backups else [p for p in files if not BACKUP_NAME.search(p.name)]


def state_snapshot(state: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in state_files(state, backups=False)}


def wait_for_save(state: Path, before: dict[Path, bytes]) -> None:
    wait_until(lambda: state_snapshot(state) != before, START_S, what=f"a save in {state}")


def corrupt(path: Path, how: str) -> None:
    """Damage the content seen under ``path`` only: a new file replaces it, so another name of
    the same inode (a hard-linked backup) keeps the old content."""
    data = path.read_bytes()
    bad = {"nul": b"\x00" * max(len(data), 64), "torn": data[: len(data) // 2], "empty": b""}[how]
    tmp = path.with_name(path.name + ".corrupting")
    tmp.write_bytes(bad)
    os.replace(tmp, path)


def two_checkpoints(env: FollowEnv, access: Path) -> list[Stream]:
    """Ship two batches with a checkpoint save after each (so a backup of the first may be
    kept), then stop; the batches."""
    first = env.writer(access, rate=0, count=2000).wait()
    env.logpipe(access=[access])
    env.wait_shipped([first])
    wait_for_save(env.state, {})
    saved = state_snapshot(env.state)
    second = env.writer(access, rate=0, count=2000, start=2000).wait()
    env.wait_shipped([first, second])
    wait_for_save(env.state, saved)
    env.finish([first, second])
    return [first, second]


@pytest.mark.parametrize("how", ["nul", "torn", "empty"])
def test_16_corrupt_checkpoint_falls_back(follow_env: FollowEnv, report: Report, how: str) -> None:
    access = follow_env.log("access.log")
    batches = two_checkpoints(follow_env, access)
    for path in state_files(follow_env.state, backups=False):
        corrupt(path, how)
    third = follow_env.writer(access, rate=0, count=2000, start=4000).wait()
    run = follow_env.logpipe(access=[access])
    acc = follow_env.finish([*batches, third])
    report(f"corrupt checkpoint ({how}): duplicates", acc.duplicated)
    assert not (acc.lost or acc.order_violations or acc.malformed), acc.summary()
    assert acc.duplicated < 4000, "reset to read-all instead of using the backup"
    assert STATE_PROBLEM.search(run.stderr_text()), run.stderr_tail()


def test_16_all_checkpoints_corrupt_is_loud(follow_env: FollowEnv, report: Report) -> None:
    access = follow_env.log("access.log")
    batches = two_checkpoints(follow_env, access)
    for path in state_files(follow_env.state, backups=True):
        corrupt(path, "nul")
    run = follow_env.logpipe(access=[access])
    wait_until(lambda: not run.running or STATE_PROBLEM.search(run.stderr_text()), START_S)
    assert STATE_PROBLEM.search(run.stderr_text()), "corrupt checkpoints not reported"
    # Reported: now it either exits (refuses) or goes on to open the file (runs on).
    wait_until(lambda: not run.running or "opened" in run.stderr_text(), START_S)
    if not run.running:
        report("all checkpoints corrupt", f"refused to start, exit {run.returncode}")
        assert run.returncode != 0
        return
    acc = follow_env.finish(batches)
    report("all checkpoints corrupt", f"ran on, {acc.duplicated} duplicates")
    assert not acc.lost, acc.summary()


def test_16_repeated_sigkill_during_writes(follow_env: FollowEnv, report: Report) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(access=[access])
    writer = follow_env.writer(access, rate=RATE, duration=60)
    kills = 4
    for _ in range(kills):  # each run lives until it has saved a checkpoint of its own
        wait_for_save(follow_env.state, state_snapshot(follow_env.state))
        run.kill()
        run = follow_env.logpipe(access=[access])
    stream = writer.stop()
    acc = follow_env.finish([stream])
    report(f"{kills} SIGKILLs after a save: duplicates", acc.duplicated)
    assert not (acc.lost or acc.order_violations or acc.malformed), acc.summary()
    assert acc.duplicated <= kills * KILL_DUP_BOUND, acc.summary()


# --------------------------------------------------------------------------------------------
# 19-20: shutdown and scale
# --------------------------------------------------------------------------------------------


def test_19_graceful_shutdown_drains(follow_env: FollowEnv) -> None:
    error, access = follow_env.log("error.log"), follow_env.log("access.log")
    append(error, records(range(20), "e", every=19))  # 0 and 19 with tracebacks
    create_empty(access)
    run = follow_env.logpipe(access=[access], error=[error])
    errors = Stream(label="e", kind="error", count=20, traceback_every=19)
    writer = follow_env.writer(access, rate=RATE, count=COUNT // 3)
    follow_env.wait_shipped([Stream(label="e", kind="error", count=19), Stream(count=1000)])
    writer.wait_written(COUNT // 6)
    assert run.stop() == 0, follow_env.diagnostics()  # mid-stream, record 19 maybe pending
    run_1 = Accounting.of(follow_env.events(), [errors])
    assert run_1.seen[("e", 19)] == 1, "pending multiline record not flushed at shutdown"
    assert not run_1.malformed, run_1.summary()
    follow_env.logpipe(access=[access], error=[error])
    assert_clean(follow_env.finish([errors, writer.wait()]), follow_env)


def many_files(env: FollowEnv, count: int) -> list[Path]:
    paths = [env.log(f"app-{n:04d}.log") for n in range(count)]
    for n, path in enumerate(paths):
        append(path, b"".join(access_line(seq, f"f{n}") for seq in range(3)))
    return paths


def append_more(paths: list[Path]) -> list[Stream]:
    for n, path in enumerate(paths):
        append(path, b"".join(access_line(seq, f"f{n}") for seq in range(3, 5)))
    return [Stream(label=f"f{n}", count=5) for n in range(len(paths))]


def test_20_many_files(follow_env: FollowEnv) -> None:
    paths = many_files(follow_env, 1000)
    follow_env.logpipe(access=paths)
    follow_env.wait_shipped([Stream(label=f"f{n}", count=3) for n in range(1000)], timeout=60)
    assert_clean(follow_env.finish(append_more(paths)), follow_env)


# What logpipe must say on stderr when the descriptor limit keeps it from holding every file open
# (logpipe prints "open-files-limit  limit=192 waiting=808").
FD_WARNING = re.compile(r"open.files.limit|too many open files|descriptor limit", re.IGNORECASE)


def test_20_many_files_with_a_low_fd_limit(follow_env: FollowEnv, report: Report) -> None:
    """1000 files under a 256-descriptor limit: logpipe cannot hold them all open at once, says
    so on stderr, and still delivers every line of every file exactly once, in order: the three
    lines each file had at the start and the two appended to each afterwards (to files parked
    closed as well as open ones)."""
    files = 1000
    paths = many_files(follow_env, files)
    run = follow_env.logpipe(access=paths, nofile=256)
    started = time.monotonic()
    first = [Stream(f"f{n}", count=3) for n in range(files)]
    follow_env.wait_shipped(first, timeout=60)
    report(
        "1000 files under a 256 fd limit: first lines shipped in (s)",
        round(time.monotonic() - started, 1),
    )
    assert FD_WARNING.search(run.stderr_text()), f"limit not reported: {run.stderr_tail()}"
    streams = append_more(paths)  # every file written again: none may be forgotten
    acc = follow_env.finish(streams)
    assert_clean(acc, follow_env)
    assert acc.seen == Counter({key: 1 for stream in streams for key in stream.sent_keys()})
    assert acc.events == files * 5, acc.summary()

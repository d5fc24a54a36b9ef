"""Tests of the follow harness itself (no logpipe needed)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import orjson
import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    ACCESS_LINE,
    PYTHON,
    Accounting,
    FollowEnv,
    LogpipeProcess,
    RequestLoop,
    Stream,
    WaitTimeout,
    append,
    delete_and_recreate,
    event_field,
    holds_for,
    keys_in_files,
    read_events,
    rotate_copytruncate,
    rotate_rename,
    swap_symlink,
    truncate,
    wait_until,
)
from tests.follow.writer import access_line, error_record

# Integration tier: writer, logpipe and gunicorn subprocesses.
pytestmark = pytest.mark.integration

RATE = 5000


def file_seqs(path: Path) -> list[int]:
    """Sequence numbers of an access log, in file order."""
    return [int(line.split(b"/seq/")[1].split(b" ")[0]) for line in path.read_bytes().splitlines()]


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def test_writer_exact_count_at_rate(follow_env: FollowEnv, report: Report) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, count=7500)
    stream = writer.wait()
    assert stream.count == 7500 and stream.generations == (0,)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 7501
    assert all(ACCESS_LINE.fullmatch(line.decode()) for line in lines[:-1])
    assert file_seqs(path) == list(range(7500))
    report("writer rate (lines/s, target 5000)", round(writer.rate))
    assert 0.8 * RATE <= writer.rate <= 1.05 * RATE  # paced: never faster; slower if starved


def test_writer_duration_mode_and_label(follow_env: FollowEnv) -> None:
    path = follow_env.log("access.log")
    stream = follow_env.writer(path, rate=2000, duration=0.5, start=100, label="w1").wait()
    assert 800 <= stream.count <= 1100
    assert keys_in_files([path]) == dict.fromkeys(stream.sent_keys(), 1)


def test_writer_stops_cleanly_on_sigterm(follow_env: FollowEnv) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, duration=30)
    writer.wait_written(500)
    stream = writer.stop()
    assert stream.count >= 500
    assert file_seqs(path) == list(range(stream.count))


def test_sigusr1_reopens_and_splits_exactly(follow_env: FollowEnv) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, count=6000)
    writer.wait_written(2000)
    rotation = rotate_rename(path, writer)
    writer.wait_reopens(1)
    stream = writer.wait()
    split = stream.generations[1]
    assert stream.generations == (0, split) and 2000 <= split < 6000
    assert file_seqs(path.with_name("access.log.1")) == list(range(split))
    assert file_seqs(path) == list(range(split, 6000))
    assert writer.report is not None and writer.report["inodes"][1] == rotation.new_inode


def test_reopen_delay_keeps_writing_to_the_renamed_file(follow_env: FollowEnv) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, count=6000, reopen_delay=0.4)
    writer.wait_written(1000)
    rotate_rename(path, writer)
    at_rename = path.with_name("access.log.1").stat().st_size // len(access_line(1000))
    writer.wait_reopens(1)
    stream = writer.wait()
    late = stream.generations[1] - at_rename  # lines that landed in the old file after the mv
    assert late >= 0.5 * RATE * 0.4, late
    assert file_seqs(path.with_name("access.log.1")) + file_seqs(path) == list(range(6000))


def test_error_records_account_clean(follow_env: FollowEnv) -> None:
    path = follow_env.log("error.log")
    writer = follow_env.writer(path, kind="error", rate=0, count=300, traceback_every=3)
    stream = writer.wait()
    text = path.read_text()
    assert text.count("Traceback (most recent call last):") == 100
    records = ["[" + r for r in text.split("\n[")]
    records[0] = records[0][1:]
    events = [{"message": r.rstrip("\n")} for r in records]
    acc = Accounting.of(events, [stream])
    assert acc.clean(), acc.summary()
    assert acc.sent == 300 and len(acc.seen) == 300


# --------------------------------------------------------------------------------------------
# Rotation helpers
# --------------------------------------------------------------------------------------------


def test_rotate_rename_shifts_and_creates(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    append(path, access_line(0))
    first = rotate_rename(path)
    assert first.rotated == tmp_path / "access.log.1" and first.old_inode != first.new_inode
    assert path.stat().st_size == 0 and path.stat().st_ino == first.new_inode
    append(path, access_line(1))
    rotate_rename(path)
    assert file_seqs(tmp_path / "access.log.2") == [0]
    assert file_seqs(tmp_path / "access.log.1") == [1]
    assert path.read_bytes() == b""


def test_copytruncate_under_load(follow_env: FollowEnv, report: Report) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, count=5000)
    writer.wait_written(2000)
    rotation = rotate_copytruncate(path)
    assert rotation.old_inode == rotation.new_inode and rotation.copied > 0
    stream = writer.wait()
    assert stream.generations == (0,)  # no reopen: the same fd goes on at offset 0
    copy, live = file_seqs(path.with_name("access.log.1")), file_seqs(path)
    assert path.read_bytes()[:1] == b"1"  # O_APPEND: no NUL-filled hole at the start
    window = sorted(set(range(5000)) - set(copy) - set(live))
    assert copy == list(range(len(copy))) and live == list(range(live[0], 5000))
    assert window == list(range(len(copy), live[0]))  # the only loss: copy -> truncate
    report("copytruncate window loss (lines)", len(window))


def test_truncate_in_place(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    append(path, access_line(0) * 3)
    inode = path.stat().st_ino
    assert truncate(path) == 3 * len(access_line(0))
    assert path.stat().st_size == 0 and path.stat().st_ino == inode


def test_delete_and_recreate_inode_reuse(tmp_path: Path, report: Report) -> None:
    path = tmp_path / "access.log"
    append(path, access_line(0))
    fd = os.open(path, os.O_RDONLY)  # a reader (logpipe) still holding the old file
    try:
        held = delete_and_recreate(
            path, same_inode=True, holders=[os.getpid()], release_timeout=0.2
        )
    finally:
        os.close(fd)
    assert not held.inode_reused and path.stat().st_size == 0
    append(path, access_line(1))
    free = delete_and_recreate(path, same_inode=True, holders=[os.getpid()])
    report("inode reused while held open", held.inode_reused)
    report("inode reused once released (ext4 here)", free.inode_reused)
    assert path.read_bytes() == b""


def test_delete_and_recreate_reopens_writer(follow_env: FollowEnv) -> None:
    path = follow_env.log("access.log")
    writer = follow_env.writer(path, rate=RATE, count=3000)
    writer.wait_written(1000)
    rotation = delete_and_recreate(path, writer)
    writer.wait_reopens(1)
    stream = writer.wait()
    assert writer.report is not None and writer.report["inodes"][-1] == rotation.new_inode
    assert file_seqs(path) == list(range(stream.generations[1], 3000))


def test_swap_symlink_is_atomic(tmp_path: Path) -> None:
    a, b, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    append(a, access_line(0))
    append(b, access_line(1))
    os.symlink(a, link)
    failures: list[OSError] = []
    done = threading.Event()

    def resolve() -> None:
        while not done.is_set():
            try:
                link.stat()
            except OSError as error:
                failures.append(error)

    reader = threading.Thread(target=resolve)
    reader.start()
    try:
        for n in range(200):
            assert swap_symlink(link, b if n % 2 == 0 else a) == (a if n % 2 == 0 else b)
    finally:
        done.set()
        reader.join()
    assert not failures and Path(os.readlink(link)) == a
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "b.log", "current.log"]


# --------------------------------------------------------------------------------------------
# Output reading and accounting
# --------------------------------------------------------------------------------------------


def ev(message: str, path: str = "/l/access.log", offset: int = 0) -> dict[str, object]:
    return {"message": message, "logpipe": {"path": path, "offset": offset}}


def line(seq: int, label: str = "") -> str:
    return access_line(seq, label).decode().rstrip("\n")


def test_accounting_counts_exactly(tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    order = [0, 1, 2, 2, 4, 5, 3, 7, 8, 8, 8]
    rows = [ev(line(n)) for n in order]
    rows.append(ev(line(9)[:60]))  # torn: the partial line of seq 9
    rows.append(ev(line(1, "x")))  # never sent
    rows.append(ev("something else entirely"))
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out.write_bytes(data + b'{"message": "half')  # a line still being written
    events = read_events(out)
    assert len(events) == len(rows)
    with pytest.raises(ValueError, match="unterminated"):
        read_events(out, strict=True)

    acc = Accounting.of(events, [Stream(count=10)])
    assert acc.lost == [("", 6)]
    assert acc.duplicated == 3 and acc.duplicated_keys == [("", 2), ("", 8)]
    assert acc.order_violations == [(("", 3), 5)]
    assert [key for key, _ in acc.malformed] == [("", 9)]
    assert acc.unexpected == [("x", 1)]
    assert acc.unparsed == ["something else entirely"]
    assert not acc.clean()
    assert "lost=1 [:6]" in acc.summary() and "duplicated=3" in acc.summary()

    per_file = Accounting.of(events, [Stream(count=10, generations=(0, 4))])
    assert per_file.order_violations == []  # 3 and 4, 5 went to different files


def test_accounting_error_records() -> None:
    stream = Stream(kind="error", count=4, traceback_every=2)
    whole = [error_record(n, traceback=n % 2 == 0).decode().rstrip("\n") for n in range(4)]
    assert Accounting.of([ev(m) for m in whole], [stream]).clean()
    joined = ev(whole[0] + "\n" + whole[1])
    no_tb = ev(whole[2].split("\n")[0])
    acc = Accounting.of([joined, no_tb, ev(whole[3])], [stream])
    assert acc.lost == [("", 1)]
    assert [key for key, _ in acc.malformed] == [("", 0), ("", 0), ("", 2)]


def test_clean_stream_and_event_field() -> None:
    events = [ev(line(n, "a"), offset=n) for n in range(5)]
    acc = Accounting.of(events, [Stream(label="a", count=5)])
    assert acc.clean() and acc.lost == [] and acc.duplicated == 0
    assert event_field(events[3], "logpipe.offset") == 3
    assert event_field({"logpipe.path": "/x"}, "logpipe.path") == "/x"
    assert event_field(events[0], "logpipe.nothing") is None


def test_wait_until_and_holds_for() -> None:
    hits = iter(range(100))
    assert wait_until(lambda: next(hits) >= 3, timeout=2, interval=0.001) is True
    with pytest.raises(WaitTimeout, match="never"):
        wait_until(lambda: False, timeout=0.05, what="never")
    assert holds_for(lambda: True, 0.05)
    flips = iter([True, True, False])
    assert not holds_for(lambda: next(flips), 5)


# --------------------------------------------------------------------------------------------
# Process control (a stand-in for logpipe) and real gunicorn
# --------------------------------------------------------------------------------------------

STANDIN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "if '--ignore-term' in sys.argv: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('args', sys.argv[1:], file=sys.stderr, flush=True)\n"
    "while True: time.sleep(0.01)\n"
)


def standin(tmp_path: Path, *extra: str) -> LogpipeProcess:
    return LogpipeProcess(
        access=[tmp_path / "a.log"],
        error=[tmp_path / "e.log"],
        state_dir=tmp_path,
        output=tmp_path / "out.ndjson",
        stderr_path=tmp_path / "stderr.txt",
        extra_args=extra,
        command=[PYTHON, "-c", STANDIN],
    )


def test_logpipe_process_stop_and_kill(tmp_path: Path) -> None:
    proc = standin(tmp_path).start()
    wait_until(lambda: "args" in proc.stderr_text(), timeout=5)
    assert (
        "'--access', " in proc.stderr_text() and "'--start-at', 'beginning'" in proc.stderr_text()
    )
    assert proc.peak_rss_kib() > 0
    assert proc.stop() == 0
    assert standin(tmp_path).start().kill() == -signal.SIGKILL
    stubborn = standin(tmp_path, "--ignore-term").start()
    wait_until(lambda: "args" in stubborn.stderr_text(), timeout=5)
    with pytest.raises(AssertionError, match="did not exit"):
        stubborn.stop(timeout=0.3)
    assert not stubborn.running


def test_gunicorn_usr1_split(follow_env: FollowEnv) -> None:
    access, error = follow_env.log("access.log"), follow_env.log("error.log")
    server = follow_env.gunicorn(access, error)
    client = RequestLoop(server, count=400, rate=400)
    client.start()
    wait_until(lambda: client.sent >= 150, timeout=10)
    rotate_rename(access, server)
    wait_until(lambda: "Handling signal: usr1" in error.read_text(), timeout=5)
    client.join(20)
    assert client.sent == 400 and not client.errors
    stream = client.stream()
    wait_until(
        lambda: sum(keys_in_files([access, access.with_name("access.log.1")]).values()) >= 400,
        timeout=10,
    )
    assert server.stop() == 0
    old, new = keys_in_files([access.with_name("access.log.1")]), keys_in_files([access])
    assert old and new and old + new == dict.fromkeys(stream.sent_keys(), 1)
    assert all(ACCESS_LINE.fullmatch(x) for x in access.read_text().splitlines())

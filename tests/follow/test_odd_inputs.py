"""Followed paths that are not plain readable files, and wildcards, with the real process:
logpipe says what is wrong once, keeps shipping everything else, and stops at once."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.follow.harness import (
    PYTHON,
    FollowEnv,
    Stream,
    holds_for,
    rotate_rename,
    wait_until,
)
from tests.follow.writer import access_line

pytestmark = pytest.mark.integration

RATE, COUNT = 1000, 3000


def test_a_fifo_and_a_directory_do_not_stop_the_other_files(follow_env: FollowEnv) -> None:
    access, fifo, directory = (follow_env.log(name) for name in ("a.log", "f.log", "d.log"))
    access.touch()
    os.mkfifo(fifo)
    directory.mkdir()
    run = follow_env.logpipe(access=[fifo, directory, access])
    stream = follow_env.writer(access, rate=RATE, count=COUNT).wait()
    follow_env.wait_shipped([stream])
    started = time.monotonic()
    assert run.stop() == 0
    assert time.monotonic() - started < 5, "SIGTERM took long: blocked on the FIFO?"
    acc = follow_env.final_account([stream])
    assert acc.clean(), acc.summary()
    said = run.stderr_text()
    assert said.count(f"cannot follow {fifo}: is a FIFO, not a regular file") == 1, said
    assert said.count(f"cannot follow {directory}: is a directory, not a regular file") == 1
    assert "Traceback" not in said


def without_root_read_bypass() -> list[str]:
    """The follow command without CAP_DAC_OVERRIDE: as root, modes apply (CI runs as root)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission bypass")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--",
            PYTHON, "-m", "logpipe"]  # fmt: skip


def test_an_unreadable_file_is_said_once_and_shipped_once_readable(
    follow_env: FollowEnv,
) -> None:
    access = follow_env.log("access.log")
    access.write_bytes(b"".join(access_line(seq) for seq in range(100)))
    access.chmod(0)
    run = follow_env.logpipe(
        access=[access], start_at="beginning", command=without_root_read_bypass()
    )
    wait_until(lambda: "Permission denied" in run.stderr_text(), 10, what="the refusal said")
    said_once = lambda: run.stderr_text().count("Permission denied") == 1  # noqa: E731
    assert holds_for(said_once, 1.5), run.stderr_text()  # rescans go on: said once
    access.chmod(0o644)
    stream = Stream(count=100)
    acc = follow_env.finish([stream])
    assert acc.clean(), acc.summary()
    assert f"{access} can be read again" in run.stderr_text()


def test_a_wildcard_follows_files_that_appear_and_rotate(follow_env: FollowEnv) -> None:
    """``*access.log``: files created after the start are read whole; a rotated file (renamed
    to a name the pattern does not match) is read to its end; every line once."""
    first, second = follow_env.log("a-access.log"), follow_env.log("b-access.log")
    run = follow_env.logpipe(access=[follow_env.logs / "*access.log"])
    wait_until(lambda: "no file matches" in run.stderr_text(), 10, what="the wait said")
    writers = [follow_env.writer(first, rate=RATE, count=COUNT, label="a")]
    writers[0].wait_written(COUNT // 3)
    writers.append(follow_env.writer(second, rate=RATE, count=COUNT, label="b"))
    writers[0].wait_written(2 * COUNT // 3)
    rotate_rename(first, writers[0])
    writers[0].wait_reopens(1)
    streams = [writer.wait() for writer in writers]
    acc = follow_env.finish(streams)
    assert acc.clean(), acc.summary()
    assert "Traceback" not in run.stderr_text()

"""Checkpoint store: atomic, durable saves and loads that survive torn or corrupt files."""

from __future__ import annotations

import errno
import os
import random
import re
import select
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from logpipe.checkpoints import Checkpoint, CheckpointStore, CorruptCheckpoints

OLD = [Checkpoint("1024:aa", "/var/log/gunicorn/access.log", 4096, 1024)]
NEW = [
    Checkpoint("1024:aa", "/var/log/gunicorn/access.log.1", 9000, 1024),
    Checkpoint("80:bb", "/var/log/gunicorn/error.log", 80, 80),
]


def by_identity(checkpoints: list[Checkpoint]) -> dict[str, Checkpoint]:
    return {checkpoint.identity: checkpoint for checkpoint in checkpoints}


def fresh(state: Path) -> tuple[CheckpointStore, list[str]]:
    """A store of ``state`` and the problems it reports."""
    problems: list[str] = []
    return CheckpointStore(state, on_problem=problems.append), problems


def saved_twice(state: Path) -> CheckpointStore:
    """A store that saved OLD then NEW: main holds NEW, the backup OLD."""
    store = CheckpointStore(state)
    store.save(OLD)
    store.save(NEW)
    return store


def test_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "state" / "logpipe"
    CheckpointStore(state).save(reversed(NEW))
    store, problems = fresh(state)
    assert store.load() == by_identity(NEW)
    assert (problems, store.problems) == ([], 0)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert sorted(os.listdir(state)) == ["checkpoints.json"]
    assert orjson.loads((state / "checkpoints.json").read_bytes()) == {
        "version": 1,
        "checkpoints": [
            {"identity": "1024:aa", "path": "/var/log/gunicorn/access.log.1", "offset": 9000,
             "fingerprint_bytes": 1024},
            {"identity": "80:bb", "path": "/var/log/gunicorn/error.log", "offset": 80,
             "fingerprint_bytes": 80},
        ],
    }  # fmt: skip


def test_the_backup_is_the_previous_save(tmp_path: Path) -> None:
    store = saved_twice(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoints.json", "checkpoints.json.bak"]
    backup = orjson.loads(store.backup.read_bytes())
    assert [Checkpoint(**entry) for entry in backup["checkpoints"]] == OLD


def test_nothing_stored_is_a_first_run(tmp_path: Path) -> None:
    store, problems = fresh(tmp_path / "state")
    assert store.load() == {}
    assert (problems, store.problems) == ([], 0)
    assert not (tmp_path / "state").exists()


def test_an_unchanged_save_writes_nothing(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(NEW)
    before = os.stat(store.path)
    store.save(reversed(NEW))
    reloaded = CheckpointStore(tmp_path)
    reloaded.save(reloaded.load().values())
    after = os.stat(store.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(os.listdir(tmp_path)) == ["checkpoints.json"]
    store.save(OLD)
    assert os.stat(store.path).st_ino != before.st_ino
    assert CheckpointStore(tmp_path).load() == by_identity(OLD)


def test_invalid_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        Checkpoint("a", "/log", -1, 10)
    with pytest.raises(ValueError, match="two checkpoints for one identity"):
        CheckpointStore(tmp_path).save([*OLD, *OLD])
    assert os.listdir(tmp_path) == []


VALID = b'{"version":1,"checkpoints":[]}'
ENTRY = {"identity": "a", "path": "/log", "offset": 1, "fingerprint_bytes": 1}
DAMAGE = {  # content -> the reason reported (a regular expression)
    "empty": (b"", "empty"),
    "nul-filled": (b"\0" * 300, re.escape("NUL bytes only (a torn write)")),
    "nul-tail": (VALID[:12] + b"\0" * 64, re.escape("NUL bytes from byte 12 (a torn write)")),
    "truncated": (VALID[:-3], r"truncated JSON \(unexpected end .*\)"),
    "garbage": (b"\x89PNG\r\n", r"not JSON \(.*\)"),
    "trailing garbage": (VALID + b"}", r"not JSON \(.*\)"),
    "wrong version": (b'{"version":2,"checkpoints":[]}', "version 2, expected 1"),
    "string version": (b'{"version":"1","checkpoints":[]}', "version '1', expected 1"),
    "boolean version": (b'{"version":true,"checkpoints":[]}', "version True, expected 1"),
    "no version": (b'{"checkpoints":[]}', "no version field"),
    "a list": (b"[1, 2]", "no version field"),
    "no checkpoints": (b'{"version":1}', "no checkpoints list"),
    "wrong type": (
        orjson.dumps({"version": 1, "checkpoints": [{**ENTRY, "path": None}]}),
        "checkpoint 1: path is not a string",
    ),
    "negative offset": (
        orjson.dumps({"version": 1, "checkpoints": [ENTRY, {**ENTRY, "offset": -5}]}),
        "checkpoint 2: offset is not a non-negative integer",
    ),
    "boolean offset": (
        orjson.dumps({"version": 1, "checkpoints": [{**ENTRY, "offset": True}]}),
        "checkpoint 1: offset is not a non-negative integer",
    ),
    "missing field": (
        orjson.dumps({"version": 1, "checkpoints": [{"identity": "a", "path": "/log"}]}),
        "checkpoint 1: has no offset",
    ),
    "not an object": (
        orjson.dumps({"version": 1, "checkpoints": [ENTRY, 7]}),
        "checkpoint 2: is not an object",
    ),
    "extra field": (
        orjson.dumps({"version": 1, "checkpoints": [{**ENTRY, "inode": 3}]}),
        "checkpoint 1: has an unknown field 'inode'",
    ),
    "duplicate": (
        orjson.dumps({"version": 1, "checkpoints": [ENTRY, ENTRY]}),
        "two checkpoints for one identity",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_main_file_falls_back_to_the_backup(tmp_path: Path, damage: str) -> None:
    content, reason = DAMAGE[damage]
    main = saved_twice(tmp_path).path
    main.write_bytes(content)
    store, problems = fresh(tmp_path)
    assert store.load() == by_identity(OLD)
    assert store.problems == 1
    (message,) = problems
    assert re.fullmatch(f"checkpoint file {re.escape(str(main))} is unusable: {reason}", message)


def test_after_a_fallback_the_good_backup_is_kept(tmp_path: Path) -> None:
    main = saved_twice(tmp_path).path
    main.write_bytes(b"\0" * 64)
    store, _ = fresh(tmp_path)
    assert store.load() == by_identity(OLD)
    store.save(OLD)  # the same state, yet the main file must be rewritten
    assert CheckpointStore(tmp_path).load() == by_identity(OLD)
    main.write_bytes(b"")  # the backup is still OLD, not the NUL-filled file
    assert CheckpointStore(tmp_path).load() == by_identity(OLD)


def test_problems_go_to_stderr_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved_twice(tmp_path).path.write_bytes(b"")
    assert CheckpointStore(tmp_path).load() == by_identity(OLD)
    expected = f"logpipe: checkpoint file {tmp_path / 'checkpoints.json'} is unusable: empty\n"
    assert capsys.readouterr() == ("", expected)


def test_a_missing_main_file_falls_back_to_the_backup(tmp_path: Path) -> None:
    main = saved_twice(tmp_path).path
    main.unlink()
    store, problems = fresh(tmp_path)
    assert store.load() == by_identity(OLD)
    assert problems == [f"checkpoint file {main} is unusable: missing"]


def test_a_complete_temporary_file_is_the_last_resort(tmp_path: Path) -> None:
    store = saved_twice(tmp_path)
    store.temporary.write_bytes(store.path.read_bytes())
    store.path.write_bytes(b'{"version":1,"checkp')
    store.backup.write_bytes(b"")
    loaded, problems = fresh(tmp_path)
    assert loaded.load() == by_identity(NEW)
    assert loaded.problems == 2
    assert [message.split(" is unusable: ")[1][:14] for message in problems] == [
        "truncated JSON",
        "empty",
    ]


def test_the_temporary_file_is_kept_when_it_is_the_only_good_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = saved_twice(tmp_path)
    os.replace(store.path, store.temporary)
    store.backup.write_bytes(b"garbage")
    loaded = fresh(tmp_path)[0]
    assert loaded.load() == by_identity(NEW)
    calls = fail_on(monkeypatch, "fsync", 2, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError):
        loaded.save(OLD)  # the temporary file moved to the backup, the new one not written
    assert calls == [2]
    assert not loaded.temporary.exists()
    monkeypatch.undo()
    assert fresh(tmp_path)[0].load() == by_identity(NEW)  # from the backup
    loaded.save(OLD)
    assert fresh(tmp_path)[0].load() == by_identity(OLD)


def test_no_usable_file_raises(tmp_path: Path) -> None:
    store = saved_twice(tmp_path)
    store.path.write_bytes(b"\0" * 10)
    store.backup.write_bytes(b'{"version":7,"checkpoints":[]}')
    store.temporary.write_bytes(b'{"version":1,"checkpoints":[{"ident')
    loaded, problems = fresh(tmp_path)
    with pytest.raises(CorruptCheckpoints) as raised:
        loaded.load()
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(
        f"no usable checkpoints in {tmp_path}: checkpoints.json: NUL bytes only (a torn write); "
        "checkpoints.json.bak: version 7, expected 1; checkpoints.json.tmp: truncated JSON ("
    )
    assert (len(problems), loaded.problems) == (3, 3)


def test_a_missing_main_file_and_a_bad_backup_raise(tmp_path: Path) -> None:
    CheckpointStore(tmp_path).backup.write_bytes(b"{}")
    with pytest.raises(CorruptCheckpoints, match=r"checkpoints.json: missing; .* no version field"):
        fresh(tmp_path)[0].load()


def test_a_torn_first_save_is_a_first_run(tmp_path: Path) -> None:
    store, problems = fresh(tmp_path)
    store.temporary.write_bytes(b'{"version":1,"che')
    assert store.load() == {}
    assert [message.split(" is unusable: ")[1][:14] for message in problems] == [
        "missing",
        "truncated JSON",
    ]
    store.save(OLD)
    assert fresh(tmp_path)[0].load() == by_identity(OLD)


class Crash(BaseException):
    """The process dies here: no clean-up runs."""


def fail_on(
    monkeypatch: pytest.MonkeyPatch, name: str, call: int, error: BaseException
) -> list[int]:
    """Make the ``call``-th call of ``os.<name>`` raise ``error``; returns the call counter."""
    original: Callable[..., Any] = getattr(os, name)
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(os, name, failing)
    return calls


# (function, which call) -> whether the save is on disk once the process is gone
STEPS = {
    ("fsync", 1): False,  # the temporary file is written, not yet synced
    ("link", 1): False,  # the backup is being made
    ("replace", 1): False,  # the temporary file is about to become the main file
    ("fsync", 2): True,  # the directory is being synced
}


@pytest.mark.parametrize(("name", "call"), STEPS)
def test_a_crash_at_any_step_leaves_a_loadable_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, call: int
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(OLD)
    calls = fail_on(monkeypatch, name, call, Crash())
    with pytest.raises(Crash):
        store.save(NEW)
    assert calls[0] == call
    monkeypatch.undo()
    loaded, problems = fresh(tmp_path)
    assert loaded.load() == by_identity(NEW if STEPS[name, call] else OLD)
    assert problems == []


@pytest.mark.parametrize(("name", "call"), [step for step in STEPS if step[0] != "link"])
def test_a_failing_step_raises_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, call: int
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(OLD)
    fail_on(monkeypatch, name, call, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError, match="Input/output error"):
        store.save(NEW)
    monkeypatch.undo()
    assert not store.temporary.exists()
    assert fresh(tmp_path)[0].load() == by_identity(NEW if STEPS[name, call] else OLD)
    store.save(OLD)  # not taken for a no-op, whatever the main file holds now
    assert fresh(tmp_path)[0].load() == by_identity(OLD)
    store.save(NEW)
    assert fresh(tmp_path)[0].load() == by_identity(NEW)


def test_without_hard_links_the_main_file_is_renamed_to_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(OLD)
    fail_on(monkeypatch, "link", 1, PermissionError(errno.EPERM, "Operation not permitted"))
    fail_on(monkeypatch, "replace", 2, Crash())  # after the main file became the backup
    with pytest.raises(Crash):
        store.save(NEW)
    monkeypatch.undo()
    loaded, problems = fresh(tmp_path)
    assert loaded.load() == by_identity(OLD)
    assert problems == [f"checkpoint file {store.path} is unusable: missing"]
    fail_on(monkeypatch, "link", 1, PermissionError(errno.EPERM, "Operation not permitted"))
    loaded.save(NEW)
    assert fresh(tmp_path)[0].load() == by_identity(NEW)
    assert orjson.loads(store.backup.read_bytes())["checkpoints"][0]["offset"] == 4096


def test_a_full_disk_raises_and_keeps_the_old_state(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(OLD)
    store.temporary.symlink_to("/dev/full")  # every write there fails with ENOSPC
    with pytest.raises(OSError) as raised:
        store.save(NEW)
    assert raised.value.errno == errno.ENOSPC
    assert not os.path.lexists(store.temporary)
    assert fresh(tmp_path)[0].load() == by_identity(OLD)
    store.save(NEW)
    assert fresh(tmp_path)[0].load() == by_identity(NEW)


def test_a_state_dir_that_is_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(FileExistsError):
        CheckpointStore(tmp_path / "state").save(OLD)


CHILD = """
import os, sys
from pathlib import Path
from logpipe.checkpoints import Checkpoint, CheckpointStore

store = CheckpointStore(Path(sys.argv[1]))
start = store.load().get("a")
offset = start.offset if start else 0
while True:
    offset += 1
    store.save([Checkpoint("a", "/log/a", offset, 9), Checkpoint("b", "/log/b", 2 * offset, 9)])
    os.write(1, b"%d\\n" % offset)
"""


class Reports:
    """The offsets a child reports as saved (one line each, written after ``save`` returned)."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self.child = child
        self.stream = child.stdout
        self.descriptor = child.stdout.fileno()
        self.data = b""

    @property
    def last(self) -> int:
        lines = self.data.split(b"\n")[:-1]
        return int(lines[-1]) if lines else 0

    def wait_for(self, offset: int, deadline: float) -> None:
        while self.last < offset:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the child reported only {self.last}, not {offset}"
            if select.select([self.descriptor], [], [], remaining)[0]:
                chunk = os.read(self.descriptor, 65536)
                assert chunk, f"the child exited with status {self.child.wait()}"
                self.data += chunk

    def drain(self) -> None:
        while chunk := os.read(self.descriptor, 65536):
            self.data += chunk
        self.stream.close()


@pytest.mark.integration
def test_sigkill_during_saves_always_leaves_a_saved_state(tmp_path: Path) -> None:
    """Kill a process saving in a tight loop, again and again: every load gives what it saved
    last (or was saving), without a problem, and offsets only grow."""
    rng = random.Random(16)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    offset = 0
    for _ in range(15):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=environment
        )
        reports = Reports(child)
        try:
            reports.wait_for(offset + rng.randint(1, 50), time.monotonic() + 10)
        finally:
            child.kill()  # SIGKILL
            child.wait(timeout=10)
        reports.drain()
        store, problems = fresh(tmp_path)
        loaded = store.load()
        assert problems == []
        assert loaded["a"].offset in (reports.last, reports.last + 1)  # done, or in flight
        assert loaded["b"].offset == 2 * loaded["a"].offset
        assert loaded["a"].offset > offset
        offset = loaded["a"].offset

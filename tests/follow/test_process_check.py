"""The process check (Datadog's gunicorn check) against real gunicorn masters titled by
setproctitle: worker counts, busy workers, a killed master, a missing name, gunicorn without
setproctitle, ``logpipe check`` and follow mode's datagrams on a real UDP socket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import psutil
import pytest
from gunicorn import __version__ as GUNICORN_VERSION

from logpipe.checks.gunicorn_processes import (
    CRITICAL,
    OK,
    ProcessStatus,
    check,
)
from tests.follow.harness import (
    HERE,
    PYTHON,
    REPO_ROOT,
    FollowEnv,
    GunicornServer,
    create_empty,
    wait_until,
)
from tests.follow.test_datadog_delivery import statsd, to_statsd

# Integration tier: real gunicorn masters and a UDP socket.
pytestmark = pytest.mark.integration

__all__ = ["statsd"]  # the shared DogStatsD socket fixture, used here by name

TAGS = "service:shop,env:test"
IDENTITY = ["--service", "shop", "--env", "test"]


class NamedGunicorn(GunicornServer):
    """gunicorn serving ``busy_app`` with ``--name NAME``, in a session of its own, so that
    :meth:`close` also kills the workers a killed master leaves behind. ``pythonpath`` goes
    first on gunicorn's ``PYTHONPATH`` (to hide setproctitle)."""

    def __init__(
        self, root: Path, name: str, workers: int = 2, pythonpath: Path | None = None
    ) -> None:
        super().__init__(root / f"{name}.access.log", root / f"{name}.error.log", workers)
        self.name = name
        self.pythonpath = pythonpath

    def start(self, timeout: float = 20.0) -> Self:
        argv = [PYTHON, "-m", "gunicorn", "--chdir", str(HERE), "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--workers", str(self.workers), "--worker-class", "sync", "--no-control-socket"]
        argv += ["--access-logfile", str(self.access_log), "--error-logfile", str(self.error_log)]
        # --timeout: idle sync workers wake every timeout/2 s, and one whose master is gone
        # exits then; 120 keeps orphans of a killed master there for the whole test.
        argv += ["--timeout", "120", "--name", self.name, "busy_app:app"]
        env = {k: v for k, v in os.environ.items() if k not in ("GUNICORN_CMD_ARGS", "PYTHONPATH")}
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, cwd=HERE, start_new_session=True
        )
        wait_until(self._ready, timeout, interval=0.1, what=f"gunicorn [{self.name}] booted")
        return self

    def _ready(self) -> bool:
        if self.workers:
            return self._booted()
        return self.error_log.exists() and "Listening at" in self.error_log.read_text()

    def kill_master(self) -> list[int]:
        """SIGKILL the master; its workers' pids (they live on, orphaned, until :meth:`close`)."""
        assert self.proc is not None
        workers = sorted(child.pid for child in psutil.Process(self.proc.pid).children())
        self.proc.kill()
        self.proc.wait()
        return workers

    def close(self) -> None:
        """Stop the master, then kill whatever is left of its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


Start = Callable[..., NamedGunicorn]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Start]:
    """``gunicorn(workers=2, pythonpath=None)``: a started :class:`NamedGunicorn` with a fresh
    name; every one is stopped and its process group killed after the test."""
    servers: list[NamedGunicorn] = []

    def start(workers: int = 2, pythonpath: Path | None = None) -> NamedGunicorn:
        server = NamedGunicorn(tmp_path, fresh_name(), workers, pythonpath)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def fresh_name() -> str:
    return f"lp-{uuid.uuid4().hex[:10]}"


def only(names: list[str]) -> ProcessStatus:
    [result] = check(names)
    return result


def settled(name: str, expected: ProcessStatus, timeout: float = 10.0) -> ProcessStatus:
    """Check until the result is ``expected`` (the CPU-time sample of a just-booted or
    just-freed worker may still move); the last result otherwise, for the assert to show."""
    results: list[ProcessStatus] = []

    def matches() -> bool:
        results.append(only([name]))
        return results[-1] == expected

    with contextlib.suppress(AssertionError):
        wait_until(matches, timeout, interval=0.1)
    return results[-1]


class Spin:
    """A ``/spin`` request in flight on one worker until :meth:`release`."""

    def __init__(self, server: NamedGunicorn, tmp_path: Path) -> None:
        self.flag = tmp_path / f"release-{uuid.uuid4().hex[:6]}"
        self.status: list[int] = []
        target = f"/spin?until={self.flag}"
        self.thread = threading.Thread(
            target=lambda: self.status.append(server.get(target, timeout=40)), daemon=True
        )
        self.thread.start()

    def release(self) -> int:
        self.flag.touch()
        self.thread.join(40)
        [status] = self.status
        return status


def datagrams(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """DogStatsD lines received (the ``datadog.*`` client telemetry left out) until
    ``until(lines)`` holds; AssertionError with what came when ``timeout`` passes first."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not until(lines):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"not received in {timeout}s; got {lines}")
        sock.settimeout(left)
        with contextlib.suppress(TimeoutError):
            for line in sock.recv(65535).decode().splitlines():
                if line and not line.startswith("datadog."):
                    lines.append(line)
    return lines


def has(*wanted: str) -> Callable[[list[str]], bool]:
    return lambda lines: all(line in lines for line in wanted)


def running_lines(name: str, working: int, idle: int) -> tuple[str, ...]:
    return (
        f"_sc|gunicorn.is_running|0|#app:{name},{TAGS}",
        f"gunicorn.workers:{working}|g|#app:{name},state:working,{TAGS}",
        f"gunicorn.workers:{idle}|g|#app:{name},state:idle,{TAGS}",
    )


def no_master_line(name: str) -> str:
    return (
        f"_sc|gunicorn.is_running|2|#app:{name},{TAGS}"
        f"|m:No gunicorn process with name {name} found, skipping worker metrics"
    )


def orphaned(name: str, workers: list[int]) -> str:
    """The check's explanation when the master is gone and ``workers`` remain."""
    return (
        f"no process is titled 'gunicorn: master [{name}]', but its workers still run (pid "
        f"{', '.join(map(str, workers))}): the master has exited"
    )


GUNICORN = Path(PYTHON).parent / "gunicorn"


def logpipe_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "logpipe", "check", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------------------------


def test_two_idle_workers_then_one_working(gunicorn: Start, tmp_path: Path) -> None:
    server = gunicorn(workers=2)
    idle = ProcessStatus(server.name, (server.pid,), working=0, idle=2)
    assert settled(server.name, idle) == idle
    assert idle.status == OK and idle.message is None and idle.state == "running"
    assert (
        idle.describe()
        == f"gunicorn [{server.name}]: OK: 0 working, 2 idle (master pid {server.pid})"
    )
    spin = Spin(server, tmp_path)
    busy = ProcessStatus(server.name, (server.pid,), working=1, idle=1)
    try:
        assert settled(server.name, busy) == busy
    finally:
        assert spin.release() == 200
    assert settled(server.name, idle) == idle


def test_killed_master_is_critical_with_the_integrations_message(gunicorn: Start) -> None:
    server = gunicorn(workers=2)
    assert only([server.name]).status == OK
    workers = server.kill_master()
    assert len(workers) == 2
    result = only([server.name])
    assert (result.status, result.masters, result.working, result.idle) == (CRITICAL, (), 0, 0)
    assert result.message == (
        f"No gunicorn process with name {server.name} found, skipping worker metrics"
    )
    assert result.state == "no master"
    assert result.why == orphaned(server.name, workers)


def test_no_such_name_is_critical() -> None:
    name = fresh_name()
    result = only([name])
    assert (result.status, result.masters, result.state) == (CRITICAL, (), "no master")
    assert result.message == f"No gunicorn process with name {name} found, skipping worker metrics"
    assert result.describe().startswith(
        f"gunicorn [{name}]: CRITICAL: no process is titled 'gunicorn: master [{name}]' ("
    )


def test_a_master_without_workers_is_critical(gunicorn: Start) -> None:
    server = gunicorn(workers=0)
    result = only([server.name])
    assert result == ProcessStatus(
        server.name,
        (server.pid,),
        0,
        0,
        f"'gunicorn: master [{server.name}]' (pid {server.pid}) has no workers",
    )
    assert (result.status, result.state) == (CRITICAL, "no workers")
    assert result.message == f"0 working and 0 idle workers for {server.name}"


def test_gunicorn_without_setproctitle_is_explained(gunicorn: Start, tmp_path: Path) -> None:
    hide = tmp_path / "no-setproctitle"
    hide.mkdir()
    (hide / "setproctitle.py").write_text("raise ImportError('hidden by the test')\n")
    server = gunicorn(workers=2, pythonpath=hide)
    result = only([server.name])
    assert (result.status, result.masters, result.state) == (CRITICAL, (), "no title")
    assert result.why == (
        f"no process is titled 'gunicorn: master [{server.name}]', but pid {server.pid} runs "
        f"gunicorn --name {server.name} without a title: setproctitle is missing in gunicorn's "
        "environment (install it there and restart gunicorn)"
    )


def test_check_command_exit_codes_and_datagrams(gunicorn: Start, statsd: socket.socket) -> None:
    server = gunicorn(workers=2)
    settled(server.name, ProcessStatus(server.name, (server.pid,), 0, 2))
    done = logpipe_check("--proc-name", server.name, "--gunicorn", str(GUNICORN))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"gunicorn version: {GUNICORN_VERSION} ({GUNICORN})\n"
        f"gunicorn [{server.name}]: OK: 0 working, 2 idle (master pid {server.pid})\n"
    )

    missing = fresh_name()
    done = logpipe_check(
        "--proc-name", server.name, "--proc-name", missing, *to_statsd(statsd), *IDENTITY
    )
    assert done.returncode == 2, done.stderr
    version, first, second = done.stdout.splitlines()
    assert version.startswith("gunicorn version: ")
    assert first.startswith(f"gunicorn [{server.name}]: OK: ")
    assert second.startswith(f"gunicorn [{missing}]: CRITICAL: no process is titled ")
    lines = datagrams(statsd, lambda lines: len(lines) >= 4, timeout=10)
    assert sorted(lines) == sorted([*running_lines(server.name, 0, 2), no_master_line(missing)])

    assert logpipe_check("--proc-name", "x]").returncode == 2  # usage error: no title matches


def test_follow_mode_sends_the_check_and_says_each_change_once(
    follow_env: FollowEnv, gunicorn: Start, statsd: socket.socket
) -> None:
    server = gunicorn(workers=2)
    missing = fresh_name()
    settled(server.name, ProcessStatus(server.name, (server.pid,), 0, 2))
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(
        access=[access],
        extra_args=[
            *to_statsd(statsd),
            *IDENTITY,
            *("--proc-name", server.name, "--proc-name", missing),
            *("--process-interval", "0.5"),
        ],
    )
    datagrams(statsd, has(*running_lines(server.name, 0, 2), no_master_line(missing)), 20)

    def critical_checks(name: str, count: int) -> Callable[[list[str]], bool]:
        return lambda lines: lines.count(no_master_line(name)) >= count

    datagrams(statsd, critical_checks(missing, 4), 20)  # several checks: still one line
    workers = server.kill_master()
    datagrams(statsd, critical_checks(server.name, 4), 20)
    follow_env.check_alive()
    assert run.stop() == 0
    said = [line for line in run.stderr_text().splitlines() if "gunicorn [" in line]
    assert len(said) == 3, run.stderr_text()  # one line per change, not one per check
    assert said[0].startswith(f"logpipe: gunicorn [{server.name}]: OK: ")
    assert said[0].endswith(f" idle (master pid {server.pid})")
    assert said[1].startswith(
        f"logpipe: gunicorn [{missing}]: CRITICAL: no process is titled "
        f"'gunicorn: master [{missing}]'"
    )
    assert said[2] == f"logpipe: gunicorn [{server.name}]: CRITICAL: " + orphaned(
        server.name, workers
    )


def test_bad_interval_is_a_usage_error(follow_env: FollowEnv) -> None:
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(
        access=[access], extra_args=["--proc-name", "web", "--process-interval", "0"]
    )
    assert run.proc is not None and run.proc.wait(30) == 2
    assert "--process-interval must be positive" in run.stderr_text()

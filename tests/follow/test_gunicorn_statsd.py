"""``--metrics-mode gunicorn`` against gunicorn's own statsd: real gunicorn with
``--statsd-host`` on one UDP socket, logpipe following its logs with ``--metrics-mode gunicorn``
on another, the same traffic for both; the two sets of datagrams must agree. And the refusal
when a watched master already sends its own statsd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.follow.harness import PYTHON, REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.integration

FIXTURES = REPO_ROOT / "tests" / "fixtures"
FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
GUNICORN_TAGS = "team:web,tier:front"
WORKERS = "gunicorn.workers"


@pytest.fixture
def udp() -> Iterator[list[socket.socket]]:
    """Two UDP sockets: gunicorn's statsd, logpipe's DogStatsD."""
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    yield socks
    for sock in socks:
        sock.close()


def drain(sock: socket.socket, quiet: float = 1.0) -> list[str]:
    """Every datagram line until none came for ``quiet`` s (client telemetry left out)."""
    lines: list[str] = []
    sock.settimeout(quiet)
    while True:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return lines
        lines += [line for line in data.decode().splitlines() if line]


def gunicorn(
    root: Path, statsd_port: int, name: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [PYTHON, "-m", "gunicorn", "--chdir", str(FIXTURES), "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", "2", "--worker-class", "sync", "--no-control-socket", "--timeout", "2"]
    argv += [
        "--access-logfile",
        str(root / "access.log"),
        "--error-logfile",
        str(root / "error.log"),
    ]
    argv += ["--access-logformat", FORMAT, "--capture-output"]
    argv += ["--statsd-host", f"127.0.0.1:{statsd_port}", "--dogstatsd-tags", GUNICORN_TAGS]
    if name:
        argv += ["--name", name]
    env = {k: v for k, v in os.environ.items() if k not in ("GUNICORN_CMD_ARGS", "PYTHONPATH")}
    env["TZ"] = "UTC"
    proc = subprocess.Popen([*argv, "app:app"], env=env, stdin=subprocess.DEVNULL, cwd=FIXTURES)
    error_log = root / "error.log"

    def booted() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited {proc.returncode}")
        return error_log.exists() and error_log.read_text().count("Booting worker") >= 2

    wait_until(booted, 20, interval=0.1, what="gunicorn booted")
    return proc, port


def request(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return data


def get(port: int, target: str) -> bytes:
    return request(port, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def logpipe(root: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [PYTHON, "-m", "logpipe", "--access", str(root / "access.log")]
    argv += ["--error", str(root / "error.log"), "--access-format", FORMAT]
    argv += ["--start-at", "beginning", "--exit-idle", "1.5", "--state-dir", str(root / "state")]
    argv += ["--output", f"file:{root / 'events.ndjson'}", "--log-level", "warning"]
    argv += ["--metrics-mode", "gunicorn", "--dogstatsd", f"127.0.0.1:{port}"]
    argv += ["--dogstatsd-tags", GUNICORN_TAGS, "--service", "shop", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}
    env["DD_ORIGIN_DETECTION_ENABLED"] = "false"
    env["LOGPIPE_CACHE_DIR"] = str(root / "cache")
    return subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


class Totals:
    """A set of statsd lines summed: counter totals, timer values, types and tags per name."""

    def __init__(self, lines: list[str], leave_out: str = "") -> None:
        self.counts: Counter[str] = Counter()
        self.timers: defaultdict[str, list[float]] = defaultdict(list)
        self.types: dict[str, set[str]] = defaultdict(set)
        self.tags: dict[str, set[str]] = defaultdict(set)
        self.rates: dict[str, set[float]] = defaultdict(set)
        for line in lines:
            if not line.startswith("gunicorn."):
                continue
            name, _, rest = line.partition(":")
            if name == leave_out:
                continue
            value, kind, *fields = rest.split("|")
            self.types[name].add(kind)
            rate = 1.0
            for field in fields:
                if field.startswith("#"):
                    self.tags[name].add(field[1:])
                elif field.startswith("@"):
                    rate = float(field[1:])
            self.rates[name].add(rate)
            if kind == "c":
                self.counts[name] += int(float(value) / rate)
            elif kind == "ms":
                self.timers[name].append(float(value))


def test_gunicorn_mode_sends_what_gunicorn_sends(tmp_path: Path, udp: list[socket.socket]) -> None:
    own, ours = udp
    proc, port = gunicorn(tmp_path, own.getsockname()[1])
    try:
        plan = ["/"] * 5 + ["/status/201", "/status/302", "/status/404", "/status/404"]
        plan += ["/nothing-here", "/status/500", "/crash?kind=value", "/crash?kind=custom"]
        plan += ["/applog", "/wsgierr", "/slow?ms=30", "/status/503"]
        for target in plan:
            get(port, target)
        request(port, b"GARBAGE\r\n\r\n")  # gunicorn: log.warning "Invalid request from ip=..."
        get(port, "/slow?ms=5000")  # WORKER TIMEOUT: log.critical; the aborted request: 500
        wait_until(
            lambda: (tmp_path / "error.log").read_text().count("Booting worker") >= 3,
            20,
            interval=0.2,
            what="the timed-out worker replaced",
        )
        worker = psutil.Process(proc.pid).children()[0].pid
        os.kill(worker, signal.SIGKILL)  # "was sent SIGKILL! Perhaps out of memory?": log.error
        wait_until(
            lambda: (tmp_path / "error.log").read_text().count("Booting worker") >= 4,
            20,
            interval=0.2,
            what="the killed worker replaced",
        )
        for target in ("/", "/status/404"):  # requests after the restart of a worker
            get(port, target)
    finally:
        stop(proc)
    theirs = drain(own)
    result = logpipe(tmp_path, ours.getsockname()[1])
    assert result.returncode == 0, result.stderr
    mine = drain(ours)
    # gunicorn.workers: gunicorn's arbiter gauge, which the process check (--proc-name) sends
    a, b = Totals(theirs, leave_out=WORKERS), Totals(mine, leave_out=WORKERS)
    table = side_by_side(a, b)
    sys.stderr.write(table)
    (tmp_path / "table.txt").write_text(table)
    assert set(a.types) == set(b.types), table
    assert a.types == b.types, table
    assert a.counts == b.counts, table
    assert a.counts["gunicorn.requests"] == len(plan) + 3, table  # + the timed-out one
    for level in ("critical", "error", "warning", "exception"):
        assert a.counts[f"gunicorn.log.{level}"] >= 1, table
    assert all(tags == {GUNICORN_TAGS} for tags in a.tags.values()), a.tags
    assert b.tags == a.tags, table
    assert {rate for rates in b.rates.values() for rate in rates} == {1.0}
    duration = "gunicorn.request.duration"
    assert len(a.timers[duration]) == len(b.timers[duration]) == a.counts["gunicorn.requests"]
    for x, y in zip(sorted(a.timers[duration]), sorted(b.timers[duration]), strict=True):
        assert abs(x - y) <= 0.001, (x, y)
    assert "--metrics-mode gunicorn" not in result.stderr  # the format has %(D)s: no warning


def side_by_side(a: Totals, b: Totals) -> str:
    rows = [f"{'metric':<36} {'type':<5} {'gunicorn':>9} {'logpipe':>9}"]
    for name in sorted(set(a.types) | set(b.types)):
        kind = ",".join(sorted(a.types.get(name, set()) | b.types.get(name, set())))
        if kind == "ms":
            x, y = len(a.timers[name]), len(b.timers[name])
            sx, sy = sum(a.timers[name]), sum(b.timers[name])
            rows.append(f"{name + ' (count)':<36} {kind:<5} {x:>9} {y:>9}")
            rows.append(f"{name + ' (sum ms)':<36} {kind:<5} {sx:>9.3f} {sy:>9.3f}")
        else:
            rows.append(f"{name:<36} {kind:<5} {a.counts[name]:>9} {b.counts[name]:>9}")
    return "\n".join(rows) + "\n"


def test_no_duration_atom_warns_once(tmp_path: Path, udp: list[socket.socket]) -> None:
    line = '127.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 2 "-" "-"\n'
    (tmp_path / "access.log").write_text(line * 3)
    (tmp_path / "error.log").write_text("")
    fmt = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    argv = [PYTHON, "-m", "logpipe", "--access", str(tmp_path / "access.log"), "--access-format"]
    argv += [fmt, "--start-at", "beginning", "--exit-idle", "1", "--state-dir", str(tmp_path / "s")]
    argv += ["--output", f"file:{tmp_path / 'out.ndjson'}", "--log-level", "warning"]
    argv += ["--metrics-mode", "gunicorn", "--dogstatsd", f"127.0.0.1:{udp[1].getsockname()[1]}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}
    env["LOGPIPE_CACHE_DIR"] = str(tmp_path / "cache")
    result = subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no duration atom") == 1, result.stderr
    totals = Totals(drain(udp[1]))
    assert totals.counts["gunicorn.requests"] == 3
    assert "gunicorn.request.duration" not in totals.types


def test_refused_when_the_master_sends_its_own_statsd(
    tmp_path: Path, udp: list[socket.socket]
) -> None:
    name = f"gs{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    proc, _ = gunicorn(tmp_path, udp[0].getsockname()[1], name=name)
    try:
        result = logpipe(tmp_path, udp[1].getsockname()[1], "--proc-name", name)
    finally:
        stop(proc)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"gunicorn [{name}]" in lines[0] and "already sends its own statsd" in lines[0]
    assert f"127.0.0.1:{udp[0].getsockname()[1]}" in lines[0]  # its --statsd-host

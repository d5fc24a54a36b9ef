"""DogStatsD never stalls log shipping: a follower whose DogStatsD name gets no DNS answer
keeps shipping and reporting at its pace, and one whose name resolves sends its metrics.

The silent DNS is real: the follower runs in a private mount namespace whose
``/etc/resolv.conf`` names 127.0.0.77, where this test reads queries and never answers
(``/etc/hosts`` and ``/etc/nsswitch.conf`` are private too, so nothing else answers for the
name)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import PYTHON, FollowEnv, LogpipeProcess, create_empty, wait_until
from tests.follow.test_datadog_delivery import statsd

pytestmark = pytest.mark.integration

__all__ = ["statsd"]  # the shared DogStatsD socket fixture, used here by name

NAME = "statsd.logpipe-test.invalid"
SILENT_DNS = "127.0.0.77"
RATE, SECONDS = 200, 15  # the writer's lines per second, and for how long
LAG_S = 2.5  # the output may trail the writer by this much
STATUS_GAP_S = 3.0  # status lines come once a second; never this far apart
CANNOT_RESOLVE = f"DogStatsD: cannot resolve {NAME} (timed out); metrics wait, logs go on"


class SilentDns:
    """A UDP socket on 127.0.0.77:53 that reads queries and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((SILENT_DNS, 53))
        self.queries = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            self.sock.recv(4096)
            if self._closing.is_set():
                return
            self.queries += 1

    def close(self) -> None:
        self._closing.set()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", (SILENT_DNS, 53))
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def silent_dns() -> Iterator[SilentDns]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a private mount namespace and a socket on port 53")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private mount namespace")
    try:
        server = SilentDns()
    except OSError as error:
        pytest.skip(f"cannot bind {SILENT_DNS}:53 for a silent DNS server: {error.strerror}")
    try:
        yield server
    finally:
        server.close()


def namespaced(root: Path) -> tuple[str, ...]:
    """argv prefix running logpipe where DNS goes to the silent server only (skips the test
    when a private mount namespace cannot be made here)."""
    resolv, hosts, nsswitch = root / "resolv.conf", root / "hosts", root / "nsswitch.conf"
    resolv.write_text(f"nameserver {SILENT_DNS}\noptions timeout:5 attempts:3\n")
    hosts.write_text("127.0.0.1 localhost\n")
    nsswitch.write_text("hosts: files dns\n")
    mounts = " && ".join(
        f"mount --bind {path} /etc/{path.name}" for path in (resolv, hosts, nsswitch)
    )
    prefix = ("unshare", "--mount", "--", "sh", "-c", f'{mounts} && exec "$@"', "sh")
    probe = subprocess.run(
        [*prefix, "cat", "/etc/resolv.conf"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0 or SILENT_DNS not in probe.stdout:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    return (*prefix, PYTHON, "-m", "logpipe")


def status_times(run: LogpipeProcess, seen: list[float]) -> None:
    """Note the arrival time of each status line that came since the last call."""
    lines = run.stderr_text().count("logpipe: status: ")
    seen.extend([time.monotonic()] * (lines - len(seen)))


def test_a_name_without_dns_answer_stalls_nothing(
    follow_env: FollowEnv, silent_dns: SilentDns, report: Report
) -> None:
    prefix = namespaced(follow_env.root)
    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(
        access=[access],
        command=prefix,
        extra_args=["--dogstatsd", f"{NAME}:8125", "--status-interval", "1"],
    )
    wait_until(lambda: "logpipe: status: " in run.stderr_text(), 30, what="a first status line")
    writer = follow_env.writer(access, rate=RATE, count=RATE * SECONDS)
    written: list[tuple[float, int]] = []  # (when, lines written by then)
    statuses: list[float] = []
    worst_lag = 0.0
    while writer.running:
        follow_env.check_alive()
        now, shipped = time.monotonic(), len(follow_env.events())
        written.append((now, writer.written))
        status_times(run, statuses)
        # the output holds at least what had been written LAG_S ago
        due = max((count for when, count in written if when <= now - LAG_S), default=0)
        assert shipped >= due, f"{shipped} events shipped, {due} written {LAG_S} s before"
        behind = [when for when, count in written if count > shipped]
        worst_lag = max(worst_lag, now - min(behind, default=now))
        time.sleep(0.2)
    stream = writer.wait()
    wait_until(lambda: len(follow_env.events()) >= stream.count, 10, what="the last lines")
    status_times(run, statuses)
    assert run.stop() == 0
    account = follow_env.account([stream])
    assert not (account.lost or account.duplicated or account.malformed), account.summary()
    assert len(account.seen) == stream.count == RATE * SECONDS

    during = [when for when in statuses if written[0][0] <= when <= written[-1][0]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    assert len(during) >= SECONDS - 3 and max(gaps) <= STATUS_GAP_S, gaps
    stderr = run.stderr_text()
    assert stderr.count(CANNOT_RESOLVE) == 1, stderr
    assert silent_dns.queries > 0  # the lookups did go to the silent server
    report("silent DNS: worst output lag (s)", round(worst_lag, 2))
    report("silent DNS: widest gap between status lines (s)", round(max(gaps), 2))
    report("silent DNS: queries the follower sent", silent_dns.queries)


def test_a_name_that_resolves_gets_the_metrics(
    follow_env: FollowEnv, statsd: socket.socket
) -> None:
    from tests.unit.test_metrics import by_name, counts, ours, receive

    access = follow_env.log("access.log")
    create_empty(access)
    run = follow_env.logpipe(
        access=[access],
        extra_args=["--dogstatsd", f"localhost:{statsd.getsockname()[1]}"],
    )
    stream = follow_env.writer(access, rate=1000, count=1500).wait()
    wait_until(lambda: len(follow_env.events()) >= stream.count, 20, what="every line shipped")
    assert run.stop() == 0
    totals = counts(ours(receive(statsd)))
    assert by_name(totals, "gunicorn.logs.requests") == stream.count
    assert by_name(totals, "logpipe.events_sent") == stream.count
    assert "DogStatsD" not in run.stderr_text()

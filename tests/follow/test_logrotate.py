"""Real logrotate on real gunicorn while logpipe is SIGKILLed and restarted at random moments.

gunicorn (``seq_app``, two sync workers) serves ``GET /seq/<n>`` from a traffic thread, so each
request's access line is known by its sequence number. Debian's ``logrotate`` binary rotates the
access and error logs every 1-2 s (``logrotate -f -s STATE CONF``), with either

* ``create`` + ``postrotate kill -USR1 <master>`` + ``compress`` + ``delaycompress``: files move
  ``access.log`` -> ``.1`` -> ``.2.gz`` ..., and gunicorn's master writes "Handling signal: usr1"
  into the renamed ``error.log.1`` just before it reopens; or
* ``copytruncate`` (no signal): ``access.log`` is copied to ``.1`` and truncated in place.

Meanwhile logpipe (``--start-at end``, its default) is SIGKILLed KILLS times, 0.3-2 s apart,
with two CPU-bound processes beside it, and started again each time with the same state dir.
Then traffic stops, logpipe is started a last time, and every request's access line must have
been delivered (0 lost; with copytruncate, except lines logrotate itself destroyed between its
copy and its truncate, which are in no file), duplicates bounded by 2 s of traffic per kill, the
output NDJSON line by line. With ``create``, the master's "Handling signal: usr1" records are
counted too, against the ones on disk (archives included).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.follow.conftest import Report
from tests.follow.harness import (
    Accounting,
    FollowEnv,
    GunicornServer,
    Key,
    LogpipeProcess,
    Stream,
    follow_available,
    read_events,
)
from tests.follow.restart_helpers import (
    FIGURES,
    CpuLoad,
    Traffic,
    check_ndjson,
    checkpoint_bytes,
    figures,
    keys_on_disk,
    lines_on_disk,
    log_family,
    settle,
    wait_checkpoint_saved,
    wait_opened,
)

pytestmark = pytest.mark.integration  # logpipe, gunicorn, logrotate as subprocesses

KILLS = 20  # SIGKILLs while traffic and rotations go on (one more once traffic stopped)
KILL_GAP_S = (0.3, 2.0)  # random time between restarts and kills
ROTATE_GAP_S = (1.0, 2.0)  # random time between logrotate runs
RATE = 200  # requests/s asked of the traffic thread (one connection each)
KILL_DUP_WINDOW_S = 2.0  # per SIGKILL, at most this much traffic may be delivered twice
KEEP = 50  # logrotate's ``rotate``: more runs than this would delete files
USR1_RECORD = re.compile(r"\[INFO\] Handling signal: usr1$")

CREATE_CONF = """\
{logs} {{
    rotate {keep}
    missingok
    compress
    delaycompress
    create 0644
    sharedscripts
    postrotate
        kill -USR1 {pid}
    endscript
}}
"""

COPYTRUNCATE_CONF = """\
{logs} {{
    rotate {keep}
    missingok
    compress
    delaycompress
    copytruncate
}}
"""


@pytest.fixture(autouse=True)
def _follow_mode_exists() -> None:
    if not follow_available():
        pytest.skip("follow mode not there yet: `python -m logpipe --help` has no --access")


@pytest.fixture
def logrotate_bin() -> str:
    """Debian's logrotate binary (``.ci/run`` installs it; locally: apt-get install logrotate)."""
    found = shutil.which("logrotate", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        pytest.skip("the logrotate binary is not installed (apt-get install logrotate)")
    return found


# --------------------------------------------------------------------------------------------
# logrotate
# --------------------------------------------------------------------------------------------


class Logrotate:
    """``logrotate -f -s STATE CONF`` for one config written under ``root``."""

    def __init__(self, binary: str, root: Path, config: str) -> None:
        self.binary = binary
        self.conf = root / "logrotate.conf"
        self.state = root / "logrotate.state"
        self.conf.write_text(config)

    def run(self) -> None:
        """One forced rotation of every log in the config; fails with logrotate's stderr."""
        done = subprocess.run(
            [self.binary, "-f", "-s", str(self.state), str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise AssertionError(f"logrotate exited {done.returncode}: {done.stderr}")


class Rotations(threading.Thread):
    """Runs :class:`Logrotate` at random intervals of ROTATE_GAP_S until :meth:`stop`."""

    def __init__(self, logrotate: Logrotate, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.logrotate, self.rng = logrotate, rng
        self.runs = 0
        self.errors: list[str] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.rng.uniform(*ROTATE_GAP_S)):  # the random pacing
            try:
                self.logrotate.run()
            except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
                self.errors.append(str(error))
                return
            self.runs += 1

    def stop(self) -> int:
        """Stop (after a run in progress); how many runs there were."""
        self._stopping.set()
        self.join(60)
        assert not self.errors, f"logrotate failed: {self.errors}"
        assert self.runs < KEEP, f"{self.runs} rotations: logrotate deleted old files"
        return self.runs


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run of the scenario sent, where it is on disk, and what logpipe delivered."""

    stream: Stream
    acc: Accounting
    on_disk: Counter[Key]  # access keys in the access log and its rotated files
    rotations: int
    kills: int
    rate: float
    access: Path
    error: Path


def follow(env: FollowEnv, access: Path, error: Path) -> LogpipeProcess:
    return env.logpipe(access=[access], error=[error], start_at="end")


def rotate_and_kill(
    env: FollowEnv, report: Report, logrotate_bin: str, conf_template: str
) -> Outcome:
    """gunicorn under traffic, logrotate every 1-2 s, logpipe SIGKILLed KILLS times 0.3-2 s
    apart and restarted; then traffic stops, logpipe is killed once more and started a last
    time, and the whole output is accounted."""
    seed = random.randrange(1 << 32)
    report("random seed", seed)
    rng = random.Random(seed)
    access, error = env.log("access.log"), env.log("error.log")
    server: GunicornServer = env.gunicorn(access, error)
    logs = f"{access} {error}"
    logrotate = Logrotate(
        logrotate_bin, env.root, conf_template.format(logs=logs, keep=KEEP, pid=server.pid)
    )
    run = follow(env, access, error)
    wait_opened(run, access, error)
    traffic = Traffic(server, RATE)
    traffic.start()
    # The kills start once this first run has saved a checkpoint of the access log's lines: a
    # run killed before any checkpoint leaves nothing to resume from (--start-at end).
    env.wait_shipped([Stream(count=RATE // 4)])
    wait_checkpoint_saved(env.state, checkpoint_bytes(env.state))
    rotations = Rotations(logrotate, random.Random(rng.random()))
    rotations.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(*KILL_GAP_S))  # the random moment of the next kill
        run.kill()
        run = follow(env, access, error)
    stream = traffic.stop()
    rotated = rotations.stop()
    assert server.stop() == 0, "gunicorn did not stop cleanly"
    on_disk = keys_on_disk(log_family(access))
    run.kill()
    follow(env, access, error)
    acc = settle(env, [stream], allowed_lost=set(stream.sent_keys()) - set(on_disk))
    report("requests / rotations / SIGKILLs", f"{stream.count} / {rotated} / {KILLS + 1}")
    report("traffic rate (requests/s)", round(traffic.measured_rate))
    report(FIGURES, figures(acc))
    report("SIGKILLed runs ending mid-line", check_ndjson(env).torn_tails)
    return Outcome(stream, acc, on_disk, rotated, KILLS + 1, traffic.measured_rate, access, error)


def dup_bound(outcome: Outcome) -> int:
    return int(outcome.rate * KILL_DUP_WINDOW_S) * outcome.kills


def delivered_messages(env: FollowEnv, pattern: re.Pattern[str]) -> Counter[str]:
    """Messages matching ``pattern`` in every run's output (a torn last line left out)."""
    events = read_events(*env.outputs)
    return Counter(e["message"] for e in events if pattern.search(str(e.get("message", ""))))


def test_logrotate_create_usr1_compress(
    follow_env: FollowEnv, report: Report, logrotate_bin: str, cpu_load: CpuLoad
) -> None:
    """``create`` + USR1 + ``compress`` + ``delaycompress``: every access line of every request
    delivered (lost 0, duplicates at most 2 s of traffic per kill), and every "Handling signal:
    usr1" record the master wrote into a renamed error.log delivered too."""
    outcome = rotate_and_kill(follow_env, report, logrotate_bin, CREATE_CONF)
    acc, stream, on_disk = outcome.acc, outcome.stream, outcome.on_disk
    assert on_disk == dict.fromkeys(stream.sent_keys(), 1), "access lines on disk != requests"
    assert any(p.name.endswith(".gz") for p in log_family(outcome.access)), "nothing compressed"
    usr1_disk = lines_on_disk(log_family(outcome.error), USR1_RECORD)
    usr1_out = delivered_messages(follow_env, USR1_RECORD)
    usr1_lost = sum((usr1_disk - usr1_out).values())
    report(
        "usr1 records on disk / delivered / lost",
        f"{usr1_disk.total()} / {usr1_out.total()} / {usr1_lost}",
    )
    report("duplicates / bound", f"{acc.duplicated} / {dup_bound(outcome)}")
    detail = f"{acc.summary()}\n{follow_env.diagnostics()}"
    assert not (acc.lost or acc.malformed or acc.unexpected), detail
    assert acc.duplicated <= dup_bound(outcome), detail
    assert usr1_disk.total() >= outcome.rotations // 2, "gunicorn logged few USR1 signals"
    assert usr1_lost == 0, f"{usr1_lost} 'Handling signal: usr1' records not delivered"


def test_logrotate_copytruncate(
    follow_env: FollowEnv, report: Report, logrotate_bin: str, cpu_load: CpuLoad
) -> None:
    """``copytruncate`` (no signal, gunicorn keeps its O_APPEND descriptors): every access line
    still in some file on disk delivered (only lines written between logrotate's copy and its
    truncate, destroyed for everyone, may be missing), duplicates at most 2 s of traffic per
    kill."""
    outcome = rotate_and_kill(follow_env, report, logrotate_bin, COPYTRUNCATE_CONF)
    acc, stream, on_disk = outcome.acc, outcome.stream, outcome.on_disk
    assert set(on_disk.values()) <= {1}, "a request's line is twice on disk"
    destroyed = set(stream.sent_keys()) - set(on_disk)
    lost = set(acc.lost) - destroyed
    report("destroyed by copy->truncate (not on disk)", len(destroyed))
    report("lost beyond those", len(lost))
    report("duplicates / bound", f"{acc.duplicated} / {dup_bound(outcome)}")
    detail = f"{acc.summary()}\n{follow_env.diagnostics()}"
    assert not (lost or acc.malformed or acc.unexpected), detail
    assert acc.duplicated <= dup_bound(outcome), detail

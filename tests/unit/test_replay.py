"""Replay of rotated, gzipped real gunicorn logs: order, gzip by magic, exactly once."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from logpipe.backfill.archives import order_series
from tests.conftest import LOGS

LINES = (LOGS / "default" / "access.log").read_bytes().splitlines(keepends=True)


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logpipe", "replay", "--state-dir", str(cwd / "state"), *args],
        capture_output=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def urls(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line)["message"] for line in result.stdout.splitlines()]


def write_series(directory: Path) -> Path:
    """Four generations of a real access log, as logrotate leaves them (some compressed)."""
    chunks = [LINES[0:30], LINES[30:60], LINES[60:90], LINES[90:]]
    names = ["access.log.3.gz", "access.log.2.gz", "access.log.1", "access.log"]
    for name, chunk in zip(names, chunks, strict=True):
        data = b"".join(chunk)
        (directory / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return directory


@pytest.fixture
def series(tmp_path: Path) -> Path:
    return write_series(tmp_path)


def test_order_oldest_first_whatever_the_shell_gives() -> None:
    given = [
        Path(name)
        for name in (
            "access.log",
            "access.log.1",
            "access.log.10.gz",
            "access.log.2.gz",
            "access.log-20261124.gz",
            "access.log-20261123.gz",
            "error.log.1",
            "error.log",
        )
    ]
    assert [path.name for path in order_series(given)] == [
        "access.log.10.gz",
        "access.log.2.gz",
        "access.log.1",
        "access.log-20261123.gz",
        "access.log-20261124.gz",
        "access.log",
        "error.log.1",
        "error.log",
    ]


@pytest.mark.integration
def test_series_in_shell_glob_order_ships_every_line_once_in_order(series: Path) -> None:
    result = replay("--access", "access.log*", cwd=series)
    assert urls(result) == [line.decode().rstrip("\n") for line in LINES]
    assert urls(replay("--access", "access.log*", cwd=series)) == []  # the ledger remembers
    forced = replay("--access", "access.log*", "--force", cwd=series)
    assert len(urls(forced)) == len(LINES)


@pytest.mark.integration
def test_a_file_and_its_later_gzip_are_one_content(series: Path) -> None:
    assert len(urls(replay("--access", "access.log.1", cwd=series))) == 30
    (series / "access.log.1.gz").write_bytes(gzip.compress((series / "access.log.1").read_bytes()))
    (series / "access.log.1").unlink()
    assert urls(replay("--access", "access.log.1.gz", cwd=series)) == []


@pytest.mark.integration
def test_a_file_replayed_while_growing_continues_where_it_stopped(series: Path) -> None:
    assert len(urls(replay("--access", "access.log", cwd=series))) == len(LINES) - 90
    with open(series / "access.log", "ab") as live:
        live.write(LINES[0])
    assert urls(replay("--access", "access.log", cwd=series)) == [LINES[0].decode().rstrip("\n")]


@pytest.mark.integration
def test_gzip_is_recognised_by_content_and_error_records_are_aggregated(tmp_path: Path) -> None:
    (tmp_path / "error-archive").write_bytes(
        gzip.compress((LOGS / "default" / "error.log").read_bytes())
    )
    events = [
        orjson.loads(line)
        for line in replay("--error", "error-archive", cwd=tmp_path).stdout.splitlines()
    ]
    assert sum("error" in event for event in events) == 8
    assert all(event["logger"]["name"] == "gunicorn.error" for event in events)


@pytest.mark.integration
def test_bad_usage(tmp_path: Path) -> None:
    assert replay(cwd=tmp_path).returncode == 2
    missing = replay("--access", "nope.log", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.decode().strip() == "logpipe: error: cannot read nope.log: no such file"


@pytest.mark.integration
def test_max_age_skips_old_events_counts_them_and_marks_them_handled(series: Path) -> None:
    old = replay("--access", "access.log*", "--max-age", "1s", cwd=series)
    assert urls(old) == []  # the fixture lines were written minutes or more ago
    assert f"{len(LINES)} older than --max-age not sent" in old.stderr.decode()
    assert urls(replay("--access", "access.log*", "--max-age", "none", cwd=series)) == []
    again = replay("--access", "access.log*", "--max-age", "none", "--force", cwd=series)
    assert len(urls(again)) == len(LINES)
    bad = replay("--access", "access.log", "--max-age", "soon", cwd=series)
    assert bad.returncode == 2 and b"not a duration" in bad.stderr


@pytest.mark.integration
def test_replay_into_the_intake(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.intake import Intake, Status

    monkeypatch.setenv("DD_API_KEY", "replay-key")
    with Intake(api_key="replay-key") as intake:
        intake.script(Status(503))
        result = replay(
            "--access", "access.log*", "--intake-url", intake.url, "--max-age", "none", cwd=series
        )
        assert result.returncode == 0, result.stderr
        assert [event["message"] for event in intake.events] == [
            line.decode().rstrip("\n") for line in LINES
        ]
        intake.assert_clean()


def test_library_iterator(series: Path) -> None:
    import logpipe

    paths = [
        series / name
        for name in ("access.log", "access.log.1", "access.log.3.gz", "access.log.2.gz")
    ]
    events = list(logpipe.replay(access=paths))
    assert [event["message"] for event in events] == [line.decode().rstrip("\n") for line in LINES]
    assert events[0]["logpipe"]["path"].endswith("access.log.3.gz")


@pytest.mark.integration
def test_summary_table_and_html_report(series: Path) -> None:
    result = replay("--access", "access.log*", "--report", "report.html", cwd=series)
    text = result.stderr.decode()
    assert result.returncode == 0
    statuses = [int(line.split(b'" ')[1].split(b" ")[0]) for line in LINES]
    assert str(sum(400 <= status < 500 for status in statuses)) in text
    page = (series / "report.html").read_text()
    assert page.count("<svg") >= 3 and "<script" not in page
    assert 'data-section="top-4xx"' in page and '<dd data-key="inputs">' in page


@pytest.mark.integration
def test_metrics_carry_the_logs_own_time(series: Path) -> None:
    import re
    import socket
    from datetime import datetime

    from tests.unit.test_metrics import by_name, counts, ours, parse_line

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        result = replay(
            "--access",
            "access.log*",
            "--dogstatsd",
            f"127.0.0.1:{statsd.getsockname()[1]}",
            "--quiet",
            cwd=series,
        )
        assert result.returncode == 0, result.stderr
        statsd.settimeout(0.5)
        lines: list[str] = []
        try:
            while True:
                lines += statsd.recv(65535).decode().splitlines()
        except TimeoutError:
            pass
    metrics = ours([parse_line(line) for line in lines if line])
    statuses = [int(line.split(b'" ')[1].split(b" ")[0]) for line in LINES]
    totals = counts(metrics)
    assert by_name(totals, "gunicorn.logs.requests") == len(LINES)
    assert by_name(totals, "gunicorn.logs.requests.5xx") == sum(s >= 500 for s in statuses)
    stamp = LINES[0].split(b"[")[1].split(b"]")[0].decode()  # all fixture lines: one second
    seconds = int(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp())
    ours_lines = [line for line in lines if line.startswith("gunicorn.logs.")]
    assert {re.search(r"\|T(\d+)", line)[1] for line in ours_lines} == {str(seconds // 10 * 10)}


@pytest.mark.integration
def test_a_damaged_archive_is_reported_and_the_others_still_ship(series: Path) -> None:
    whole = gzip.compress(b"".join(LINES[:30]))
    (series / "access.log.3.gz").write_bytes(whole[: len(whole) // 2])  # cut short
    result = replay("--access", "access.log*", "--quiet", cwd=series)
    assert result.returncode == 1
    shipped = [orjson.loads(line)["message"] for line in result.stdout.splitlines()]
    assert shipped == [line.decode().rstrip("\n") for line in LINES[30:]]
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("logpipe: cannot read access.log.3.gz past byte 0 (")
    assert lines[-1] == "logpipe: not read to the end (damaged): access.log.3.gz"


@pytest.mark.integration
def test_progress_line_on_a_terminal(series: Path) -> None:
    """On a terminal, one progress line redrawn at most 4 times a second: files, events, rate
    and an ETA by bytes taken (none once done)."""
    import os
    import re
    import time

    terminal, stderr = os.openpty()
    command = [sys.executable, "-m", "logpipe", "replay", "--access", "access.log*"]
    command += ["--state-dir", "state", "--quiet", "--jobs", "2"]
    process = subprocess.Popen(command, cwd=series, stdout=subprocess.DEVNULL, stderr=stderr)
    os.close(stderr)
    shown = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            piece = os.read(terminal, 4096)
        except OSError:  # the other end closed: the replay is over
            break
        if not piece:
            break
        shown += piece
    os.close(terminal)
    assert process.wait(timeout=10) == 0
    text = shown.decode().replace("\x1b[K", "")  # each draw clears the line first
    draws = [part.strip() for part in re.split(r"[\r\n]+", text) if "file " in part]
    assert 1 <= len(draws) <= 3  # 4 files, many chunks: drawn once, then at the end
    assert re.fullmatch(rf"logpipe: file 4/4, {len(LINES)} events, [\d,]+/s", draws[-1])

"""``make run``'s driver (tests/fixtures/live_demo.py), run as ``make run`` runs it: follow mode
follows copies of the bundled logs through one rotation while lines are appended, and every
line and record of the files (the rotated ones included) is one event, once."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.fixtures.live_demo import ACCESS_PER_TICK, ERROR_EVERY_TICKS, TICK_S, error_records

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "tests" / "fixtures" / "logs" / "default"
SECONDS = 4.0


def test_the_demo_follows_the_rotation_without_loss(tmp_path: Path) -> None:
    bundle_lines = len((BUNDLE / "access.log").read_bytes().splitlines())
    bundle_records = len(error_records((BUNDLE / "error.log").read_bytes()))
    ticks = int(SECONDS / TICK_S)
    expected = {
        "gunicorn.access": bundle_lines + ticks * ACCESS_PER_TICK,
        "gunicorn.error": bundle_records + len(range(0, ticks, ERROR_EVERY_TICKS)),
    }
    assert expected == {"gunicorn.access": 115 + 32, "gunicorn.error": 20 + 3}

    driver = ["tests/fixtures/live_demo.py", "--work", str(tmp_path), "--seconds", str(SECONDS)]
    demo = subprocess.run(
        [sys.executable, *driver],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    logs = tmp_path / "logs"
    assert sorted(path.name for path in logs.iterdir()) == [
        "access.log",
        "access.log.1",
        "error.log",
        "error.log.1",
    ]
    events = [orjson.loads(line) for line in (tmp_path / "events.ndjson").read_bytes().splitlines()]
    assert Counter(event["logger"]["name"] for event in events) == expected
    assert not [event for event in events if "parse_error" in event["logpipe"]]
    # each line and record of the files is one event's message, once (times repeat, so a multiset)
    access_lines = [
        line.decode()
        for name in ("access.log.1", "access.log")
        for line in (logs / name).read_bytes().splitlines()
    ]
    records = [
        record.decode().rstrip("\n")
        for name in ("error.log.1", "error.log")
        for record in error_records((logs / name).read_bytes())
    ]
    assert Counter(event["message"] for event in events) == Counter(access_lines + records)
    assert {event["logpipe"]["path"] for event in events} == {
        str(logs / "access.log"),
        str(logs / "error.log"),
    }
    stderr = demo.stderr
    assert "logpipe: rotated access.log" in stderr and "logpipe: rotated error.log" in stderr
    assert "lines/s" in stderr and "Traceback" not in stderr
    assert stderr.rstrip().endswith("every line arrived exactly once")

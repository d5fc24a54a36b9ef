"""Every line of the real gunicorn logs in tests/fixtures/logs parses to what the client sent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.pipeline.batch import error_events
from tests.conftest import LOGS, flatten

RUNS = ("default", "durations", "headers")
# Other servers and logging setups (make_fixtures.py NEW_RUNS); only their files are checked here.
NEW_RUNS = ("uvicorn", "jsonlog", "logconf", "jsonaccess", "gunicorn20", "eventlet")
NEW_RUN_FILES = (
    "access.log",
    "error.log",
    "expected_access.jsonl",
    "expected_errors.json",
    "sent_requests.jsonl",
    "format.txt",
    "config.txt",
)


def _format(run: str) -> str | None:
    text = (LOGS / run / "format.txt").read_text(encoding="utf-8").strip()
    return None if run == "default" else text


def _access_lines(run: str) -> list[bytes]:
    return (LOGS / run / "access.log").read_bytes().split(b"\n")[:-1]


@pytest.mark.parametrize("run", RUNS)
def test_every_access_line_parses_to_what_was_sent(run: str) -> None:
    parser = AccessParser(_format(run))
    expected = [
        json.loads(line)
        for line in (LOGS / run / "expected_access.jsonl").read_text("utf-8").splitlines()
    ]
    lines = _access_lines(run)
    assert len(lines) == len(expected) > 100
    for number, (line, wanted) in enumerate(zip(lines, expected, strict=True), 1):
        event = parser.parse(line)
        flat = flatten(event)
        assert "logpipe.parse_error" not in flat, (number, line, flat)
        assert isinstance(event["timestamp"], int)
        for key, value in wanted.items():
            if key == "raw_query":
                assert parser.values(line.decode()).get("q") == value, (number, line)
            elif key == "pid_present":
                assert isinstance(event["pid"], int)
            elif value is None:
                assert key not in flat, (number, key, line)
            else:
                assert flat.get(key) == value, (number, key, line, flat.get(key))


@pytest.mark.parametrize("run", ("durations", "headers"))
def test_durations_agree_and_are_nanoseconds(run: str) -> None:
    parser = AccessParser(_format(run))
    for line in _access_lines(run):
        event = parser.parse(line)
        values = parser.values(line.decode())
        assert event["duration"] == int(values["D"]) * 1000


def test_timezones_are_converted_to_utc() -> None:
    """The same second, logged in three time zones, is one epoch value."""
    stamps = {}
    for run in RUNS:
        event = AccessParser(_format(run)).parse(_access_lines(run)[0])
        stamps[run] = event["timestamp"]
    offsets = {
        run: AccessParser(_format(run)).values(_access_lines(run)[0].decode())["t"][-6:-1]
        for run in RUNS
    }
    assert offsets == {"default": "+0000", "durations": "-0500", "headers": "+0530"}
    # The three runs happened within a few seconds of each other.
    assert max(stamps.values()) - min(stamps.values()) < 120_000


@pytest.mark.parametrize("run", RUNS)
def test_error_log_records(run: str) -> None:
    expected = json.loads((LOGS / run / "expected_errors.json").read_text("utf-8"))
    with open(LOGS / run / "error.log", "rb") as stream:
        events = list(error_events(stream, ErrorParser(), Multiline()))
    kinds = [event["error"]["kind"] for event in events if "error" in event]
    assert kinds == expected["exception_classes"]
    assert len(kinds) == expected["traceback_records"]
    app_levels = Counter(
        event["level"] for event in events if "level" in event and "pid" not in event
    )
    assert dict(app_levels) == expected["app_log_lines_by_level"]
    gunicorn_records = [event for event in events if "pid" in event]
    assert all(
        event["status"] in {"info", "warning", "error", "critical", "debug"} for event in events
    )
    assert {event["level"] for event in gunicorn_records} >= {"INFO", "ERROR"}
    # Stray lines never vanish: they are part of some record's message.
    messages = "\n".join(event["message"] for event in events)
    for bare in expected["bare_lines"]:
        assert bare in messages
    # Every line of the file is in exactly one event, in order.
    text = (LOGS / run / "error.log").read_text("utf-8")
    assert "\n".join(event["message"] for event in events) + "\n" == text


def test_error_offsets_point_at_record_starts() -> None:
    path = LOGS / "default" / "error.log"
    data = path.read_bytes()
    with open(path, "rb") as stream:
        events = list(error_events(stream, ErrorParser(), Multiline(), path=str(path)))
    for event in events:
        offset = event["logpipe"]["offset"]
        assert data[offset:].startswith(event["message"].encode()), offset
        assert event["logpipe"]["path"] == str(path)


def test_fixture_quirks_are_really_there() -> None:
    """Guard against regenerated fixtures losing the cases the parser must handle."""
    default = (LOGS / "default" / "access.log").read_text("utf-8")
    headers = (LOGS / "headers" / "access.log").read_text("utf-8")
    assert '\\" "EvilAgent/1.0 \\"\n' in default  # referer and UA ending in a backslash
    assert "Ð¢ÐµÐ»ÐµÑ" in default  # UTF-8 logged as latin-1
    assert '"GET None ' in headers  # %(U)s on the error path
    assert "  HTTP/1.1" in headers  # empty %(q)s
    assert "<" in headers and "+0530]" in headers


def _event_for(run: str, needle: str) -> dict:
    parser = AccessParser(_format(run))
    for line in _access_lines(run):
        if needle.encode() in line:
            return parser.parse(line)
    raise AssertionError(needle)


def test_mojibake_and_escapes_are_undone() -> None:
    event = _event_for("default", 'path\\" "EvilAgent')
    assert event["http"]["useragent"] == "EvilAgent/1.0 \\"
    assert event["http"]["referer"] == "https://example.com/path\\"
    cyrillic = _event_for("default", "Ð¢ÐµÐ»ÐµÑ")
    assert cyrillic["http"]["useragent"] == "Телефон/1.0"
    weird = _event_for("default", "Weird")
    assert weird["http"]["useragent"] == 'Weird\\"Agent'


def test_bots_and_categories() -> None:
    googlebot = _event_for("default", "Googlebot")
    assert googlebot["http"]["useragent_details"]["device"]["category"] == "Bot"
    curl = _event_for("default", "curl/8.5.0")
    assert curl["http"]["useragent_details"]["device"]["category"] == "Other"
    assert curl["http"]["useragent_details"]["browser"]["family"] == "curl"


def test_runs_are_listed(logs_dir: Path) -> None:
    assert sorted(path.name for path in logs_dir.iterdir() if path.is_dir()) == sorted(
        RUNS + NEW_RUNS
    )


@pytest.mark.parametrize("run", NEW_RUNS)
def test_new_run_fixtures_are_complete(run: str) -> None:
    """Every file is there, the counts are not zero and sent_requests.jsonl agrees with
    expected_access.jsonl (independent of parsing the formats)."""
    run_dir = LOGS / run
    for name in NEW_RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "config.txt").read_text("utf-8").splitlines()) == 1
    expected = (run_dir / "expected_access.jsonl").read_text("utf-8").splitlines()
    sent = [
        json.loads(line)
        for line in (run_dir / "sent_requests.jsonl").read_text("utf-8").splitlines()
    ]
    logged = [row for row in sent if row["logged"]]
    assert len(expected) == len(logged) > 100
    assert [row["access_record"] for row in logged] == list(range(len(expected)))
    errors = json.loads((run_dir / "expected_errors.json").read_text("utf-8"))
    assert errors["traceback_records"] == len(errors["exception_classes"]) > 0
    assert len(errors["traceback_records_detail"]) == errors["traceback_records"]
    assert sum(errors["records_by_level"].values()) > 0
    assert (run_dir / "error_format.txt").is_file() == (errors["error_layout"] != "gunicorn")
    assert (run_dir / "access.log").read_bytes().count(b"\n") >= len(expected)

"""Every fixture configuration parses with no flags: its access format is detected from the
first lines, as ``logpipe parse`` and follow mode do, and each line gives what the client sent.

The only lines allowed to differ are gunicorn's genuine ambiguities: a record that ``%0A`` in
the path split over two physical lines.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import logpipe
from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.cli.detect import run_detect
from logpipe.lines import head_lines
from logpipe.parsing.access.detect import detect
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, detect_error_layout
from logpipe.pipeline.batch import error_events
from tests.conftest import LOGS, flatten

RUNS = ("default", "durations", "uvicorn", "jsonlog", "logconf", "jsonaccess", "gunicorn20",
        "eventlet")  # fmt: skip
# Keys of expected_access.jsonl under another name in events.
EVENT_KEYS = {"http.request.headers.x-forwarded-for": "http._x_forwarded_for"}


def expected(run: str) -> list[dict[str, Any]]:
    text = (LOGS / run / "expected_access.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def exact(parser: AccessParser, line: bytes, wanted: dict[str, Any]) -> list[str]:
    """The keys of ``wanted`` the line's event gets wrong."""
    event = parser.parse(line)
    flat = flatten(event)
    if "logpipe.parse_error" in flat:
        return [f"parse error: {flat['logpipe.parse_error']}"]
    wrong = []
    for key, value in wanted.items():
        if key in ("json_valid", "physical_lines"):
            continue
        if key == "raw_query":
            got: Any = parser.values(line.decode()).get("q")
            value = value or got  # an empty query prints as nothing or "-"
        elif key in ("duration_present", "pid_present"):
            got, value = isinstance(event.get(key.removesuffix("_present")), int), True
        else:
            got = flat.get(EVENT_KEYS.get(key, key))
        if got != value:
            wrong.append(f"{key}: {got!r} != {value!r}")
    return wrong


UNNAMEABLE = ("http.request.headers.", "http.response.headers.", "http.environ.")


def parse_run(run: str, *, nameable_only: bool = False) -> tuple[str, int, int, list[str]]:
    """(format chosen, exact records, records, problems) for a run parsed with no flags
    (``nameable_only``: leaving out the values of headers and environ variables, which a line
    cannot name: detection gives them placeholder names)."""
    data = (LOGS / run / "access.log").read_bytes()
    detection = detect(head_lines(data[:65_536]))
    assert detection is not None, run
    parser = AccessParser(None if detection.default else detection.formats)
    lines = data.split(b"\n")[:-1]
    good, problems, position = 0, [], 0
    for number, wanted in enumerate(expected(run), 1):
        span = wanted.get("physical_lines", 1)
        record = lines[position]
        position += span
        if span > 1:
            problems.append(f"record {number}: split over {span} lines by gunicorn (genuine)")
            continue
        if nameable_only:
            wanted = {key: value for key, value in wanted.items() if not key.startswith(UNNAMEABLE)}
        wrong = exact(parser, record, wanted)
        if wrong:
            problems.append(f"record {number}: {'; '.join(wrong)}: {record[:160]!r}")
        else:
            good += 1
    assert position == len(lines)
    return detection.describe(), good, len(expected(run)), problems


def test_a_header_format_parses_with_no_flags_but_for_header_names() -> None:
    described, good, total, problems = parse_run("headers", nameable_only=True)
    assert good == total, "\n".join([described, *problems])


@pytest.mark.parametrize("run", RUNS)
def test_every_configuration_parses_with_no_flags(run: str) -> None:
    described, good, total, problems = parse_run(run)
    genuine = [problem for problem in problems if problem.endswith("(genuine)")]
    assert good + len(genuine) == total, "\n".join([described, *problems])
    assert good / total >= 0.99 or genuine, described


def report(path: Path) -> None:
    """Print the table the closing note shows (``python -m tests.unit.test_fixture_detection``)."""
    print("| configuration | format detected | exact | records | rate |")
    print("|---|---|---:|---:|---:|")
    for run in RUNS:
        described, good, total, _ = parse_run(run)
        print(f"| {run} | {described} | {good} | {total} | {100 * good / total:.2f} % |")
    described, good, total, _ = parse_run("headers", nameable_only=True)
    print(f"| headers (header names aside) | {described} | {good} | {total} | "
          f"{100 * good / total:.2f} % |")  # fmt: skip
    print()
    print("| configuration | error layout detected | records by level | with a traceback |")
    print("|---|---|---|---:|")
    for run in ERROR_RUNS:
        described, events = error_events_of(run)
        levels = Counter(event["level"] for event in events if "level" in event)
        shown = ", ".join(f"{level} {count}" for level, count in sorted(levels.items()))
        tracebacks = sum(1 for event in events if "error" in event)
        print(f"| {run} | {described} | {shown} | {tracebacks} |")


ERROR_RUNS = ("uvicorn", "jsonlog", "logconf", "jsonaccess", "gunicorn20", "eventlet")


def error_events_of(run: str) -> tuple[str, list[dict[str, Any]]]:
    """(layout detected, events) of a run's error log parsed with no flags."""
    data = (LOGS / run / "error.log").read_bytes()
    layout = detect_error_layout(head_lines(data[:65_536])) or DEFAULT_LAYOUT
    parser = ErrorParser(layout=layout, timezone=config_zone(run))
    multiline = Multiline[bytes](layout.start_pattern)
    with open(LOGS / run / "error.log", "rb") as stream:
        return layout.describe(), list(error_events(stream, parser, multiline))


def config_zone(run: str) -> str:
    """The zone the run's server wrote local times in (logging's, for times with no offset)."""
    found = re.search(r"TZ=(\S+)", (LOGS / run / "config.txt").read_text())
    return found.group(1) if found else "UTC"


@pytest.mark.parametrize("run", ERROR_RUNS)
def test_error_records_by_level_with_no_flags(run: str) -> None:
    described, events = error_events_of(run)
    wanted = json.loads((LOGS / run / "expected_errors.json").read_text("utf-8"))
    levels = Counter(wanted["records_by_level"]) + Counter(wanted["app_log_lines_by_level"])
    got = Counter(event["level"] for event in events if "level" in event)
    assert got == levels, described
    kinds = [event["error"]["kind"] for event in events if "error" in event]
    assert len(kinds) == wanted["traceback_records"], described
    assert Counter(kinds) == Counter(wanted["exception_classes"]), described


@pytest.mark.parametrize("run", ERROR_RUNS)
def test_the_replay_library_detects_too(run: str) -> None:
    """``logpipe.replay`` with no format: the only parse errors are gunicorn's own (a record
    split over two lines; lines printed before the first record, e.g. eventlet's warning)."""
    access = list(logpipe.replay(access=[LOGS / run / "access.log"]))
    errors = list(logpipe.replay(error=[LOGS / run / "error.log"]))
    split = sum(1 for wanted in expected(run) if wanted.get("physical_lines", 1) > 1)
    assert sum("parse_error" in event["logpipe"] for event in access) == 2 * split
    data = (LOGS / run / "error.log").read_bytes()
    before_first = not re.match(rb"[\[{0-9]", data)
    assert sum("parse_error" in event.get("logpipe", {}) for event in errors) == before_first


def test_logpipe_detect_names_each_files_format(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(LOGS / "eventlet" / "access.log"), str(LOGS / "jsonlog" / "error.log")]
    assert run_detect(files) == 0
    said = capsys.readouterr().out
    assert 'access_log_format = \'%(h)s %(l)s %(u)s %(t)s "%(r)s"' in said
    assert "%(L)s %({x-forwarded-for}i)s'" in said
    assert "error log: JSON lines: --error-format json" in said
    assert "24 of its first 24 records parse" in said
    assert run_detect([str(LOGS / "default" / "format.txt")]) == 1


if __name__ == "__main__":
    report(LOGS)

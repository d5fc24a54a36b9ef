"""Error-log layouts from logging formats, JSON error lines, layout detection and time zones.

Records are rendered by logging.Formatter itself, as an application's logging writes them."""

from __future__ import annotations

import calendar
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logpipe import ErrorParser, Multiline
from logpipe.parsing.error.assembly import LayoutError
from logpipe.parsing.error.layouts import (
    BASIC_FORMAT,
    BASIC_LAYOUT,
    COOKBOOK_FORMAT,
    COOKBOOK_LAYOUT,
    DEFAULT_LAYOUT,
    DEFAULT_START,
    FLASK_FORMAT,
    GUNICORN_DATEFMT,
    GUNICORN_FORMAT,
    JSON_LAYOUT,
    LOGGING_CONF_DATEFMT,
    LOGGING_CONF_LAYOUT,
    ErrorLayout,
    FormatRecords,
    detect_error_layout,
)
from logpipe.parsing.timestamps import json_time_ms, zone_named
from logpipe.sources import multiline

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/views.py", line 3, in pay\n'
    "    charge()\n"
    "ValueError: boom"
)
CREATED = 1796182814.544  # 2026-12-02 03:40:14.544 UTC


def record(**values: Any) -> logging.LogRecord:
    """A LogRecord with fixed, known attributes (``values`` replace them)."""
    made = logging.LogRecord(
        values.pop("name", "app.views"),
        logging.ERROR,
        values.pop("pathname", "/app/views.py"),
        values.pop("lineno", 42),
        values.pop("msg", "Error handling request /pay"),
        None,
        None,
        values.pop("func", "pay"),
    )
    made.created = values.pop("created", CREATED)
    made.msecs = (made.created - int(made.created)) * 1000
    made.process = values.pop("process", 6754)
    made.thread = values.pop("thread", 140001)
    made.threadName = values.pop("threadName", "MainThread")
    made.exc_text = values.pop("exc_text", None)
    for key, value in values.items():
        setattr(made, key, value)
    return made


def render(fmt: str, datefmt: str | None, made: logging.LogRecord, utc: bool = True) -> str:
    formatter = logging.Formatter(fmt, datefmt)
    if utc:
        formatter.converter = time.gmtime
    return formatter.format(made)


# --- layouts from logging formats, rendered by logging and read back


SEPARATORS = st.sampled_from([" ", " - ", " | ", "] [", ": ", " :: ", "@", " (", ") "])
ATTRIBUTES = ["levelname", "process", "name", "thread", "threadName", "module", "funcName"]
ATTRIBUTES += ["lineno", "filename", "pathname", "asctime"]
WORD = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
DATE_PARTS = st.tuples(
    st.sampled_from(["%Y-%m-%d", "%d/%b/%Y", "%y%m%d", "%Y.%m.%d", "%a %d %b %Y", "%m/%d/%y"]),
    st.sampled_from([" ", "T", ":", " at "]),
    st.sampled_from(["%H:%M:%S", "%I:%M:%S %p", "%H%M%S", "%H:%M:%S.%f"]),
    st.sampled_from(["", " %z", " %Z", " [%z]"]),
    st.booleans(),  # brackets around it all
)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[str, str | None]:
    """A logging format of the supported attributes, separated, and a datefmt (or None)."""
    chosen = draw(st.lists(st.sampled_from(ATTRIBUTES), min_size=1, max_size=6, unique=True))
    position = draw(st.integers(0, len(chosen)))
    message_last = draw(st.booleans())
    if message_last:
        chosen.append("message")
    else:
        chosen.insert(position, "message")
    fmt = draw(st.sampled_from(["", "[", "> "]))
    for index, attribute in enumerate(chosen):
        conversion = "d" if attribute in ("process", "thread", "lineno") else "s"
        width = "-8" if attribute == "levelname" and draw(st.booleans()) else ""
        fmt += f"%({attribute}){width}{conversion}"
        if index < len(chosen) - 1:
            fmt += draw(SEPARATORS)
    if not message_last:
        fmt += draw(st.sampled_from(["", ")", " ]"]))
    if draw(st.booleans()):
        return fmt, None
    date, between, clock, zone, brackets = draw(DATE_PARTS)
    datefmt = date + between + clock + zone
    return fmt, f"[{datefmt}]" if brackets else datefmt


@st.composite
def records(draw: st.DrawFn, message_last: bool) -> logging.LogRecord:
    made = record(
        name=".".join(draw(st.lists(WORD, min_size=1, max_size=3))),
        lineno=draw(st.integers(1, 99999)),
        func=draw(WORD),
        pathname=f"/srv/{draw(WORD)}/{draw(WORD)}.py",
        created=draw(st.floats(946684800, 2524608000)),  # 2000 to 2050
        process=draw(st.integers(1, 4_000_000)),
        thread=draw(st.integers(1, 2**48)),
        threadName=draw(st.sampled_from(["MainThread", "Thread_1", "worker3"])),
        levelname=draw(st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])),
        exc_text=draw(st.sampled_from([None, TRACEBACK])),
    )
    if message_last:
        made.msg = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
    else:
        # not empty: an empty message between a padded field (%(levelname)-8s) and the next
        # one cannot be told from the padding (a known limit of the layouts' regexes)
        made.msg = draw(st.from_regex(r"[A-Za-z0-9_.,]{1,20}", fullmatch=True))
    return made


def expected_timestamp(fmt: str, datefmt: str | None, made: logging.LogRecord) -> int | None:
    if "%(asctime)s" not in fmt:
        return None
    seconds = int(made.created) * 1000
    return seconds + int(made.msecs) if datefmt is None else seconds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), layout=layouts())
def test_records_rendered_by_logging_are_read_back(data: st.DataObject, layout: Any) -> None:
    fmt, datefmt = layout
    made = data.draw(records(message_last=fmt.endswith("%(message)s")))
    text = render(fmt, datefmt, made)
    parser = ErrorParser(layout=ErrorLayout.of(fmt, datefmt), timezone="UTC")
    event = parser.parse_text(text)  # (what parse gives a record after line hygiene)
    assert "logpipe" not in event, event
    assert event["message"] == text
    assert event.get("timestamp") == expected_timestamp(fmt, datefmt, made)
    logger = event["logger"]
    expected_logger = {
        "name": made.name if "%(name)s" in fmt else "gunicorn.error",
        "thread_id": made.thread,
        "thread_name": made.threadName,
        "module": made.module,
        "method_name": made.funcName,
        "line": made.lineno,
        "file_name": made.filename,
        "path": made.pathname,
    }
    keys = {"thread": "thread_id", "threadName": "thread_name", "module": "module"}
    keys |= {"funcName": "method_name", "lineno": "line", "filename": "file_name"}
    keys |= {"pathname": "path"}
    for attribute, key in keys.items():
        if f"%({attribute})" not in fmt:
            expected_logger.pop(key)
    assert logger == expected_logger
    if "%(levelname)" in fmt:
        assert event["level"] == made.levelname
        assert event["status"] == made.levelname.lower().replace("critical", "critical")
    if "%(process)d" in fmt:
        assert event["pid"] == made.process
    if made.exc_text:
        assert event["error"]["kind"] == "ValueError"
    # The Lark parser (which explains failures) splits the record as the fast path does.
    records_of = FormatRecords(parser.layout.formats[0], zone_named("UTC"), {})
    found = records_of.match(text + "\n")
    assert found is not None
    assert records_of.lark_parts(text + "\n") == list(found.groups())


def test_a_record_of_another_layout_is_a_parse_error_that_says_where() -> None:
    layout = ErrorLayout.of(GUNICORN_FORMAT, LOGGING_CONF_DATEFMT)
    event = ErrorParser(layout=layout).parse("2026-12-02 04:40:14 [x] [INFO] Starting")
    assert event["logpipe"]["parse_error"] == (
        "error record: no match at column 22, expected '%(process)d] ['"
    )
    assert event["message"] == "2026-12-02 04:40:14 [x] [INFO] Starting"


def test_unreadable_formats_are_refused() -> None:
    for fmt, datefmt in [("%(asctime)s %(message)s", "%Y %j"), ("%(name)d", None), ("50%", None)]:
        with pytest.raises(LayoutError):
            ErrorLayout.of(fmt, datefmt)


def test_gunicorns_own_format_is_the_default_layout() -> None:
    assert ErrorLayout.of(GUNICORN_FORMAT, GUNICORN_DATEFMT) is DEFAULT_LAYOUT
    assert DEFAULT_START == multiline.DEFAULT_START
    assert DEFAULT_LAYOUT.start_pattern == multiline.DEFAULT_START
    line = "[2026-11-25 04:22:59 +0000] [16471] [INFO] Listening at: http://127.0.0.1:8000"
    assert ErrorParser(layout=DEFAULT_LAYOUT).parse(line) == ErrorParser().parse(line)


def test_the_start_pattern_groups_tracebacks_with_their_record() -> None:
    text = render(GUNICORN_FORMAT, LOGGING_CONF_DATEFMT, record(exc_text=TRACEBACK))
    lines = (text + "\n" + text).split("\n")
    aggregator: Multiline[str] = Multiline(LOGGING_CONF_LAYOUT.start_pattern)
    done = [item.text for line in lines for item in aggregator.feed(line)]
    last = aggregator.flush()
    assert last is not None
    assert [*done, last.text] == [text, text]
    assert Multiline(JSON_LAYOUT.start_pattern).is_start("anything")


# --- what a traceback under a generic message says


def test_the_error_message_of_a_generic_message_is_the_exceptions_own() -> None:
    for message in ("Error handling request /x", "Exception in ASGI application"):
        text = f"[2026-11-25 04:22:59 +0000] [7] [ERROR] {message}\n{TRACEBACK}"
        event = ErrorParser().parse(text)
        assert event["error"]["kind"] == "ValueError"
        assert event["error"]["message"] == "boom"
        assert event["message"] == text
    specific = ErrorParser().parse(
        f"[2026-11-25 04:22:59 +0000] [7] [ERROR] Payment failed\n{TRACEBACK}"
    )
    assert specific["error"]["message"] == "Payment failed"


# --- JSON error lines


def test_json_lines_map_their_keys() -> None:
    line = json.dumps(
        {
            "time": "2026-12-02 03:40:00,544",
            "level": "ERROR",
            "logger": "gunicorn.error",
            "process": 31248,
            "message": "Error handling request POST /x",
            "exc_info": TRACEBACK,
            "request_id": "abc",
        }
    )
    event = ErrorParser(layout=JSON_LAYOUT, timezone="Europe/Paris").parse(line)
    assert event == {
        "message": "Error handling request POST /x",
        "ddsource": "gunicorn",
        "logger": {"name": "gunicorn.error"},
        "level": "ERROR",
        "status": "error",
        "timestamp": calendar.timegm((2026, 12, 2, 2, 40, 0)) * 1000 + 544,  # CET is UTC+1
        "pid": 31248,
        "error": {
            "message": "boom",
            "stack": TRACEBACK.removeprefix("Traceback (most recent call last):\n").lstrip(),
            "kind": "ValueError",
        },
        "request_id": "abc",
    }


def test_json_renames_and_stack_info() -> None:
    line = json.dumps(
        {
            "asctime": "2026-12-02T03:40:00.5+00:00",
            "levelname": "WARNING",
            "name": "app",
            "msg": "slow",
            "stack_info": "Stack (most recent call last):\n  File x",
            "funcName": "pay",
            "lineno": 3,
            "logpipe": "kept",
        }
    )
    event = ErrorParser(layout=JSON_LAYOUT).parse(line)
    assert event["message"] == "slow"
    assert event["logger"] == {"name": "app", "method_name": "pay", "line": 3}
    assert event["status"] == "warning"
    assert event["timestamp"] == calendar.timegm((2026, 12, 2, 3, 40, 0)) * 1000 + 500
    assert event["error"] == {"stack": "Stack (most recent call last):\n  File x"}
    assert event["json.logpipe"] == "kept"
    assert "logpipe" not in event


@pytest.mark.parametrize(
    "line",
    ['{"time": oops', "[1, 2]", '{"level": "INFO"', "not json at all", "{}" * 3, '"text"'],
)
def test_lines_that_are_not_json_objects_never_raise(line: str) -> None:
    event = ErrorParser(layout=JSON_LAYOUT).parse(line)
    assert event["message"] == line
    assert "parse_error" in event["logpipe"]


def test_a_plain_gunicorn_line_in_a_json_log_is_read_as_gunicorns() -> None:
    line = "[2026-11-25 04:22:59 +0000] [16471] [INFO] Starting gunicorn 27.0.1"
    assert ErrorParser(layout=JSON_LAYOUT).parse(line) == ErrorParser().parse(line)


def test_json_times() -> None:
    utc = zone_named("UTC")
    noon = calendar.timegm((2026, 12, 2, 12, 0, 0)) * 1000
    assert json_time_ms("2026-12-02 12:00:00,250", utc) == noon + 250
    assert json_time_ms("2026-12-02T13:00:00+01:00", None) == noon
    assert json_time_ms("2026-12-02T12:00:00Z", None) == noon
    assert json_time_ms(noon / 1000 + 0.25, None) == noon + 250
    assert json_time_ms(str(noon // 1000), None) == noon
    assert json_time_ms("yesterday", utc) is None
    assert json_time_ms(True, utc) is None


# --- detection


def python_json_line(made: logging.LogRecord) -> str:
    """What python-json-logger writes for ``%(asctime)s %(levelname)s %(name)s %(message)s``."""
    formatter = logging.Formatter()
    formatter.converter = time.gmtime
    return json.dumps(
        {
            "asctime": formatter.formatTime(made),
            "levelname": made.levelname,
            "name": made.name,
            "message": made.getMessage(),
        }
        | ({"exc_info": made.exc_text} if made.exc_text else {})
    )


def first_lines(fmt: str, datefmt: str | None) -> list[str]:
    made = [record(msg="Starting"), record(exc_text=TRACEBACK), record(msg="Done")]
    return "\n".join(render(fmt, datefmt, one) for one in made).split("\n")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (first_lines(GUNICORN_FORMAT, GUNICORN_DATEFMT), DEFAULT_LAYOUT),
        (first_lines(FLASK_FORMAT, None), DEFAULT_LAYOUT),
        (
            first_lines(GUNICORN_FORMAT, GUNICORN_DATEFMT) + first_lines(FLASK_FORMAT, None),
            DEFAULT_LAYOUT,
        ),
        (first_lines(GUNICORN_FORMAT, LOGGING_CONF_DATEFMT), LOGGING_CONF_LAYOUT),
        (first_lines(BASIC_FORMAT, None), BASIC_LAYOUT),
        (first_lines(COOKBOOK_FORMAT, None), COOKBOOK_LAYOUT),
        ([python_json_line(record()), python_json_line(record(exc_text=TRACEBACK))], JSON_LAYOUT),
        ([], None),
        (["hello", "Traceback (most recent call last):"], None),
    ],
    ids=["gunicorn", "flask", "mixed", "logging.conf", "basic", "cookbook", "json", "none", "?"],
)
def test_each_known_layout_is_detected(lines: list[str], expected: ErrorLayout | None) -> None:
    layout = detect_error_layout(lines)
    assert layout == expected
    if layout is None:
        return
    assert layout.describe()
    # and its records parse
    aggregator: Multiline[str] = Multiline(layout.start_pattern)
    texts = [item.text for line in lines for item in aggregator.feed(line)]
    last = aggregator.flush()
    texts += [last.text] if last else []
    parser = ErrorParser(layout=layout)
    for text in texts:
        assert "logpipe" not in parser.parse(text), text


def test_describe_names_the_options() -> None:
    assert LOGGING_CONF_LAYOUT.describe() == (
        "gunicorn logging.conf: --error-format "
        "'%(asctime)s [%(process)d] [%(levelname)s] %(message)s' "
        "--error-datefmt '%Y-%m-%d %H:%M:%S'"
    )
    assert JSON_LAYOUT.describe() == "JSON lines: --error-format json"


# --- time zones


@pytest.fixture
def paris() -> Iterator[None]:
    """The process's local zone is Europe/Paris (what logging's time.localtime uses)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


# 2026-10-25: Paris goes from CEST (+02:00) back to CET (+01:00) at 01:00 UTC, so 02:30 local
# happens twice; 2026-03-29: from CET to CEST at 01:00 UTC (02:00-03:00 local never happens).
INSTANTS = [
    calendar.timegm(moment)
    for moment in [
        (2026, 10, 24, 23, 59, 59),
        (2026, 10, 25, 0, 30, 0),  # 02:30 CEST
        (2026, 10, 25, 1, 30, 0),  # 02:30 CET
        (2026, 10, 25, 2, 0, 0),
        (2026, 3, 29, 0, 59, 59),  # 01:59:59 CET
        (2026, 3, 29, 1, 0, 0),  # 03:00 CEST
        (2026, 7, 1, 12, 0, 0),
    ]
]


@pytest.mark.parametrize("timezone", ["Europe/Paris", None])
def test_local_times_across_dst_changes(paris: None, timezone: str | None) -> None:
    fmt = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
    for datefmt in ["%Y-%m-%d %H:%M:%S %Z", "%Y-%m-%d %H:%M:%S %z", None]:
        parser = ErrorParser(layout=ErrorLayout.of(fmt, datefmt), timezone=timezone)
        for instant in INSTANTS:
            text = render(fmt, datefmt, record(created=instant + 0.25), utc=False)
            expected = instant * 1000 + (250 if datefmt is None else 0)
            if datefmt is None and instant == INSTANTS[2]:
                # without %Z or %z, a repeated time is its first occurrence
                expected -= 3600 * 1000
            assert parser.parse(text)["timestamp"] == expected, text


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        ErrorParser(timezone="Mars/Olympus")


# --- logpipe parse --kind error


def test_parse_detects_the_layout_and_says_it_once(
    tmp_path: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from logpipe.cli.parse import run_parse

    text = "\n".join(
        render(GUNICORN_FORMAT, LOGGING_CONF_DATEFMT, one)
        for one in (record(msg="Starting"), record(exc_text=TRACEBACK))
    )
    path = tmp_path / "error.log"
    path.write_text(text + "\n", encoding="utf-8")
    assert run_parse(["--kind", "error", "--timezone", "UTC", str(path)]) == 0
    out, err = capfd.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["message"] for event in events] == text.split("\n", 1)
    assert events[0]["timestamp"] == int(CREATED) * 1000
    assert events[1]["error"]["kind"] == "ValueError"
    assert err == f"logpipe: error log layout: {LOGGING_CONF_LAYOUT.describe()}\n"


def test_parse_takes_a_given_format(tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from logpipe.cli.parse import run_parse

    path = tmp_path / "error.log"
    path.write_text(render(BASIC_FORMAT, None, record()) + "\n", encoding="utf-8")
    assert run_parse(["--kind", "error", "--error-format", BASIC_FORMAT, str(path)]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["logger"]["name"] == "app.views"
    assert err == ""

"""Events of whole files: each record's event is what the parser makes of its text."""

from __future__ import annotations

import io

import pytest

from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_events, error_events
from logpipe.sources.multiline import Multiline

HEAD = b"[2026-11-25 10:00:00 +0000] [1] [ERROR] "


@pytest.mark.parametrize(
    "record",
    [
        HEAD + b"plain",
        HEAD + b"ends with an empty line\n",
        HEAD + b"ends with a CR\r",
        HEAD + b"has a NUL\x00 byte",
        HEAD + "non-ASCII: caf\u00e9".encode(),
        HEAD + b"invalid UTF-8 \xff",
        HEAD + b"over the cap " + b"x" * 300,
        HEAD + b'failed\nTraceback (most recent call last):\n  File "a.py"\nValueError: x',
    ],
)
def test_each_record_gets_what_parse_gives_its_text(record: bytes) -> None:
    parser = ErrorParser(max_record_bytes=200)
    data = HEAD + b"before\n" + record + b"\n" + HEAD + b"after\n"
    events = list(error_events(io.BytesIO(data), parser, Multiline[bytes](max_bytes=200)))
    middle = events[1]
    truncated = len(record) > 200
    expected = parser.parse(record[:200] if truncated else record, truncated=truncated)
    assert {key: value for key, value in middle.items() if key != "logpipe"} == {
        key: value for key, value in expected.items() if key != "logpipe"
    }
    assert middle["logpipe"]["offset"] == len(HEAD + b"before\n")


ACCESS = '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET /a HTTP/1.1" 200 5 "-" "%s"'


@pytest.mark.parametrize(
    "lines",
    [
        [ACCESS % "curl/8", ACCESS % 'escaped \\"quote\\"', ACCESS % "trailing \\"],
        [ACCESS % "curl/8", ACCESS % "caf\u00c3\u00a9 mojibake", ACCESS % "caf\u00e9"],
        [ACCESS % "curl/8", "not an access line", ACCESS % ("x" * 300)],
    ],
    ids=["ascii batch with backslashes", "non-ascii batch", "bad and over the cap"],
)
def test_each_access_line_gets_what_parse_gives_it(lines: list[str]) -> None:
    parser = AccessParser(max_line_bytes=200)
    data = "\n".join(lines).encode() + b"\n"
    events = list(access_events(io.BytesIO(data), parser, path="access.log"))
    offset = 0
    for line, event in zip(lines, events, strict=True):
        expected = parser.parse(line.encode())
        expected["logpipe"] = {
            **expected.get("logpipe", {}),
            "path": "access.log",
            "offset": offset,
        }
        assert event == expected
        offset += len(line.encode()) + 1

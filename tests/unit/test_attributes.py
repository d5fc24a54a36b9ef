"""Attributes every event carries (the identity), added by the parsers themselves."""

from __future__ import annotations

from typing import Any

import pytest

from logpipe import AccessParser, ErrorParser

LINE = '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET /a?b=1 HTTP/1.1" 404 5 "-" "curl/8.5.0"'
ESCAPED = LINE.replace('"curl/8.5.0"', '"curl \\"8\\""')
RECORD = "[2026-11-25 04:22:59 +0000] [12] [ERROR] boom"
IDENTITY = {"service": "shop", "hostname": "web-1", "ddtags": "env:prod"}


def updated(event: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """What adding ``attributes`` to a finished event gives (what the parsers must match)."""
    return {**event, **attributes}


ODD_NAMES = {'it\'s "odd"': 1, "ünï\ncode": None, "logger": {"name": "mine"}}


@pytest.mark.parametrize(
    "attributes",
    [IDENTITY, {**IDENTITY, "status": "x", "ddsource": "y", "timestamp": 0}, ODD_NAMES],
)
@pytest.mark.parametrize("line", [LINE, ESCAPED, "not an access line"])
@pytest.mark.parametrize("fast_path", [True, False])
def test_access_events_carry_the_attributes(
    attributes: dict[str, str], line: str, fast_path: bool
) -> None:
    plain = AccessParser(fast_path=fast_path).parse(line)
    parser = AccessParser(fast_path=fast_path, attributes=attributes)
    assert parser.parse(line) == updated(plain, attributes)
    if line.isascii():
        assert parser.parse_ascii(line) == updated(plain, attributes)


@pytest.mark.parametrize("attributes", [IDENTITY, {**IDENTITY, "level": "x", "logger": "y"}])
@pytest.mark.parametrize("record", [RECORD, "a stray line"])
def test_error_events_carry_the_attributes(attributes: dict[str, str], record: str) -> None:
    plain = ErrorParser().parse(record)
    assert ErrorParser(attributes=attributes).parse(record) == updated(plain, attributes)


def test_the_chain_sees_the_attributes() -> None:
    seen = []

    def look(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event["service"])
        return event

    AccessParser(attributes=IDENTITY, chain=[look]).parse(LINE)
    ErrorParser(attributes=IDENTITY, chain=[look]).parse(RECORD)
    assert seen == ["shop", "shop"]


def test_key_order_does_not_depend_on_the_path_a_line_takes() -> None:
    parser = AccessParser(attributes=IDENTITY)
    stamped = parser.parse_ascii(LINE, {"offset": 0})
    assert list(stamped) == [*parser.parse(LINE), "logpipe"]
    assert list(stamped)[-4:] == ["service", "hostname", "ddtags", "logpipe"]


def test_error_key_order_does_not_depend_on_the_path_a_record_takes() -> None:
    parser = ErrorParser(attributes=IDENTITY)
    stamped = parser.parse_text(RECORD, {"offset": 0})
    assert list(stamped) == [*parser.parse(RECORD), "logpipe"]
    assert list(stamped)[-4:] == ["service", "hostname", "ddtags", "logpipe"]

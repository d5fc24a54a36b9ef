"""Differential tests: the fast paths (regexes compiled from the grammars) and the Lark parsers
give identical events, and reject the same lines.

A fast path may decline a line (Lark then takes it); where it answers, it must answer what Lark
answers, and it must answer for every line gunicorn can print.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from logpipe import AccessParser
from logpipe.lines import decode
from logpipe.parsing.access.fast import fast_access
from logpipe.parsing.access.format import DEFAULT_FORMATS
from logpipe.parsing.access.parser import AccessParseError
from logpipe.parsing.error.fast import record_rules
from logpipe.parsing.error.parser import error_parser
from tests.unit.test_access_roundtrip import SETTINGS, formats, render, requests
from tests.unit.test_multiline_properties import start_lines

Atoms = dict[str, Any]


def lark_outcome(parser: AccessParser, line: str) -> Any:
    try:
        return parser.lark_match(line)
    except AccessParseError as error:
        return str(error)


def mutations(line: str) -> st.SearchStrategy[str]:
    """The line with one character deleted, replaced or inserted somewhere."""
    if not line:
        return st.just(line)
    position = st.integers(0, len(line) - 1)
    character = st.sampled_from(' "\\[]-0aZ\t<>%')
    return st.one_of(
        position.map(lambda i: line[:i] + line[i + 1 :]),
        st.tuples(position, character).map(lambda p: line[: p[0]] + p[1] + line[p[0] + 1 :]),
        st.tuples(position, character).map(lambda p: line[: p[0]] + p[1] + line[p[0] :]),
    )


def check_line(fmt: str | None, line: str) -> None:
    formats_ = DEFAULT_FORMATS if fmt is None else (fmt,)
    fast = fast_access(formats_).match(line)
    lark = lark_outcome(AccessParser(fmt), line)
    if fast is not None:
        index, values = fast
        assert (index, list(values)) == (lark[0], list(lark[1]))
    event_fast = timeless(AccessParser(fmt).parse(line))
    event_lark = timeless(AccessParser(fmt, fast_path=False).parse(line))
    assert event_fast == event_lark
    if line.isascii() and decode(line) == (line, None):  # as a line of an ASCII batch
        assert timeless(AccessParser(fmt).parse_ascii(line)) == event_lark


def timeless(event: dict[str, Any]) -> dict[str, Any]:
    """The event without a timestamp taken when it was read (a format with no time)."""
    if event.get("logpipe", {}).get("timestamp_source") == "read":
        event.pop("timestamp")
    return event


@SETTINGS
@given(fmt=formats(), request=requests(), data=st.data())
def test_random_formats_and_values(
    fmt: str, request: tuple[Atoms, Any], data: st.DataObject
) -> None:
    atoms, _ = request
    line = render(fmt, atoms)
    assert fast_access((fmt,)).match(line) is not None  # every printable line takes the fast path
    check_line(fmt, line)
    check_line(fmt, data.draw(mutations(line)))


@SETTINGS
@given(request=requests(), data=st.data())
def test_default_formats_and_values(request: tuple[Atoms, Any], data: st.DataObject) -> None:
    atoms, _ = request
    for fmt in DEFAULT_FORMATS:
        line = render(fmt, atoms)
        assert fast_access(DEFAULT_FORMATS).match(line) is not None
        check_line(None, line)
        check_line(None, data.draw(mutations(line)))


RECORD_TAILS = st.lists(
    st.sampled_from(
        [
            "Traceback (most recent call last):",
            '  File "app.py", line 3, in f',
            "    x()",
            "    ^^^",
            "ValueError: boom",
            "app.Custom: multi",
            "second line",
            "",
        ]
    ),
    max_size=6,
)


@SETTINGS
@given(first=start_lines(), tail=RECORD_TAILS, data=st.data())
def test_error_records(first: str, tail: list[str], data: st.DataObject) -> None:
    record = "\n".join([first, *tail])
    for text in (record, data.draw(mutations(record))):
        try:
            lark = error_parser().parse(text + "\n")
        except Exception:
            lark = None
        fast = next(
            (
                (rule.name, list(found.groups()))
                for rule in record_rules()
                if (found := rule.pattern.match(text + "\n"))
            ),
            None,
        )
        if lark is None:
            assert fast is None
        else:
            (branch,) = lark.children
            assert fast == (branch.data, [str(token) for token in branch.children])


def test_a_field_holding_the_separator_and_the_next_lead_still_takes_the_fast_path() -> None:
    """The ASCII tier cuts a lookahead to its first character (``[`` for ``%(t)s``); a user name
    `` [`` then ends too early there, and the same format's plain regex answers instead."""
    line = '0.0.0.0 -  [ [01/Jan/2000:00:00:00 +0000] "GET 0 HTTP/1.0" 100 - "-" "-"'
    found = fast_access(DEFAULT_FORMATS).match(line)
    assert found is not None
    assert found[1][2] == " ["
    check_line(None, line)

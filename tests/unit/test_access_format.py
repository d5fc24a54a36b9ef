"""Access formats: atoms, literals, the assembled grammar and its errors."""

from __future__ import annotations

from calendar import timegm

import pytest

from logpipe import DEFAULT_FORMAT, AccessParser, FormatError
from logpipe.parsing.access.format import Atom, Literal, parse_format
from logpipe.parsing.access.grammar import assemble


def test_default_format_segments() -> None:
    segments = parse_format(DEFAULT_FORMAT)
    assert segments[:4] == (
        Atom("h", "REMOTE_ADDR"),
        Literal(" "),
        Atom("l", "DASH"),
        Literal(" "),
    )
    assert segments[-1] == Literal('"')


def test_braced_atoms_are_lower_cased_and_unknown_names_print_a_dash() -> None:
    segments = parse_format("%({X-Request-ID}i)s %(nosuch)s %({bad)s 100%%")
    assert segments == (
        Atom("{x-request-id}i", "TEXT"),
        Literal(" "),
        Atom("nosuch", "DASH"),
        Literal(" "),
        Atom("{bad", "DASH"),
        Literal(" 100%"),
    )


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%(h)d", "unsupported atom syntax '%(h)d' at column 1: use %(name)s"),
        ("%(h)s %s", "unsupported atom syntax at column 7: use %(name)s or %%"),
        ("%(h)s 50%", "unsupported atom syntax at column 9: use %(name)s or %%"),
        ("no atoms", "access format has no %(name)s atom"),
        ("%(h)s\n%(t)s", "access format must be a single line"),
    ],
)
def test_bad_formats_are_refused(fmt: str, message: str) -> None:
    with pytest.raises(FormatError) as error:
        AccessParser(fmt)
    assert str(error.value) == message


def test_grammar_is_lark_text_built_from_the_atom_terminals() -> None:
    grammar = assemble((DEFAULT_FORMAT,))
    assert grammar.lark_source.startswith("%import access_atoms (")
    assert 'REQUEST_TIME " \\""' in grammar.lark_source
    assert [atom.key for atom in grammar.atoms] == list("hlutrsbfa")


def test_formats_that_share_a_prefix_share_terminals() -> None:
    grammar = assemble((DEFAULT_FORMAT, DEFAULT_FORMAT + ' "%({x-forwarded-for}i)s"'))
    first, second = grammar.sequences
    assert first[:8] == second[:8]


@pytest.mark.parametrize(
    ("fmt", "line", "expected"),
    [
        # Adjacent atoms, a format starting and ending with literals.
        ("[%(p)s%(s)s] %(a)s|", "[<12>200] agent with | bar|", {"p": "<12>", "s": "200"}),
        # The empty %(q)s double space and a decoded path with spaces.
        ('"%(m)s %(U)s %(q)s %(H)s" %(s)s', '"GET /a b  HTTP/1.1" 404', {"U": "/a b", "q": ""}),
        # Unquoted free text followed by fixed-shape atoms.
        ("%(u)s %(t)s %(s)s", "john smith [25/Nov/2026:04:22:59 +0000] 200", {"u": "john smith"}),
        ("%(h)s %(a)s", "1.2.3.4 ", {"h": "1.2.3.4", "a": ""}),
    ],
)
def test_custom_formats(fmt: str, line: str, expected: dict[str, str]) -> None:
    values = AccessParser(fmt).values(line)
    assert {key: values[key] for key in expected} == expected


def test_all_atoms_format() -> None:
    fmt = (
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" '
        '"%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s "%({x-a}i)s" "%({x-b}o)s" "%({remote_port}e)s" '
        "%(zz)s"
    )
    line = (
        '::1 - bob [25/Nov/2026:04:22:59 -0130] "POST /p?x=1 HTTP/1.0" POST /p x=1 HTTP/1.0 201 '
        '7 7 "r" "a" 1 1500000 1500 1.500000 <77> "ia" "ob" "5555" -'
    )
    event = AccessParser(fmt).parse(line)
    assert "logpipe" not in event
    assert event["duration"] == 1_500_000_000
    assert event["pid"] == 77
    assert event["timestamp"] == timegm((2026, 11, 25, 5, 52, 59)) * 1000  # 04:22:59 -01:30
    assert event["http"]["request"]["headers"] == {"x-a": "ia"}
    assert event["http"]["response"]["headers"] == {"x-b": "ob"}
    assert event["http"]["environ"] == {"remote_port": "5555"}
    assert event["network"] == {"client": {"ip": "::1"}, "bytes_written": 7}


@pytest.mark.parametrize(
    ("fmt", "line", "nanoseconds"),
    [
        ("%(s)s %(L)s", "200 0.000799", 799_000),
        ("%(s)s %(M)s", "200 12", 12_000_000),
        ("%(s)s %(T)s", "200 3", 3_000_000_000),
        ("%(s)s %(T)s %(D)s", "200 0 799", 799_000),
    ],
)
def test_duration_from_the_most_precise_atom(fmt: str, line: str, nanoseconds: int) -> None:
    assert AccessParser(fmt).parse(line)["duration"] == nanoseconds


def test_request_parts_without_r() -> None:
    event = AccessParser('"%(m)s %(U)s %(q)s %(H)s"').parse('"GET /cafÃ© a=1&a=2 HTTP/1.1"')
    assert event["http"]["url"] == "/café?a=1&a=2"
    assert event["http"]["url_details"] == {"path": "/café", "queryString": {"a": ["1", "2"]}}
    none_path = AccessParser('"%(m)s %(U)s %(q)s %(H)s"').parse('"GET None  HTTP/1.1"')
    assert "url" not in none_path["http"]


def test_forwarded_for_uses_datadogs_attribute() -> None:
    event = AccessParser().parse(
        '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET / HTTP/1.1" 200 1 "-" "-" "5.6.7.8"'
    )
    assert event["http"]["_x_forwarded_for"] == "5.6.7.8"
    assert "useragent" not in event["http"]


def test_absolute_url_details() -> None:
    event = AccessParser().parse(
        '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET http://ex.com:8080/a?b=c HTTP/1.1" 200 1'
    )
    assert event["http"]["url_details"] == {
        "scheme": "http",
        "host": "ex.com",
        "port": 8080,
        "path": "/a",
        "queryString": {"b": "c"},
    }

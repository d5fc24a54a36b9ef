"""Format detection: known layouts by name, others inferred from the lines, checked by parsing
them; a property test renders lines of random formats as gunicorn does and requires the
detected format to split them into the same values."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from logpipe.parsing.access.detect import detect, unfit
from logpipe.parsing.access.fast import fast_access
from logpipe.parsing.access.format import COMMON_FORMAT, DEFAULT_FORMAT, UVICORN_FORMAT
from tests.unit.test_access_roundtrip import SETTINGS, render, requests

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def lines_of(name: str) -> list[str]:
    return (LOGS / name / "access.log").read_text(errors="replace").splitlines()


def test_gunicorn_default_is_known_by_name() -> None:
    found = detect(lines_of("default"))
    assert found is not None and found.default and found.parsed == found.sample == 50


def test_a_durations_format_is_inferred_exactly() -> None:
    found = detect(lines_of("durations"))
    assert found is not None and found.name == "inferred"
    assert found.formats == ((LOGS / "durations" / "format.txt").read_text().strip(),)


def test_a_header_format_is_inferred_with_placeholders() -> None:
    found = detect(lines_of("headers"))
    assert found is not None and found.parsed == found.sample
    (fmt,) = found.formats
    assert fmt.startswith('%(h)s %(t)s "%(m)s %(U)s %(q)s %(H)s" %(s)s')
    assert "%({header-1}i)s" in fmt and fmt.endswith("%(p)s %(D)s")


def test_uvicorn_lines() -> None:
    found = detect(
        ['127.10.0.64:39711 - "GET /new-page HTTP/1.1" 200', '::1:0 - "GET / HTTP/1.1" 500']
    )
    assert found is not None and found.formats == (UVICORN_FORMAT,)


def test_a_trailing_unquoted_forwarded_for_list() -> None:
    head = (
        '127.0.0.1 - - [02/Dec/2026:04:40:14 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl/8" 0.000456 '
    )
    found = detect([head + "198.51.100.229, 10.0.0.5", head + "-", head + "unknown"])
    assert found is not None and found.parsed == 3
    assert found.formats[0].endswith('"%(a)s" %(L)s %({x-forwarded-for}i)s')


def test_a_json_format_is_inferred_and_parses_invalid_json_too() -> None:
    line = (
        '{"remote_ip":"127.0.0.1","request_id":"abc","response_code":200,"request_method":"GET",'
        '"request_path":"/a","request_querystring":"x=1","request_timetaken":1234,'
        '"response_length":12,"user_agent":"%s","referer":"-",'
        '"time":"[02/Dec/2026:04:40:14 +0000]"}'
    )
    found = detect([line % "curl/8", line % "EvilAgent/1.0 \\\\"])  # the second is not JSON
    assert found is not None and found.parsed == 2
    assert '"response_code":%(s)s' in found.formats[0]
    assert '"user_agent":"%(a)s"' in found.formats[0]


def test_nothing_fits() -> None:
    assert detect(["hello world", "not a log line"]) is None


SUFFIXES = (" %(T)s", " %(D)s", " %(M)s", " %(L)s", " %(p)s", ' "%({x-request-id}i)s"',
            " %({x-forwarded-for}i)s")  # fmt: skip


@st.composite
def user_formats(draw: st.DrawFn) -> str:
    """Formats people write: gunicorn's default or the common log format, then more fields."""
    base = draw(st.sampled_from((DEFAULT_FORMAT, COMMON_FORMAT)))
    return base + "".join(draw(st.lists(st.sampled_from(SUFFIXES), max_size=4, unique=True)))


@SETTINGS
@given(fmt=user_formats(), batch=st.lists(requests(), min_size=3, max_size=8))
def test_detection_recovers_a_format_that_splits_lines_the_same(
    fmt: str, batch: list[tuple[dict[str, object], object]]
) -> None:
    lines = []
    for atoms, _ in batch:
        assume(atoms["h"])  # (a unix socket's empty address starts the line with a space)
        atoms = {**atoms, "u": "-", "s": "200"}  # names with spaces are not inferable
        lines.append(render(fmt, atoms))
    found = detect(lines)
    assert found is not None, lines
    original, detected = fast_access((fmt,)).match, fast_access(found.formats).match
    for line in lines:
        expected = original(line)
        if expected is None:
            continue  # a line its own format cannot split (a value ending in \", then text)
        got = detected(line)
        assert got is not None, (found.formats, line)
        assert list(got[1]) == list(expected[1])


def test_nothing_fits_is_said_with_the_closest_format_and_its_reasons() -> None:
    lines = ["hello world", "not a log"]
    said = unfit(lines, detect(lines))
    assert "the closest, gunicorn's default" in said
    assert "access line: no match at column" in said and "(1 lines)" in said
    assert "give --access-format FMT" in said

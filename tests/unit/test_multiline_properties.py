"""Properties of ``logpipe.Multiline`` on error-log-like streams, for str and bytes lines.

The streams mix gunicorn record lines (``[2026-11-25 04:22:59 +0000] [12] [INFO] ...``) with what
follows them in real error logs: traceback lines, indented and empty lines, bare text (from
``wsgi.errors`` or ``--capture-output``) and near misses of the start pattern. The oracle for a
start line is Datadog's rule with ASCII digits (RE2 ``\\d``), for str and bytes lines alike;
generated text includes non-ASCII digits, which must not start a record.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logpipe import Multiline, Record
from logpipe.lines import read_batches, split_lines
from logpipe.sources.multiline import DEFAULT_START, stays_on_one_line
from tests.conftest import examples

SETTINGS = settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

START = re.compile(r"\[[0-9]{4}-[0-9]{2}-[0-9]{2}")
START_BYTES = re.compile(rb"\[[0-9]{4}-[0-9]{2}-[0-9]{2}")

Line = str | bytes

# --- lines ---------------------------------------------------------------------------------------

# Any text but newlines and surrogates; some text starts like a record with other digits.
TEXT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\n")
OTHER_DIGITS = st.characters(categories=("Nd",))
texts = st.one_of(
    st.text(TEXT_CHARS, max_size=30),
    st.builds(
        "[{}{}{}{}-{}{}-{}{} {}".format, *[OTHER_DIGITS] * 8, st.text(TEXT_CHARS, max_size=8)
    ),
)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ZONES = ("+0000", "-0500", "+0530", "+0545", "-0930")


@st.composite
def start_lines(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2199, 12, 31)))
    zone = draw(st.sampled_from(ZONES))
    pid = draw(st.integers(1, 4_194_304))
    level = draw(st.sampled_from(LEVELS))
    return f"[{moment:%Y-%m-%d %H:%M:%S} {zone}] [{pid}] [{level}] {draw(texts)}"


traceback_lines = st.one_of(
    st.sampled_from(
        [
            "Traceback (most recent call last):",
            '  File "/app/views.py", line 12, in crash',
            "    return 1 / 0",
            "           ~~^~~",
            "    ^^^^^^^^^^^^",
            "ZeroDivisionError: division by zero",
            "",
            "During handling of the above exception, another exception occurred:",
            "SystemExit: 1",
        ]
    ),
    st.builds(
        '  File "{}", line {}, in {}'.format,
        texts,
        st.integers(1, 10_000),
        st.from_regex(r"[a-z_<>]{1,12}", fullmatch=True),
    ),
)
indented_lines = st.builds(str.__add__, st.sampled_from(["  ", "    ", "\t", " "]), texts)
near_misses = st.sampled_from(
    [
        "[INFO] not a record",
        "[2026-11 partial date",
        "[202-11-25 short year",
        "[2026/11/25 slashes",
        " [2026-11-25 04:22:59 +0000] [1] [INFO] indented record",
        "x [2026-11-25 04:22:59 +0000] prefixed",
        "2026-11-25 04:22:59 no bracket",
        "[2026-1-25 one-digit month",
    ]
)
lines_str = st.one_of(
    start_lines(), traceback_lines, indented_lines, st.just(""), texts, near_misses
)
# bytes streams: the same lines encoded, and raw bytes (invalid UTF-8 included), no newline.
lines_bytes = st.one_of(
    lines_str.map(lambda line: line.encode("utf-8")),
    st.binary(max_size=30).map(lambda raw: raw.replace(b"\n", b"")),
    st.binary(max_size=10).map(lambda raw: b"[2026-11-25 " + raw.replace(b"\n", b"")),
)
streams_str = st.lists(lines_str, max_size=40)
streams_bytes = st.lists(lines_bytes, max_size=40)
KIND = pytest.mark.parametrize("kind", ["str", "bytes"])


def stream(kind: str) -> st.SearchStrategy[list[Any]]:
    return streams_str if kind == "str" else streams_bytes


# Small caps so that cuts happen; sometimes the defaults.
max_lines_values = st.one_of(st.integers(1, 8), st.just(1000))
max_bytes_values = st.one_of(st.integers(1, 300), st.just(1_000_000))

# --- helpers -------------------------------------------------------------------------------------


def size(line: Line) -> int:
    return len(line.encode("utf-8")) if isinstance(line, str) else len(line)


def is_start(line: Line) -> bool:
    pattern = START if isinstance(line, str) else START_BYTES
    return pattern.match(line) is not None  # type: ignore[arg-type]


def record_lines(record: Record[Any]) -> list[Any]:
    sep = "\n" if isinstance(record.text, str) else b"\n"
    return record.text.split(sep)


def offsets(lines: Sequence[Line], base: int) -> list[tuple[int, int]]:
    """(start, end) of each line in a file where it is followed by "\\n", from ``base``."""
    spans = []
    for line in lines:
        end = base + size(line) + 1
        spans.append((base, end))
        base = end
    return spans


def aggregate(
    multiline: Multiline[Any], lines: Sequence[Line], spans: Sequence[tuple[int, int]]
) -> list[Record[Any]]:
    """Feed every line, then flush."""
    records: list[Record[Any]] = []
    for line, (start, end) in zip(lines, spans, strict=True):
        done = multiline.feed(line, start=start, end=end)
        assert len(done) <= 1
        records.extend(done)
    last = multiline.flush()
    if last is not None:
        records.append(last)
    assert multiline.flush() is None
    assert not multiline.pending
    return records


def groups_of(records: Sequence[Record[Any]]) -> list[list[Any]]:
    groups = [record_lines(record) for record in records]
    for record, group in zip(records, groups, strict=True):
        assert record.line_count == len(group)
    return groups


# --- properties ----------------------------------------------------------------------------------


@KIND
@SETTINGS
@given(data=st.data(), max_lines=max_lines_values, max_bytes=max_bytes_values)
def test_every_line_comes_back_once_in_order(
    kind: str, data: st.DataObject, max_lines: int, max_bytes: int
) -> None:
    lines = data.draw(stream(kind), label="lines")
    multiline: Multiline[Any] = Multiline(max_lines=max_lines, max_bytes=max_bytes)
    records = aggregate(multiline, lines, offsets(lines, 0))
    assert [line for group in groups_of(records) for line in group] == lines
    assert all(record.line_count >= 1 for record in records)


@KIND
@SETTINGS
@given(
    data=st.data(),
    max_lines=max_lines_values,
    max_bytes=max_bytes_values,
    base=st.integers(0, 2**40),
)
def test_records_start_where_they_should_and_respect_the_caps(
    kind: str, data: st.DataObject, max_lines: int, max_bytes: int, base: int
) -> None:
    lines = data.draw(stream(kind), label="lines")
    spans = offsets(lines, base)
    multiline: Multiline[Any] = Multiline(max_lines=max_lines, max_bytes=max_bytes)
    records = aggregate(multiline, lines, spans)
    groups = groups_of(records)

    # Where each record is in the input.
    firsts = []
    position = 0
    for group in groups:
        firsts.append(position)
        position += len(group)
    assert position == len(lines)

    # Every start line begins a record.
    starts = {index for index, line in enumerate(lines) if is_start(line)}
    assert starts <= set(firsts)

    # A record was cut by a cap iff the next one does not begin with a start line.
    cut = [i + 1 < len(groups) and not is_start(groups[i + 1][0]) for i in range(len(groups))]
    for i, (record, group) in enumerate(zip(records, groups, strict=True)):
        continues_cut = i > 0 and cut[i - 1]
        # Every record but the first begins with a start line, or continues a cut one.
        if i > 0 and not is_start(group[0]):
            assert continues_cut and record.truncated
        # Flagged exactly when cut, or continuing a cut record.
        assert record.truncated == (cut[i] or continues_cut), (i, record)
        # Caps: never more than max_lines lines; max_bytes unless a single line.
        group_bytes = sum(size(line) for line in group) + len(group) - 1
        assert len(group) <= max_lines
        assert group_bytes <= max_bytes or len(group) == 1
        # A cut only where a cap required it: the next line would have passed one.
        if cut[i]:
            following = groups[i + 1][0]
            assert len(group) >= max_lines or group_bytes + 1 + size(following) > max_bytes
        # Offsets: start of the first line, end of the last one.
        assert record.start == spans[firsts[i]][0]
        assert record.end == spans[firsts[i] + len(group) - 1][1]


@KIND
@SETTINGS
@given(
    data=st.data(),
    timeout_quarters=st.integers(1, 8),
    steps=st.lists(
        st.tuples(st.integers(0, 12), st.lists(st.integers(0, 12), max_size=3)), max_size=25
    ),
)
def test_expire_flushes_after_the_quiet_period_and_not_before(
    kind: str,
    data: st.DataObject,
    timeout_quarters: int,
    steps: list[tuple[int, list[int]]],
) -> None:
    # Times are multiples of 0.25 s: exact in binary floating point, so ``>=`` is exact too.
    timeout = timeout_quarters / 4
    lines = data.draw(stream(kind).map(lambda drawn: drawn[: len(steps)]), label="lines")
    multiline: Multiline[Any] = Multiline(timeout=timeout)
    pending: list[Any] = []
    now = 0.0
    for line, (gap, waits) in zip(lines, steps, strict=False):
        now += gap / 4
        for record in multiline.feed(line, now=now):
            emitted = record_lines(record)
            assert emitted == pending[: len(emitted)]
            del pending[: len(emitted)]
        pending.append(line)
        fed_at = now
        for wait in sorted(waits):
            now = fed_at + wait / 4
            record = multiline.expire(now)
            if pending and now - fed_at >= timeout:
                assert record is not None, (fed_at, now, timeout)
                assert record_lines(record) == pending
                pending = []
            else:
                assert record is None, (fed_at, now, timeout)
        # Not before: a quarter second short of the timeout, nothing.
        if pending:
            assert multiline.expire(fed_at + timeout - 0.25) is None
    final = multiline.flush()
    assert (record_lines(final) if final else []) == pending


@SETTINGS
@given(
    lines=streams_str,
    max_lines=max_lines_values,
    max_bytes=max_bytes_values,
)
def test_str_and_bytes_lines_give_the_same_records(
    lines: list[str], max_lines: int, max_bytes: int
) -> None:
    encoded = [line.encode("utf-8") for line in lines]
    spans = offsets(lines, 0)
    as_str = aggregate(Multiline(max_lines=max_lines, max_bytes=max_bytes), lines, spans)
    as_bytes = aggregate(Multiline(max_lines=max_lines, max_bytes=max_bytes), encoded, spans)
    assert [(r.line_count, r.start, r.end, r.truncated) for r in as_str] == [
        (r.line_count, r.start, r.end, r.truncated) for r in as_bytes
    ]
    assert [r.text.encode("utf-8") for r in as_str] == [r.text for r in as_bytes]


# Datadog's rule matches ASCII digits only (RE2 ``\d``); so must both str and bytes lines here.
NON_ASCII_DIGITS = [
    "[2026-11-25 04:22:59 +0000] [7] [ERROR] Error handling request /x",
    "[\uff12\uff10\uff12\uff16-\uff11\uff11-\uff12\uff15] app text with fullwidth digits",
    "[\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0665] arabic-indic digits",
]


@KIND
def test_non_ascii_digits_do_not_start_a_record(kind: str) -> None:
    lines: list[Any] = NON_ASCII_DIGITS
    if kind == "bytes":
        lines = [line.encode("utf-8") for line in lines]
    records = aggregate(Multiline(), lines, offsets(lines, 0))
    assert [record.line_count for record in records] == [3]


@SETTINGS
@given(
    lines=streams_bytes,
    max_lines=max_lines_values,
    max_bytes=max_bytes_values,
    chunk_bytes=st.integers(1, 64),
    final_newline=st.booleans(),
    pattern=st.sampled_from([DEFAULT_START, r"^\[\d{4}", r"\[\d{4}-\d\d-\d\d\s"]),
)
def test_feed_batch_gives_what_feeding_line_by_line_gives(
    lines: list[bytes],
    max_lines: int,
    max_bytes: int,
    chunk_bytes: int,
    final_newline: bool,
    pattern: str,
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    one_by_one: Multiline[bytes] = Multiline(pattern, max_lines=max_lines, max_bytes=max_bytes)
    batched: Multiline[bytes] = Multiline(pattern, max_lines=max_lines, max_bytes=max_bytes)
    expected: list[Record[bytes]] = []
    got: list[Record[bytes]] = []
    for line in split_lines(io.BytesIO(data), chunk_bytes=chunk_bytes):
        expected.extend(one_by_one.feed(line.data, start=line.offset, end=line.end))
    for batch in read_batches(io.BytesIO(data), chunk_bytes=chunk_bytes):
        got.extend(batched.feed_batch(batch))
    expected += [record for record in [one_by_one.flush()] if record]
    got += [record for record in [batched.flush()] if record]
    assert got == expected


@pytest.mark.parametrize(
    ("pattern", "one_line"),
    [
        (DEFAULT_START, True),
        (r"^\w+ \d+:", True),
        (r"\[\d{4}|Traceback \(most", True),
        (r"\\", True),  # a literal backslash
        (r"\[\d{4}-\d\d-\d\d\s", False),  # \s matches a line break
        (r"[^x]", False),
        (r"(?s)a.", False),
        (r"a\nb", False),
        (r"\x0a", False),
        (r"\D", False),
        ("[\x01-\x7f]", False),  # a range of raw control characters, holding "\n"
        ("a\nb", False),  # a raw line break
    ],
)
def test_a_start_pattern_is_known_to_stay_on_one_line_only_when_it_must(
    pattern: str, one_line: bool
) -> None:
    assert stays_on_one_line(pattern) is one_line
    if not one_line:
        return
    matcher = re.compile(pattern.encode())
    for text in (b"\n", b"a\nb", b"[2026\n-11", b"x \n\n"):
        found = matcher.search(text)
        assert found is None or b"\n" not in found.group()

"""Bad input never crashes the parsers and never disappears."""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Callable

import pytest

from logpipe import AccessParser, ErrorParser
from logpipe.lines import MAX_LINE_BYTES, decode, read_batches, split_lines
from logpipe.pipeline.batch import access_batch_pairs, add_origin

GOOD = '127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8.5.0"'


@pytest.fixture(scope="module")
def access() -> AccessParser:
    return AccessParser()


def test_unparseable_line_keeps_message_and_reason(access: AccessParser) -> None:
    event = access.parse("this is not an access line")
    assert event["message"] == "this is not an access line"
    assert event["logpipe"]["parse_error"] == "access line: no match at column 6, expected %(l)s"
    assert event["logger"]["name"] == "gunicorn.access"
    assert event["status"] == "info"


def test_reason_names_the_atom_that_failed(access: AccessParser) -> None:
    event = access.parse(GOOD.replace(" 200 ", " 2x0 "))
    assert event["logpipe"]["parse_error"] == ("access line: no match at column 62, expected %(s)s")


def test_crlf_is_stripped(access: AccessParser) -> None:
    event = access.parse((GOOD + "\r\n").encode())
    assert event["message"] == GOOD
    assert event["http"]["useragent"] == "curl/8.5.0"


def test_invalid_utf8_is_replaced_and_flagged(access: AccessParser) -> None:
    line = GOOD.encode().replace(b"curl/8.5.0", b"curl/\xff\xfe")
    event = access.parse(line)
    assert event["http"]["useragent"] == "curl/\ufffd\ufffd"
    assert event["logpipe"]["invalid_utf8"] is True


def test_nul_bytes_are_removed_and_flagged(access: AccessParser) -> None:
    event = access.parse(b"\x00\x00\x00" + GOOD.encode())
    assert event["message"] == GOOD
    assert event["logpipe"]["nul_bytes"] is True
    assert "parse_error" not in event["logpipe"]


def test_oversize_line_is_cut_and_flagged(access: AccessParser) -> None:
    line = GOOD.replace("/x", "/" + "a" * (MAX_LINE_BYTES + 10))
    event = access.parse(line)
    assert len(event["message"].encode()) <= MAX_LINE_BYTES
    assert event["logpipe"]["truncated"] is True
    assert "parse_error" in event["logpipe"]


def test_cut_never_splits_a_character() -> None:
    text, repairs = decode(("é" * 10).encode(), max_bytes=5)
    assert text == "éé"
    assert repairs is not None and repairs.truncated and not repairs.invalid_utf8


def test_reader_caps_lines_without_holding_them() -> None:
    data = b"short\n" + b"x" * 5000 + b"\nlast"
    lines = list(split_lines(io.BytesIO(data), max_bytes=100, chunk_bytes=64))
    assert [(line.offset, line.end, len(line.data), line.truncated) for line in lines] == [
        (0, 6, 5, False),
        (6, 5007, 100, True),
        (5007, 5011, 4, False),
    ]


def test_reader_keeps_a_partial_last_line_only_when_final() -> None:
    data = b"one\ntwo"
    assert [line.data for line in split_lines(io.BytesIO(data), final=False)] == [b"one"]
    assert [line.data for line in split_lines(io.BytesIO(data))] == [b"one", b"two"]


def test_unicode_line_separators_do_not_split_lines(access: AccessParser) -> None:
    """gunicorn logs U+0085 (NEL) for a UTF-8 Cyrillic ha (D1 85); only '\\n' ends a line."""
    line = GOOD.replace("curl/8.5.0", "Ñ\u0085")
    assert len(list(split_lines(io.BytesIO(line.encode() + b"\n")))) == 1
    assert access.parse(line)["http"]["useragent"] == "\u0445"


HOSTILE = [
    GOOD.replace('"curl/8.5.0"', '"' + '\\"' * 100_000 + '"'),
    GOOD.replace('"curl/8.5.0"', '"' + '\\"' * 100_000),
    GOOD.replace("/x", "/" + "a" * 3_000_000),
    GOOD.replace(" - - ", " - " + '\\" ' * 60_000),
    '"' * 200_000,
    " " * 200_000,
]
HOSTILE_IDS = ["escaped-quotes", "unterminated", "3MB-url", "user-quotes", "quotes", "spaces"]


@pytest.mark.parametrize("hostile", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_lines_parse_whole(hostile: str) -> None:
    event = AccessParser(max_line_bytes=10_000_000).parse(hostile)
    assert event["message"] == hostile


# The same shapes as HOSTILE, about ``size`` characters long; ``tag`` makes each line distinct
# (the user-agent and URL memos would otherwise answer a repeated line without parsing it).
GROWING: dict[str, Callable[[int, int], str]] = {
    "escaped-quotes": lambda size, tag: GOOD.replace(
        '"curl/8.5.0"', f'"{tag}' + '\\"' * (size // 2) + '"'
    ),
    "unterminated": lambda size, tag: GOOD.replace('"curl/8.5.0"', f'"{tag}' + '\\"' * (size // 2)),
    "long-url": lambda size, tag: GOOD.replace("/x", f"/{tag}" + "a" * size),
    "user-quotes": lambda size, tag: GOOD.replace(" - - ", f" - {tag}" + '\\" ' * (size // 3)),
    "quotes": lambda size, tag: '"' * size + str(tag),
    "spaces": lambda size, tag: " " * size + str(tag),
}
# Both sizes well past EXPLAIN_LIMIT (so both take the same path) and past the CPU caches: the
# regex engine's stack costs ~4x more a character once it outgrows them (seen between 200k and
# 400k characters here), which must not be mistaken for super-linear growth.
SMALL, LARGE = 500_000, 2_000_000
RUNS = 3
FLOOR_S = 0.001  # below a millisecond of CPU, timer noise and call overhead dominate


def best_cpu_seconds(parser: AccessParser, make: Callable[[int, int], str], size: int) -> float:
    """The least CPU time of this thread (not wall time: a busy VM's other processes do not
    count) that parsing a fresh line of ``size`` took, over RUNS lines."""
    best = float("inf")
    for tag in range(RUNS):
        line = make(size, tag)
        started = time.thread_time()
        event = parser.parse(line)
        best = min(best, time.thread_time() - started)
        assert event["message"] == line
    return best


@pytest.mark.integration  # ~3 s of parsing megabyte lines
@pytest.mark.parametrize("shape", GROWING)
def test_hostile_lines_finish(shape: str) -> None:
    """Each parses in time linear in its length: 4x the characters take under 8x the time
    (quadratic would be 16x; linear measures 3.3-4.6x here)."""
    parser = AccessParser(max_line_bytes=100_000_000)
    small = best_cpu_seconds(parser, GROWING[shape], SMALL)
    large = best_cpu_seconds(parser, GROWING[shape], LARGE)
    assert large / max(small, FLOOR_S) < 8, f"{SMALL}: {small:.4f} s, {LARGE}: {large:.4f} s"


def test_3mb_url_parses_when_the_cap_allows() -> None:
    line = GOOD.replace("/x", "/" + "a" * 3_000_000)
    event = AccessParser(max_line_bytes=10_000_000).parse(line)
    assert event["http"]["status_code"] == 200
    assert len(event["http"]["url"]) == 3_000_001


def test_error_parser_never_raises() -> None:
    parser = ErrorParser()
    for record in ["", "[", "[2026-13-45 99:99:99 +0000] [1] [INFO] x", b"\xff\xfe", "\x00" * 10]:
        event = parser.parse(record)
        assert "message" in event


def test_impossible_date_is_a_parse_of_the_rest() -> None:
    event = ErrorParser().parse("[2026-13-45 99:99:99 +0000] [1] [INFO] x")
    assert "timestamp" not in event
    assert event["level"] == "INFO"


@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 64, 1 << 20])
def test_reader_offsets_at_any_chunk_size(chunk_bytes: int) -> None:
    data = b"a\r\n\nbb\n" + "é".encode() * 60 + b"\nccc\nlast"
    lines = list(split_lines(io.BytesIO(data), max_bytes=100, chunk_bytes=chunk_bytes))
    assert [(line.offset, line.end, line.data, line.truncated) for line in lines] == [
        (0, 3, b"a", False),
        (3, 4, b"", False),
        (4, 7, b"bb", False),
        (7, 128, "é".encode() * 50, True),
        (128, 132, b"ccc", False),
        (132, 136, b"last", False),
    ]


def test_a_cut_line_flags_its_error_record() -> None:
    from logpipe import Multiline
    from logpipe.pipeline.batch import error_events

    data = (
        b"[2026-11-25 04:22:59 +0000] [1] [ERROR] boom\n"
        + b"x" * 500
        + b"\n[2026-11-25 04:23:00 +0000] [1] [INFO] fine\n"
    )
    parser = ErrorParser(max_record_bytes=10_000)
    events = list(error_events(io.BytesIO(data), parser, Multiline(), max_line_bytes=100))
    assert [event.get("logpipe", {}).get("truncated") for event in events] == [True, None]
    assert events[0]["message"].endswith("\n" + "x" * 100)


def test_batches_decoded_whole_or_line_by_line_give_the_same_events(
    access: AccessParser,
) -> None:
    """A batch is decoded in one call only when no line needs repair; either way each event
    is what ``parse`` gives for its line, stamped with where the line starts."""
    clean = [GOOD, GOOD.replace("/x", "/caf\u00e9"), ""]
    dirty = [GOOD + "\r", GOOD.replace("/x", "/\x00x"), GOOD.encode() + b"\xff"]
    for lines in (clean, dirty):
        data = b"".join(
            (line.encode() if isinstance(line, str) else line) + b"\n" for line in lines
        )
        (batch,) = read_batches(io.BytesIO(data))
        assert (batch.texts() is None) == (lines is dirty)
        pairs = list(access_batch_pairs([batch], access, path="a.log"))
        offsets = [0]
        for line in batch.lines:
            offsets.append(offsets[-1] + len(line) + 1)
        expected = [
            (add_origin(access.parse(line), "a.log", start), end)
            for line, start, end in zip(batch.lines, offsets, offsets[1:], strict=False)
            if line
        ]
        assert pairs == expected


def test_a_clean_batch_read_with_a_larger_cap_is_still_capped() -> None:
    small = AccessParser(max_line_bytes=60)
    (batch,) = read_batches(io.BytesIO(GOOD.encode() + b"\n"), max_bytes=MAX_LINE_BYTES)
    assert batch.texts() is not None
    ((event, _),) = access_batch_pairs([batch], small)
    assert event["logpipe"]["truncated"] is True
    assert event == add_origin(small.parse(GOOD), None, 0)


def test_a_batch_travels_to_workers_in_one_form() -> None:
    data = (GOOD + "\n") * 1000
    (batch,) = read_batches(io.BytesIO(data.encode()))
    assert batch.lines  # both forms are held now
    copy = pickle.loads(pickle.dumps(batch))
    assert (copy.offset, copy.end, copy.lines, copy.cut) == (
        batch.offset,
        batch.end,
        batch.lines,
        batch.cut,
    )
    assert len(pickle.dumps(batch)) < 1.1 * len(data)

"""The replay summary over the real fixture logs: text tables and a self-contained HTML page.

The expected counts are read straight from the raw logs with regular expressions, never from
logpipe's events.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from datetime import datetime
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pytest

from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.backfill import render
from logpipe.backfill.render import COLOURS
from logpipe.backfill.summary import BUCKET_MS, Summary
from logpipe.event import Event
from logpipe.pipeline.batch import access_events, error_events
from tests.conftest import LOGS

RUNS = ("default", "durations", "headers")
TRACEBACKS = 8  # each run's app raised eight times

# Independent readings of the raw logs. default and durations log the request line (%(r)s),
# with the user agent the last quoted field; headers logs "%(m)s %(U)s %(q)s %(H)s" (PATH_INFO
# as WSGI's latin-1 text, quotes escaped, a path gunicorn had none for as None), no user agent.
REQUEST = re.compile(r'\[(?P<time>[^\]]+)\] "\S+ (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
HEADERS_REQUEST = re.compile(
    r'\[(?P<time>[^\]]+)\] "\S+ (?P<target>.*) \S* HTTP/[\d.]+" (?P<status>\d{3}) '
)
LAST_QUOTED = re.compile(r'"([^"]*)"[^"]*$')
RECORD_LEVEL = re.compile(r"^\[\d{4}-\d{2}-\d{2} [^\]]+\] (?:\[\d+\] \[([A-Z]+)\]|([A-Z]+) in )")
# the bot's name in the user agent; a bot error when it contains `bot` (case-sensitive)
BOT = re.compile(r"compatible; ([^/;]+)/")
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}


class Raw(NamedTuple):
    """What the raw logs of one run say."""

    statuses: Counter[int]
    paths_4xx: Counter[str]
    paths_5xx: Counter[str]
    bots: Counter[str]
    bot_paths: Counter[tuple[str, str]]
    buckets: set[tuple[int, str]]
    levels: Counter[str]
    tracebacks: int
    records: int


def _format(run: str) -> str | None:
    return None if run == "default" else (LOGS / run / "format.txt").read_text("utf-8").strip()


def _feed(summary: Summary, run: str, parser: AccessParser) -> Summary:
    with open(LOGS / run / "access.log", "rb") as stream:
        for event in access_events(stream, parser):
            summary.observe(event)
    with open(LOGS / run / "error.log", "rb") as stream:
        for event in error_events(stream, ErrorParser(), Multiline()):
            summary.observe(event)
    return summary


def _lines(run: str, name: str) -> list[str]:
    """The file's lines (split at newlines only: a user agent may hold U+0085)."""
    return (LOGS / run / name).read_text("utf-8").split("\n")[:-1]


@cache
def _summary(run: str) -> Summary:
    return _feed(Summary(), run, AccessParser(_format(run)))


def _path(target: str, run: str) -> str:
    if run != "headers":
        return re.sub(r"^[a-z]+://[^/]*", "", target).split("?")[0]
    if target == "None":
        return "(none)"
    path = target.replace('\\"', '"')
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


@cache
def _raw(run: str) -> Raw:
    raw = Raw(Counter(), Counter(), Counter(), Counter(), Counter(), set(), Counter(), 0, 0)
    pattern = HEADERS_REQUEST if run == "headers" else REQUEST
    for line in _lines(run, "access.log"):
        match = pattern.search(line)
        assert match, line
        status, path = int(match["status"]), _path(match["target"], run)
        raw.statuses[status] += 1
        seconds = datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        raw.buckets.add((int(seconds) * 1000 // BUCKET_MS, f"{status // 100}xx"))
        if 400 <= status < 600:
            (raw.paths_4xx if status < 500 else raw.paths_5xx)[path] += 1
            agent = LAST_QUOTED.search(line) if run != "headers" else None
            bot = BOT.search(agent[1]) if agent else None
            if bot and "bot" in bot[1]:
                raw.bots[bot[1]] += 1
                raw.bot_paths[bot[1], path] += 1
    for line in _lines(run, "error.log"):
        level = RECORD_LEVEL.match(line)
        if level:
            raw.levels[level[1] or level[2]] += 1
    tracebacks = _lines(run, "error.log").count("Traceback (most recent call last):")
    return raw._replace(tracebacks=tracebacks, records=sum(raw.levels.values()))


def _classes(statuses: Counter[int]) -> Counter[str]:
    classes: Counter[str] = Counter()
    for status, count in statuses.items():
        classes[f"{status // 100}xx"] += count
    return classes


def _top(counter: Counter[str], top: int) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]


def _has_row(text: str, *cells: object) -> bool:
    row = r"\s+".join(re.escape(str(cell)) for cell in cells)
    return re.search(rf"^\s+{row}$", text, re.MULTILINE) is not None


@pytest.mark.parametrize("run", RUNS)
def test_counts_match_the_raw_logs(run: str) -> None:
    summary, raw = _summary(run), _raw(run)
    lines = len(_lines(run, "access.log"))
    assert (summary.lines, summary.records) == (lines, raw.records)
    assert summary.events == lines + raw.records
    assert (summary.parse_errors, summary.truncated, summary.skipped_old) == (0, 0, 0)
    assert summary.statuses == raw.statuses
    assert summary.classes == _classes(raw.statuses)
    assert summary.paths_4xx == raw.paths_4xx
    assert summary.paths_5xx == raw.paths_5xx
    assert summary.bots == raw.bots
    assert summary.bot_paths == raw.bot_paths
    assert summary.levels == raw.levels
    assert summary.tracebacks == raw.tracebacks == TRACEBACKS
    buckets = {(bucket // BUCKET_MS, status_class) for bucket, status_class in summary.timeline}
    assert buckets == raw.buckets
    assert sum(summary.timeline.values()) == raw.statuses.total()


def test_the_fixture_runs_have_what_the_tables_show() -> None:
    raw = _raw("default")
    # Datadog's `*bot*` is case-sensitive: YandexBot and AhrefsBot are not in the saved view
    assert raw.bots == {"Googlebot": 3, "bingbot": 1}
    assert raw.paths_5xx["/crash"] == 6
    assert _raw("headers").bots == {}
    assert _raw("headers").paths_5xx["(none)"] == 6


def test_first_and_last_timestamps() -> None:
    summary = _summary("default")
    assert (summary.first, summary.last) == (1795586620000, 1795586620099)
    text = render.text(summary)
    assert _has_row(text, "first event", "2026-11-25 06:03:40.000 UTC")
    assert _has_row(text, "last event", "2026-11-25 06:03:40.099 UTC")


@pytest.mark.parametrize("run", RUNS)
def test_text_has_the_expected_rows(run: str) -> None:
    summary, raw = _summary(run), _raw(run)
    text = render.text(summary, top=5)
    assert _has_row(text, "events", summary.events)
    assert _has_row(text, "error records", raw.records)
    for status, count in raw.statuses.items():
        assert _has_row(text, status, count)
    for status_class, count in _classes(raw.statuses).items():
        assert _has_row(text, status_class, count)
    for counter in (raw.paths_4xx, raw.paths_5xx, raw.bots):
        for key, count in _top(counter, 5):
            assert _has_row(text, count, key)
    for level, count in raw.levels.items():
        assert _has_row(text, level, count)
    assert _has_row(text, "with a traceback", TRACEBACKS)
    assert "skipped" not in text
    assert "Top 5 4xx paths" in text


def test_top_limits_the_path_tables() -> None:
    text = render.text(_summary("default"), top=3)
    table = text.split("Top 3 4xx paths")[1].split("\n\n")[0]
    assert len(table.strip().splitlines()) == 1 + 1 + 3  # underline, header, three rows
    assert _has_row(text, 3, "/status/401")


def test_bot_errors_by_family_and_path() -> None:
    text = render.text(_summary("default"), top=20)
    for (family, path), count in _raw("default").bot_paths.items():
        assert _has_row(text, count, family, path)


def test_skipped_old_is_shown_when_set() -> None:
    summary = _feed(Summary(), "default", AccessParser())
    summary.skipped_old = 42
    assert _has_row(render.text(summary), "skipped (too old for intake)", 42)
    assert "skipped (too old for intake)" in render.html(summary)


def test_parse_errors_are_counted() -> None:
    """durations read with the default format: not one of its access lines parses."""
    summary = _feed(Summary(), "durations", AccessParser())
    lines = len(_lines("durations", "access.log"))
    assert summary.parse_errors == summary.lines == lines
    assert summary.statuses == {}
    assert _has_row(render.text(summary), "parse errors", lines)


def test_truncated_lines_are_counted() -> None:
    data = (LOGS / "default" / "access.log").read_bytes()
    summary = Summary()
    for event in access_events(io.BytesIO(data), AccessParser(max_line_bytes=200)):
        summary.observe(event)
    assert summary.truncated == sum(len(line) > 200 for line in data.split(b"\n")) > 0


def test_observe_returns_the_event_unchanged() -> None:
    event: Event = {"logger": {"name": "gunicorn.access"}, "http": {"status_code": 404}}
    assert Summary().observe(event) is event
    assert event == {"logger": {"name": "gunicorn.access"}, "http": {"status_code": 404}}


def test_control_characters_are_escaped_in_the_text() -> None:
    summary = Summary()
    summary.observe(_request(404, "/a\x1b[31mred", 0))
    assert "/a\\x1b[31mred" in render.text(summary)
    assert "\x1b" not in render.text(summary)


def test_an_empty_summary() -> None:
    summary = Summary()
    assert "(none)" in render.text(summary)
    page = render.html(summary)
    assert "<svg" not in page
    _check_page(page)


class Page(HTMLParser):
    """Checks that every start tag is closed, and records tags and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, attrs)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def _record(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += [(name, value or "") for name, value in attrs]


def _check_page(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    assert parser.tags["html"] == parser.tags["head"] == parser.tags["body"] == 1
    assert parser.tags["script"] == 0
    assert "<script" not in page.lower()
    for name, value in parser.attributes:
        assert name not in ("src", "href") or not re.match(r"\s*(https?:)?//", value), value
    return parser


@pytest.mark.parametrize("run", RUNS)
def test_html_is_one_well_formed_page_with_one_chart(run: str) -> None:
    summary, raw = _summary(run), _raw(run)
    parser = _check_page(render.html(summary, title="replay & more"))
    assert parser.tags["svg"] == 1
    assert parser.tags["rect"] == len(raw.buckets)
    text = "\n".join(parser.text)
    assert "replay & more" in text
    for path, _ in _top(raw.paths_4xx, 10):
        assert path in text
    for legend in ("2xx", "3xx", "4xx", "5xx", "time (UTC), 2026-11-25"):
        assert legend in text


def _request(status: int, path: str, at: int, *, bot: str | None = None) -> Event:
    http: Event = {"status_code": status, "url_details": {"path": path}}
    if bot is not None:
        http["useragent_details"] = {"browser": {"family": bot}, "device": {"category": "Bot"}}
    return {"logger": {"name": "gunicorn.access"}, "timestamp": at, "http": http}


def test_text_from_the_logs_is_escaped_in_html() -> None:
    summary = Summary()
    summary.observe(_request(404, "/<script>alert(1)</script>", 0, bot="<b>Evil</b>bot"))
    summary.observe(_request(500, '/"><img src=x onerror=alert(1)>', 0))
    page = render.html(summary, title="<i>title</i>")
    parser = _check_page(page)
    assert parser.tags["img"] == parser.tags["i"] == parser.tags["b"] == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Evil&lt;/b&gt;bot" in page
    assert "/<script>alert(1)</script>" in parser.text


def test_chart_has_one_rect_per_bucket_and_class() -> None:
    summary = Summary()
    start = 1795586610000  # a 30 s boundary
    for second, status in [(0, 200), (5, 200), (29, 404), (30, 500), (95, 301), (95, 200)]:
        summary.observe(_request(status, "/", start + second * 1000))
    assert summary.timeline == {
        (start, "2xx"): 2,
        (start, "4xx"): 1,
        (start + 30_000, "5xx"): 1,
        (start + 90_000, "2xx"): 1,
        (start + 90_000, "3xx"): 1,
    }
    page = render.html(summary)
    parser = _check_page(page)
    assert parser.tags["rect"] == 5
    rects = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', page)
    assert len(rects) == 5
    assert all(0 < float(x) < 960 and float(w) > 0 and float(h) > 0 for x, _, w, h in rects)
    assert len({x for x, _, _, _ in rects}) == 3  # three buckets, classes stacked
    assert "06:03:30" in "".join(parser.text)


CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium(tmp_path: Path, name: str, *args: str) -> bytes:
    """Run headless Chromium with a new empty profile; its stdout. A missing Chromium fails the
    test rather than skipping it: a skipped render would pass unseen."""
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    profile = tmp_path / f"profile-{name}"
    profile.mkdir()
    command = [*CHROMIUM, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout


class RenderedTables(HTMLParser):
    """The page as Chromium serialised it: the h1, each h2 with the rows (cell texts) of the
    table under it, and the chart's rects."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.h1 = ""
        self.tables: dict[str, list[tuple[str, ...]]] = {}
        self.rects = 0
        self._heading: str | None = None  # the h2 whose table comes next
        self._text: list[str] | None = None  # text of the open h1, h2, th or td
        self._row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "th", "td"):
            self._text = []
        elif tag == "tr":
            self._row = []
        elif tag == "rect":
            self.rects += 1

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "th", "td"):
            text, self._text = "".join(self._text or ()), None
            if tag == "h1":
                self.h1 = text
            elif tag == "h2":
                self._heading = text
                self.tables[text] = []
            else:
                self._row.append(text)
        elif tag == "tr" and self._heading is not None:
            self.tables[self._heading].append(tuple(self._row))


def _body(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[tuple[str, ...]]:
    assert rows and rows[0] == header, rows[:1]
    return rows[1:]


def _png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB rows of an 8-bit RGB, non-interlaced PNG (what Chromium's
    screenshots are), each row's filter undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) == (8, 2, 0), "expected 8-bit RGB, not interlaced"
    raw, stride, bpp = zlib.decompress(idat), width * 3, 3
    assert len(raw) == height * (stride + 1)
    rows, previous = [], bytes(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert kind == 0, f"filter type {kind}"
        previous = bytes(line)
        rows.append(previous)
    return width, height, rows


@pytest.mark.integration
def test_html_renders_headless(tmp_path: Path) -> None:
    """The page headless Chromium renders holds the Summary's numbers, and its screenshot
    shows a page with the chart's bars on it."""
    summary = _summary("default")
    page = tmp_path / "replay.html"
    page.write_text(render.html(summary), encoding="utf-8")

    dom = RenderedTables()
    dom.feed(_chromium(tmp_path, "dom", "--dump-dom", page.as_uri()).decode("utf-8"))
    dom.close()
    assert dom.h1 == "logpipe replay"
    assert list(dom.tables) == [
        "Overview",
        "Requests per 30 s by status class",
        "Status classes",
        "Status codes",
        "Top 10 4xx paths",
        "Top 10 5xx paths",
        "Bot errors (4xx/5xx, browser family *bot*) by bot",
        "Top 10 bot errors by bot and path",
        "Requests by bot kind",
        "Error log",
    ]
    assert dict(dom.tables["Overview"]) == {
        "events": str(summary.events),
        "access lines": str(summary.lines),
        "error records": str(summary.records),
        "parse errors": str(summary.parse_errors),
        "truncated": str(summary.truncated),
        "first event": "2026-11-25 06:03:40.000 UTC",
        "last event": "2026-11-25 06:03:40.099 UTC",
    }
    assert (summary.events, summary.lines, summary.records) == (135, 115, 20)
    assert dom.rects == len(summary.timeline) == 4  # one 30 s bucket, four classes stacked
    classes = _body(dom.tables["Status classes"], ("Class", "Requests"))
    assert {key: int(count) for key, count in classes} == summary.classes
    codes = _body(dom.tables["Status codes"], ("Status", "Requests"))
    assert {int(key): int(count) for key, count in codes} == summary.statuses
    for title, header, counter in [
        ("Top 10 4xx paths", ("Requests", "Path"), summary.paths_4xx),
        ("Top 10 5xx paths", ("Requests", "Path"), summary.paths_5xx),
        ("Bot errors (4xx/5xx, browser family *bot*) by bot", ("Errors", "Bot"), summary.bots),
    ]:
        rows = _body(dom.tables[title], header)
        assert [(key, int(count)) for count, key in rows] == _top(counter, 10), title
    pairs = _body(dom.tables["Top 10 bot errors by bot and path"], ("Errors", "Bot", "Path"))
    assert {(bot, path): int(count) for count, bot, path in pairs} == summary.bot_paths
    levels = dict(_body(dom.tables["Error log"], ("Level", "Records")))
    assert levels.pop("with a traceback") == str(summary.tracebacks) == str(TRACEBACKS)
    assert {level: int(count) for level, count in levels.items()} == summary.levels

    png = tmp_path / "replay.png"
    _chromium(tmp_path, "png", "--window-size=1100,900", f"--screenshot={png}", page.as_uri())
    width, height, rows = _png_rgb(png.read_bytes())
    assert (width, height) == (1100, 900)
    pixels = Counter(row[i : i + 3] for row in rows for i in range(0, len(row), 3))
    greys = Counter()
    for rgb, count in pixels.items():
        greys[sum(rgb) / 3] += count
    mean = sum(grey * count for grey, count in greys.items()) / greys.total()
    variance = sum((grey - mean) ** 2 * count for grey, count in greys.items()) / greys.total()
    assert variance > 200, f"a blank page? grey level mean {mean:.1f}, variance {variance:.1f}"
    for status_class in summary.classes:  # each class's bar segment and legend dot is drawn
        colour = bytes.fromhex(COLOURS[status_class][1:])
        assert pixels[colour] > 100, (status_class, pixels[colour])

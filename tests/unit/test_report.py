"""The replay summary over the real fixture logs: text tables and a self-contained HTML page.

The expected counts are read straight from the raw logs with regular expressions, never from
logpipe's events.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import Counter
from datetime import datetime
from functools import cache
from html.parser import HTMLParser
from typing import NamedTuple

import pytest

from logpipe import AccessParser, ErrorParser, Multiline
from logpipe.backfill import dashboard, render
from logpipe.backfill.routes import route
from logpipe.backfill.summary import BIN_MS as BUCKET_MS
from logpipe.backfill.summary import Summary, bucket_bounds, duration_bucket
from logpipe.backfill.views import About
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
            path = route(path) if path != "(none)" else path
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
    """A row of ``text`` holds ``cells`` in this order (other cells may come between)."""
    row = r"\s+(?:.*?\s+)?".join(re.escape(str(cell)) for cell in cells)
    return re.search(rf"^\s+{row}(?:\s.*)?$", text, re.MULTILINE) is not None


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
    period = "2026-11-25 06:03:40.000 UTC to 2026-11-25 06:03:40.099 UTC (0.099 s)"
    assert _has_row(text, "time range", period)


@pytest.mark.parametrize("run", RUNS)
def test_text_has_the_expected_rows(run: str) -> None:
    summary, raw = _summary(run), _raw(run)
    text = render.text(summary, top=5)
    requests = raw.statuses.total()
    assert _has_row(text, "events", summary.events)
    assert _has_row(text, "error records", raw.records)
    for status, count in raw.statuses.items():
        assert _has_row(text, status, count, f"{100 * count / requests:.1f} %")
    for status_class, count in _classes(raw.statuses).items():
        assert _has_row(text, status_class, count)
    for counter in (raw.paths_4xx, raw.paths_5xx, raw.bots):
        for key, count in _top(counter, 5):
            assert _has_row(text, count, f"{100 * count / counter.total():.1f} %", key)
    for level, count in raw.levels.items():
        assert _has_row(text, level, count)
    assert _has_row(text, "with a traceback", TRACEBACKS)
    assert "skipped" not in text
    assert "Top 5 4xx routes" in text
    assert "Parsing failed" not in text


def test_routes_collapse_ids() -> None:
    summary = _summary("default")
    assert summary.paths_4xx["/status/{id}"] == 14  # /status/401, /status/404...
    assert summary.paths_5xx == {"/crash": 6, "/status/{id}": 6}


def test_top_limits_the_route_tables() -> None:
    text = render.text(_summary("default"), top=3)
    table = text.split("Top 3 4xx routes")[1].split("\n\n")[0]
    assert len(table.strip().splitlines()) == 1 + 1 + 3  # underline, header, three rows
    assert _has_row(text, 14, "/status/{id}")


def test_bot_errors_by_family_and_route() -> None:
    text = render.text(_summary("default"), top=20)
    for (family, path), count in _raw("default").bot_paths.items():
        assert _has_row(text, count, family, path)


def test_exceptions_by_kind_with_an_example() -> None:
    summary = _summary("default")
    assert summary.exceptions == {
        "ValueError": 2,
        "KeyError": 2,
        "UnicodeDecodeError": 1,
        "app.PaymentDeclined": 1,
        "ZeroDivisionError": 1,
        "RuntimeError": 1,
    }
    assert (
        summary.exception_examples["app.PaymentDeclined"]
        == "card 4242 declined\nsecond line of message"
    )
    text = render.text(summary)
    assert _has_row(text, 2, "KeyError", "'missing'")
    assert "card 4242 declined\\nsecond line" in text  # a newline shown escaped


def test_the_header_says_what_was_replayed() -> None:
    summary = _feed(Summary(), "default", AccessParser())
    summary.accepted, summary.refused, summary.pending = 1234, 5, 0
    about = About(("a.log", "b.log.1.gz"), "web-1", "shop", "9.9.9", 1795586620000)
    text = render.text(summary, about)
    assert _has_row(text, "inputs", "2 files: a.log, b.log.1.gz")
    assert _has_row(text, "host", "web-1")
    assert _has_row(text, "service", "shop")
    assert _has_row(text, "delivery", "accepted 1,234 / refused 5 / pending 0")
    assert "generated" not in text  # the time it is printed
    assert _has_row(text, "logpipe", "9.9.9")
    page = dashboard.html(summary, about)
    assert '<dd data-key="delivery">accepted 1,234 / refused 5 / pending 0</dd>' in page
    assert '<dd data-key="generated">2026-11-25 06:03:40 UTC</dd>' in page


def test_skipped_old_is_shown_when_set() -> None:
    summary = _feed(Summary(), "default", AccessParser())
    summary.skipped_old = 42
    assert _has_row(render.text(summary), "skipped (too old for intake)", 42)
    assert "skipped (too old for intake)" in dashboard.html(summary)


def test_a_failed_parse_is_explained() -> None:
    """durations read with the default format: not one of its access lines parses."""
    summary = _feed(Summary(), "durations", AccessParser())
    lines = len(_lines("durations", "access.log"))
    assert summary.parse_errors == summary.lines == lines
    assert summary.statuses == {}
    assert summary.parse_reasons == {"access line: 5 more fields after the format's end": lines}
    text = render.text(summary)
    assert _has_row(text, "parse errors", lines)
    assert "Parsing failed" in text and "logpipe detect FILE" in text and "--access-format" in text
    assert _has_row(text, lines, "100.0 %", "access line: 5 more fields after the format's end")
    assert "No 4xx responses." not in text  # empty tables are left out: the explanation says why
    page = dashboard.html(summary)
    assert 'data-section="parsing-failed"' in page and "<code>logpipe detect FILE</code>" in page
    assert 'data-section="top-4xx"' not in page
    assert page.index('data-section="parse-errors"') < page.index('class="kpis"')  # reasons first
    named = render.text(summary, About(inputs=("web/access.log",)))
    assert "Run `logpipe detect web/access.log` to see" in named


def test_empty_tables_say_why() -> None:
    text = render.text(_summary("default"))
    assert "No durations: the access format has no %(D)s" in text
    assert "Parsing failed" not in text


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
    assert "No requests." in render.text(summary)
    page = dashboard.html(summary)
    assert "<svg" not in page
    _check_page(page)


def _request(
    status: int, path: str, at: int, *, bot: str | None = None, duration: int | None = None
) -> Event:
    http: Event = {"status_code": status, "url_details": {"path": path}}
    if bot is not None:
        http["useragent_details"] = {"browser": {"family": bot}, "device": {"category": "Bot"}}
    event: Event = {"logger": {"name": "gunicorn.access"}, "timestamp": at, "http": http}
    if duration is not None:
        event["duration"] = duration
    return event


def test_parts_merge_to_the_whole() -> None:
    """A summary of all events equals the merge of summaries of its parts, sent between
    processes (pickled) as replay's workers do."""
    events = [
        _request(
            200 + (i % 4) * 100 + i % 7,
            f"/orders/{i}",
            1795586620000 + i * 7_919,
            duration=i * 1_000_003,
        )
        for i in range(2_000)
    ]
    whole = Summary()
    for event in events:
        whole.observe(event)
    merged = Summary()
    for part in range(0, 2_000, 300):
        piece = Summary()
        for event in events[part : part + 300]:
            piece.observe(event)
        merged.merge(pickle.loads(pickle.dumps(piece)))
    assert vars(merged).keys() == vars(whole).keys()
    for name, value in vars(whole).items():
        assert getattr(merged, name) == value, name
    assert render.text(merged) == render.text(whole)


def test_durations_are_counted_in_log_buckets() -> None:
    for micros in [0, 1, 3, 4, 7, 8, 15, 16, 1000, 1023, 1024, 123_456_789]:
        low, high = bucket_bounds(duration_bucket(micros * 1000))
        assert low <= micros < high, micros
        assert high - low <= max(1, low // 4)  # four buckets per doubling


def test_latency_percentiles() -> None:
    summary = Summary()
    for i in range(1, 1001):  # 1 ms to 1,000 ms, evenly
        summary.observe(_request(200, "/", 1795586620000, duration=i * 1_000_000))
    text = render.text(summary)
    for name, expected in [("p50", 500), ("p90", 900), ("p99", 990)]:
        shown = re.search(rf"^\s+{name}\s+([\d,.]+) (ms|s)$", text, re.MULTILINE)
        assert shown is not None, name
        value = float(shown[1].replace(",", "")) * (1000 if shown[2] == "s" else 1)
        assert abs(value - expected) <= expected * 0.1, (name, value)


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
def test_html_is_one_well_formed_page(run: str) -> None:
    summary, raw = _summary(run), _raw(run)
    page = dashboard.html(summary, title="replay & more")
    parser = _check_page(page)
    charts = dict(parser.attributes).get("data-chart")
    assert charts is not None
    names = [value for name, value in parser.attributes if name == "data-chart"]
    assert names[:3] == ["request-rate", "rate-4xx", "rate-5xx"]
    assert ("latency" in names) == (run != "default")  # durations and headers log %(D)s
    total = raw.statuses.total()
    assert f'data-step-ms="60000" data-bins="1" data-total="{total}"' in page
    text = "\n".join(parser.text)
    assert "replay & more" in text
    for path, _ in _top(raw.paths_4xx, 10):
        assert path in text
    for legend in ("2xx", "3xx", "4xx", "5xx"):
        assert legend in text


def test_text_from_the_logs_is_escaped_in_html() -> None:
    summary = Summary()
    summary.observe(_request(404, "/<script>alert(1)</script>", 0, bot="<b>Evil</b>bot"))
    summary.observe(_request(500, '/"><img src=x onerror=alert(1)>', 0))
    page = dashboard.html(summary, title="<i>title</i>")
    parser = _check_page(page)
    assert parser.tags["img"] == parser.tags["i"] == parser.tags["b"] == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Evil&lt;/b&gt;bot" in page
    assert "/<script>alert(1)</script>" in parser.text


def test_a_week_is_binned_by_the_hour_and_stays_small() -> None:
    """A week of requests, one a minute: 168 hourly bars, not 20,160 rects; the page small."""
    summary = Summary()
    start = 1795564800000  # a midnight
    for minute in range(7 * 24 * 60):
        summary.observe(
            _request(200 if minute % 10 else 503, f"/o/{minute}", start + minute * 60_000)
        )
    page = dashboard.html(summary)
    _check_page(page)
    assert (
        'data-chart="request-rate" data-step-ms="3600000" data-bins="168" data-total="10080"'
        in page
    )
    assert page.count("<rect") == 168  # one tooltip column per bin; bars are one path per class
    assert len(page.encode()) < 150_000
    assert summary.paths_5xx == {"/o/{id}": 1008}


def test_bins_follow_the_span() -> None:
    from logpipe.backfill.bins import step_for

    minute, hour = 60_000, 3_600_000
    assert step_for(0, 10 * minute) == minute
    assert step_for(0, 8 * hour) == 5 * minute  # not 480 bins of one minute
    assert step_for(0, 3 * 24 * hour) == 15 * minute
    assert step_for(0, 7 * 24 * hour) == hour
    assert step_for(0, 90 * 24 * hour) == 12 * hour


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_terminal_gets_rich_tables_with_the_same_cells() -> None:
    summary = _feed(Summary(), "default", AccessParser())
    summary.observe(_request(404, "/[bold]x[/bold]/\x1b[31m", 1795586620000))
    terminal, plain = Terminal(), io.StringIO()
    render.show(summary, terminal, top=20)
    render.show(summary, plain, top=20)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())  # colours and bold left out
    assert plain.getvalue() == render.text(summary, top=20) + "\n"
    assert "─" in shown and "─" not in plain.getvalue()
    for line in plain.getvalue().splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 1 and len(line) < 60:  # a row rich does not fold on 80 columns
            assert re.search(r"\s+".join(map(re.escape, cells)), shown), line
    assert "/[bold]x[/bold]/\\x1b[31m" in shown  # log text is never markup, nor a control code

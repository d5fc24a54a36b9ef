"""The replay report in a real browser: real replays (three days of generated logs, and the
bundled real gunicorn logs) write the report, headless Chromium renders it, and the page it
shows holds every section with the very numbers the terminal summary printed; its screenshot
is a drawn page, not a blank one.

A missing Chromium fails these tests rather than skipping them: a skipped render would pass
unseen (.ci/run installs Debian's chromium).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from logpipe.backfill.render import MAX_CELL, TITLE, printable
from logpipe.backfill.svg import COLOURS
from tests.support.report_pages import (
    WINDOW,
    dump_dom,
    fixture_logs,
    generated_logs,
    png_rgb,
    replay_report,
    screenshot,
)

pytestmark = pytest.mark.integration
DAYS, LINES, RECORDS = 3, 60_000, 3_000
SECTIONS = [
    "overview",
    "status-classes",
    "status-codes",
    "top-4xx",
    "top-5xx",
    "latency",
    "bot-errors",
    "bot-routes",
    "bot-kinds",
    "exceptions",
    "levels",
]
CHARTS = ["request-rate", "rate-4xx", "rate-5xx", "latency", "levels"]
MIN_VARIANCE = 150  # grey-level variance of a page with charts and tables; a blank one has ~0


class RenderedPage(HTMLParser):
    """The page as Chromium serialised it: the header's values (``data-key``), each section's
    title and table rows (``data-section``), the key figures (``data-kpi``) and the charts'
    attributes (``data-chart``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.header: dict[str, str] = {}
        self.titles: dict[str, str] = {}
        self.tables: dict[str, list[tuple[str, ...]]] = {}
        self.kpis: dict[str, str] = {}
        self.charts: dict[str, dict[str, str]] = {}
        self.empty: dict[str, str] = {}  # what an empty section says instead of a table
        self._section: str | None = None
        self._depth = 0  # open elements inside the current section
        self._text: list[str] | None = None
        self._target: tuple[str, str] | None = None  # what the open text belongs to
        self._row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name: value or "" for name, value in attrs}
        if self._section is not None and tag not in ("br", "meta", "link"):
            self._depth += 1
        if "data-section" in named and tag == "section":
            self._section, self._depth = named["data-section"], 1
            self.tables[self._section] = []
        if "data-chart" in named:
            self.charts[named["data-chart"]] = named
        if "data-key" in named:
            self._open(("header", named["data-key"]))
        elif "data-kpi" in named:
            self._target = ("kpi", named["data-kpi"])
        elif tag == "span" and named.get("class") == "value" and self._target:
            self._open(self._target)
        elif tag == "h2" and self._section is not None:
            self._open(("title", self._section))
        elif tag == "p" and self._section is not None:
            self._open(("empty", self._section))
        elif tag in ("td", "th"):
            self._open(("cell", ""))
        elif tag == "tr":
            self._row = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._text is not None and tag in ("dd", "span", "h2", "p", "td", "th"):
            text, (kind, key) = "".join(self._text), self._close()
            if kind == "header":
                self.header[key] = text
            elif kind == "kpi":
                self.kpis[key] = text
                self._target = None
            elif kind == "title":
                self.titles[key] = text
            elif kind == "empty":
                self.empty[key] = text
            else:
                self._row.append(text)
        elif tag == "tr" and self._section is not None:
            self.tables[self._section].append(tuple(self._row))
        if self._section is not None:
            self._depth -= 1
            if self._depth == 0:
                self._section = None

    def _open(self, target: tuple[str, str]) -> None:
        self._text, self._target = [], target

    def _close(self) -> tuple[str, str]:
        target = self._target
        assert target is not None
        self._text = None
        return target


def text_blocks(summary: str) -> dict[str, list[str]]:
    """The terminal summary's blocks by title: each one's rows (underlines left out)."""
    blocks: dict[str, list[str]] = {}
    body = summary[summary.index(TITLE) :]
    for block in body.strip("\n").split("\n\n"):
        title, *rows = block.split("\n")
        blocks[title] = [row for row in rows if not re.fullmatch(r"-+", row)]
    return blocks


def as_text(cells: tuple[str, ...]) -> str:
    """A page's table row as the terminal prints it, whitespace folded."""
    shown = []
    for cell in cells:
        cell = printable(cell)
        shown.append(cell if len(cell) <= MAX_CELL else cell[: MAX_CELL - 1] + "…")
    return " ".join(" ".join(shown).split())


def folded(row: str) -> str:
    return " ".join(row.split())


def render(options: list[str], tmp_path: Path) -> tuple[str, RenderedPage, Path]:
    """Replay, then Chromium's view of the report: (terminal summary, page, report file)."""
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    report = tmp_path / "report.html"
    summary = replay_report(options, report, tmp_path)
    page = RenderedPage()
    page.feed(dump_dom(report, tmp_path))
    page.close()
    return summary, page, report


def check_page_matches_summary(summary: str, page: RenderedPage) -> None:
    """Every table of the page holds the rows the terminal printed under the same title, and
    the header the same values."""
    blocks = text_blocks(summary)
    header = dict(re.split(r"\s{2,}", row.strip(), maxsplit=1) for row in blocks[TITLE])
    assert {key: folded(value) for key, value in header.items()} == {
        key: folded(as_text((value,))) for key, value in page.header.items() if key != "generated"
    }
    assert page.header["generated"].endswith(" UTC")
    for section, rows in page.tables.items():
        title = page.titles[section]
        if not rows:  # an empty section: the same reason in both
            assert [folded(row) for row in blocks[title]] == [page.empty[section]], section
            continue
        assert [as_text(row) for row in rows] == [folded(row) for row in blocks[title]], title


def counted(summary: str, label: str) -> int:
    match = re.search(rf"^  {re.escape(label)}\s+([\d,]+)", summary, re.MULTILINE)
    assert match, label
    return int(match[1].replace(",", ""))


def check_screenshot(report: Path, tmp_path: Path, classes: list[str]) -> None:
    """The screenshot is a drawn page: grey levels vary, and each status class's colour shows."""
    width, height, rows = png_rgb(screenshot(report, tmp_path / "report.png", tmp_path))
    assert (width, height) == WINDOW
    pixels: Counter[bytes] = Counter()
    for row in rows[::2]:  # every other row: enough to see, half the time
        pixels.update(row[i : i + 3] for i in range(0, len(row), 6))
    total = pixels.total()
    mean = sum(sum(rgb) / 3 * count for rgb, count in pixels.items()) / total
    variance = sum((sum(rgb) / 3 - mean) ** 2 * count for rgb, count in pixels.items()) / total
    assert variance > MIN_VARIANCE, f"a blank page? grey mean {mean:.1f}, variance {variance:.1f}"
    for status_class in classes:
        assert pixels[bytes.fromhex(COLOURS[status_class][1:])] > 50, status_class


def test_days_of_generated_logs(tmp_path: Path) -> None:
    options = generated_logs(tmp_path / "logs", DAYS, LINES, RECORDS)
    summary, page, report = render(options, tmp_path)
    assert [section for section in SECTIONS if section in page.tables] == SECTIONS
    assert list(page.charts) == CHARTS
    check_page_matches_summary(summary, page)
    assert counted(summary, "requests") == LINES
    assert counted(summary, "error records") == RECORDS
    assert page.kpis["requests"] == f"{LINES:,}"
    chart = page.charts["request-rate"]
    assert int(chart["data-total"]) == LINES
    assert chart["data-step-ms"] == str(15 * 60_000)  # 3 days: 288 bins of 15 min
    assert int(chart["data-bins"]) <= 300
    assert dict(page.tables["latency"])["requests timed"] == f"{LINES:,}"
    assert re.fullmatch(r"[\d.,]+ (ms|s)", page.kpis["p99"])
    assert report.stat().st_size < 200_000  # 288 bins a chart; a week (168) is ~110 KB
    check_screenshot(report, tmp_path, ["2xx", "3xx", "4xx", "5xx"])


def test_the_bundled_real_logs(tmp_path: Path) -> None:
    summary, page, report = render(fixture_logs(), tmp_path)
    assert [section for section in SECTIONS if section in page.tables] == SECTIONS
    assert "parse-errors" in page.tables  # a few lines of the real logs do not parse
    check_page_matches_summary(summary, page)
    requests = counted(summary, "requests")
    assert requests > 1000
    assert int(page.charts["request-rate"]["data-total"]) == requests
    header, *rows = page.tables["exceptions"]
    assert header == ("Records", "Kind", "Example message")
    exceptions = {kind: int(count.replace(",", "")) for count, kind, _ in rows}
    assert sum(exceptions.values()) == counted(summary, "with a traceback")
    assert exceptions["KeyError"] > 0 and exceptions["app.PaymentDeclined"] > 0
    check_screenshot(report, tmp_path, ["2xx", "4xx", "5xx"])

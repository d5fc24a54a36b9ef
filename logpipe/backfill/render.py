"""A replay's ``Summary`` shown: aligned text tables for the terminal, or one self-contained
HTML page (inline CSS and SVG, no JavaScript) with the same tables and a chart of requests per
30 s stacked by status class, as in Datadog's status-code overview::

    print(render.text(summary), file=sys.stderr)
    Path("replay.html").write_text(render.html(summary), encoding="utf-8")

Text taken from the logs (paths, bot families, levels) is escaped: control characters in the
terminal table, everything with ``html.escape`` in the page.
"""

from __future__ import annotations

import html as html_text
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from logpipe.backfill.summary import BUCKET_MS, Summary

CLASSES = ("2xx", "3xx", "4xx", "5xx")
COLOURS = {"1xx": "#8c8c8c", "2xx": "#2e9e5b", "3xx": "#3d7fd9", "4xx": "#f0a020", "5xx": "#d9363e"}
OTHER_COLOUR = "#5c5c5c"
Row = tuple[str, ...]  # one table row: its cells

# Chart geometry (SVG user units).
WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 40, 56
MAX_X_TICKS = 8
MAX_BAR = 40.0  # widest bar, centred in its 30 s slot
TICK_STEPS_MS = [s * 1000 for s in (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)] + [
    h * 3_600_000 for h in (6, 12, 24, 48, 168)
]

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; color: #222; margin: 24px; max-width: 1000px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 12px 3px 0; text-align: left; border-bottom: 1px solid #e4e4e4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { font-family: ui-monospace, monospace; word-break: break-all; }
p.none { color: #777; }
svg { display: block; margin: 8px 0; font: 11px system-ui, sans-serif; }
"""


@dataclass(frozen=True)
class Section:
    """One table: a title, column headers (may be empty), rows, and each column's alignment."""

    title: str
    header: Row
    rows: list[Row]
    align: str  # one letter per column: "l" left, "r" right


def sections(summary: Summary, *, top: int = 10) -> list[Section]:
    """The tables of ``text`` and ``html``, in order."""
    return [
        Section("Overview", (), _overview(summary), "lr"),
        Section("Status classes", ("Class", "Requests"), _keyed(summary.classes), "lr"),
        Section("Status codes", ("Status", "Requests"), _keyed(summary.statuses), "lr"),
        Section(f"Top {top} 4xx paths", ("Requests", "Path"), _top(summary.paths_4xx, top), "rl"),
        Section(f"Top {top} 5xx paths", ("Requests", "Path"), _top(summary.paths_5xx, top), "rl"),
        Section(
            "Bot errors (4xx/5xx, browser family *bot*) by bot",
            ("Errors", "Bot"),
            _top(summary.bots, top),
            "rl",
        ),
        Section(
            f"Top {top} bot errors by bot and path",
            ("Errors", "Bot", "Path"),
            _top(summary.bot_paths, top),
            "rll",
        ),
        Section(
            "Requests by bot kind",
            ("Kind", "Requests", "4xx", "5xx"),
            _bot_kinds(summary),
            "lrrr",
        ),
        Section("Error log", ("Level", "Records"), _levels(summary), "lr"),
    ]


def _overview(summary: Summary) -> list[Row]:
    rows: list[Row] = [
        ("events", str(summary.events)),
        ("access lines", str(summary.lines)),
        ("error records", str(summary.records)),
        ("parse errors", str(summary.parse_errors)),
        ("truncated", str(summary.truncated)),
    ]
    if summary.skipped_old:
        rows.append(("skipped (too old for intake)", str(summary.skipped_old)))
    if summary.first is not None and summary.last is not None:
        rows += [("first event", utc(summary.first)), ("last event", utc(summary.last))]
    return rows


def _bot_kinds(summary: Summary) -> list[Row]:
    """Per bot kind, most requests first: requests, then its 4xx and 5xx."""
    totals: Counter[str] = Counter()
    for (kind, _), count in summary.bot_kinds.items():
        totals[kind] += count
    return [
        (kind, str(count), str(summary.bot_kinds[kind, "4xx"]), str(summary.bot_kinds[kind, "5xx"]))
        for kind, count in _by_count(totals)
    ]


def _levels(summary: Summary) -> list[Row]:
    rows: list[Row] = [(level, str(count)) for level, count in _by_count(summary.levels)]
    return [*rows, ("with a traceback", str(summary.tracebacks))]


def text(summary: Summary, *, top: int = 10) -> str:
    """Aligned plain-text tables (the summary printed at the end of a replay)."""
    overview, *rest = sections(summary, top=top)
    blocks = [f"logpipe replay summary\n{_text_rows(overview)}"]
    return "\n\n".join(blocks + [_text_section(section) for section in rest])


def html(summary: Summary, *, title: str = "logpipe replay", top: int = 10) -> str:
    """One self-contained HTML page: the tables and an SVG chart of requests per 30 s."""
    overview, *rest = sections(summary, top=top)
    body = [
        f"<h1>{html_text.escape(title)}</h1>",
        _html_section(overview),
        "<h2>Requests per 30 s by status class</h2>",
        chart(summary.timeline),
        *(_html_section(section) for section in rest),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html_text.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def utc(ms: int) -> str:
    """``2026-11-25 06:03:40.099 UTC`` for epoch milliseconds."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d} UTC"


def _by_count(counter: Counter[Any]) -> list[tuple[Any, int]]:
    """Most frequent first; ties by key, so the order does not depend on arrival."""
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))


def _keyed(counter: Counter[Any]) -> list[Row]:
    return [(str(key), str(count)) for key, count in sorted(counter.items())]


def _top(counter: Counter[Any], top: int) -> list[Row]:
    rows = []
    for key, count in _by_count(counter)[:top]:
        keys = key if isinstance(key, tuple) else (key,)
        rows.append((str(count), *keys))
    return rows


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), safe to print on a terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _text_section(section: Section) -> str:
    underline = "-" * len(section.title)
    return f"{section.title}\n{underline}\n{_text_rows(section)}"


def _text_rows(section: Section) -> str:
    if not section.rows:
        return "  (none)"
    rows = [section.header, *section.rows] if section.header else section.rows
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(section.align))]
    return "\n".join(_text_row(row, widths, section.align) for row in cells)


def _text_row(cells: list[str], widths: list[int], align: str) -> str:
    padded = [
        cell.rjust(width) if side == "r" else cell.ljust(width)
        for cell, width, side in zip(cells, widths, align, strict=True)
    ]
    return ("  " + "  ".join(padded)).rstrip()


def _html_section(section: Section) -> str:
    heading = f"<h2>{html_text.escape(section.title)}</h2>"
    if not section.rows:
        return f'{heading}\n<p class="none">None.</p>'
    head = ""
    if section.header:
        head = "<thead>" + _html_row(section.header, section.align, "th") + "</thead>"
    body = "\n".join(_html_row(row, section.align, "td") for row in section.rows)
    return f"{heading}\n<table>{head}<tbody>\n{body}\n</tbody></table>"


def _html_row(cells: Iterable[str], align: str, tag: str) -> str:
    parts = [
        f'<{tag} class="{"num" if side == "r" else "key"}">{html_text.escape(cell)}</{tag}>'
        for cell, side in zip(cells, align, strict=True)
    ]
    return "<tr>" + "".join(parts) + "</tr>"


@dataclass(frozen=True)
class _Frame:
    """Maps bucket times and request counts to chart coordinates."""

    start: int  # epoch ms at the left edge
    end: int  # epoch ms at the right edge
    y_max: int

    def x(self, ms: int) -> float:
        return LEFT + (ms - self.start) * (WIDTH - LEFT - RIGHT) / (self.end - self.start)

    def y(self, count: float) -> float:
        return HEIGHT - BOTTOM - count * (HEIGHT - TOP - BOTTOM) / self.y_max


def chart(timeline: Counter[tuple[int, str]]) -> str:
    """An SVG of requests per 30 s bucket, stacked by status class, with axes and a legend."""
    if not timeline:
        return '<p class="none">No requests with a timestamp.</p>'
    totals: Counter[int] = Counter()
    for (bucket, _), count in timeline.items():
        totals[bucket] += count
    y_step = _nice_step(max(totals.values()), 5)
    y_max = -(-max(totals.values()) // y_step) * y_step
    frame = _Frame(min(totals), max(totals) + BUCKET_MS, y_max)
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Requests per 30 s">',
        *_y_axis(frame, y_step),
        *_x_axis(frame),
        *_bars(frame, timeline),
        *_legend(sorted({group for _, group in timeline} | set(CLASSES))),
        "</svg>",
    ]
    return "\n".join(parts)


def _nice_step(top: int, ticks: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... giving at most ``ticks`` steps up to ``top``."""
    scale = 1
    while True:
        for step in (scale, 2 * scale, 5 * scale):
            if top <= step * ticks:
                return step
        scale *= 10


def _y_axis(frame: _Frame, step: int) -> list[str]:
    parts = []
    for value in range(0, frame.y_max + 1, step):
        y = frame.y(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e4e4e4"/>'
        )
        parts.append(_label(LEFT - 6, y + 4, str(value), "end"))
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">requests / 30 s</text>'
    )
    return parts


def _x_axis(frame: _Frame) -> list[str]:
    span = frame.end - frame.start
    step = next((s for s in TICK_STEPS_MS if span / s <= MAX_X_TICKS), TICK_STEPS_MS[-1])
    first_day, last_day = utc(frame.start)[:10], utc(frame.end - 1)[:10]
    same_day = first_day == last_day
    base = HEIGHT - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#888"/>']
    for tick in range(-(-frame.start // step) * step, frame.end + 1, step):
        x = frame.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 5}" stroke="#888"/>')
        text = utc(tick)[11:19] if same_day else utc(tick)[5:16]
        parts.append(_label(x, base + 18, text, "middle"))
    day = first_day if same_day else f"{first_day} to {last_day}"
    parts.append(_label((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 12, f"time (UTC), {day}", "middle"))
    return parts


def _bars(frame: _Frame, timeline: Counter[tuple[int, str]]) -> list[str]:
    """One rect per non-empty (bucket, class), classes stacked 2xx at the bottom."""
    slot = frame.x(frame.start + BUCKET_MS) - LEFT
    width = min(slot * 0.8, MAX_BAR)
    gap = (slot - width) / 2
    stacked: Counter[int] = Counter()
    parts = []
    for (bucket, group), count in sorted(timeline.items()):
        below = stacked[bucket]
        stacked[bucket] += count
        top, bottom = frame.y(below + count), frame.y(below)
        tip = f"{utc(bucket)[:19]} UTC, {group}: {count}"
        parts.append(
            f'<rect x="{frame.x(bucket) + gap:.2f}" y="{top:.2f}" width="{width:.2f}" '
            f'height="{bottom - top:.2f}" fill="{_colour(group)}">'
            f"<title>{html_text.escape(tip)}</title></rect>"
        )
    return parts


def _legend(classes: list[str]) -> list[str]:
    parts = []
    for index, group in enumerate(classes):
        x = LEFT + index * 64
        parts.append(f'<circle cx="{x + 5}" cy="16" r="5" fill="{_colour(group)}"/>')
        parts.append(_label(x + 14, 20, group, "start"))
    return parts


def _colour(group: str) -> str:
    return COLOURS.get(group, OTHER_COLOUR)


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{html_text.escape(text)}</text>'

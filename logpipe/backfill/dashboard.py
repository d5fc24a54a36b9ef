"""The replay report as one self-contained HTML page, laid out like Datadog's Gunicorn
dashboard: a header (what was replayed), key figures, charts over time (``svg``), and the
tables of ``views`` in a responsive grid. Inline CSS and SVG, no JavaScript, nothing fetched;
print CSS puts it on paper. Elements carry ``data-*`` attributes naming what they hold
(``data-section``, ``data-kpi``, ``data-chart``), for tests and scripts::

    Path("replay.html").write_text(dashboard.html(summary, about), encoding="utf-8")

Text taken from the logs is escaped with ``html.escape``.
"""

from __future__ import annotations

import html as html_text

from logpipe.backfill import svg
from logpipe.backfill.bins import percentile
from logpipe.backfill.summary import Summary
from logpipe.backfill.views import (
    QUANTILES,
    About,
    Section,
    Series,
    all_durations,
    explanation,
    header,
    milliseconds,
    number,
    parsing_failed,
    percent,
    sections,
    series,
)

WIDE = ("request-rate", "latency", "levels")  # charts across the whole grid
UNIT_NOTES = {"%": ", % of requests", "ms": ", log scale"}
CODE_COLUMNS = {"Route", "Example message", "Reason", "Example"}  # text from the logs: monospace
CSS = """
:root { --ink: #1f2430; --muted: #6b7280; --line: #e5e7eb; --card: #fff; --page: #f3f4f6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header.top { background: #1f2430; color: #fff; padding: 18px 28px 16px; }
header.top h1 { margin: 0 0 8px; font-size: 20px; font-weight: 600; }
header.top dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0;
  font-size: 13px; }
header.top dt { color: #aab1bf; } header.top dd { margin: 0; word-break: break-all; }
main { padding: 18px 28px 28px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; }
.kpi .value { display: block; font-size: 24px; font-weight: 600;
  font-variant-numeric: tabular-nums; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.kpi.bad .value { color: #d6363f; } .kpi.warn .value { color: #b7770f; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px;
  align-items: start; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px 14px; min-width: 0; break-inside: avoid; }
.card.wide { grid-column: 1 / -1; }
.grid { margin-bottom: 16px; }
.tables { columns: 2 440px; column-gap: 16px; }
.tables .card, main > .card { margin-bottom: 16px; }
.tables .card { display: inline-block; width: 100%; }
.card h2 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
.card h2 small { color: var(--muted); font-weight: 400; }
svg { display: block; width: 100%; height: auto; font: 11px system-ui, sans-serif;
  fill: #4b5563; }
svg .grid { stroke: #eef0f3; } svg .axis { stroke: #9ca3af; }
svg .line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
svg .hit { fill: transparent; } svg .hit:hover { fill: rgba(0,0,0,.06); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted);
  margin-top: 4px; }
.legend .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 4px 8px 4px 0; text-align: left; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap;
  width: 1%; padding-left: 14px; }
td.code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px;
  word-break: break-all; white-space: pre-wrap; }
tr:last-child td { border-bottom: 0; }
p.none { color: var(--muted); margin: 4px 0; }
.failed { background: #fff4f4; border: 1px solid #f3c2c5; border-radius: 8px;
  padding: 12px 16px; margin-bottom: 16px; }
.failed h2 { color: #b4232c; font-size: 16px; margin: 0 0 6px; }
.failed code { background: #fde8e9; padding: 0 3px; border-radius: 3px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 20px; }
@media (max-width: 700px) { .grid { grid-template-columns: 1fr; } main { padding: 12px; } }
@media print {
  body { background: #fff; font-size: 11px; }
  header.top { background: #fff; color: #000; border-bottom: 2px solid #000; padding: 0 0 8px; }
  header.top dt { color: #555; }
  main { padding: 8px 0; }
  .grid { grid-template-columns: 1fr 1fr; gap: 10px; }
  .tables { columns: 2; }
  .card, .kpi { border-color: #bbb; }
  svg .hit { display: none; }
}
"""


def html(
    summary: Summary, about: About | None = None, *, title: str = "logpipe replay", top: int = 10
) -> str:
    """One self-contained HTML page: header, key figures, charts, tables."""
    about = about or About()
    failed = parsing_failed(summary)
    shown = [section for section in sections(summary, top=top) if section.rows or not failed]
    reasons = [section for section in shown if failed and section.id == "parse-errors"]
    shown = [section for section in shown if section not in reasons]  # shown first instead
    narrow = [section for section in shown if not _wide(section)]
    wide = [section for section in shown if _wide(section)]
    body = [
        '<header class="top" data-section="header">',
        f"<h1>{html_text.escape(title)}</h1>",
        "<dl>",
        *(
            f'<dt>{html_text.escape(key)}</dt><dd data-key="{html_text.escape(key)}">'
            f"{html_text.escape(value)}</dd>"
            for key, value in header(summary, about)
        ),
        "</dl>",
        "</header>",
        "<main>",
        _failure(summary, about) if failed else "",
        *(_table(section) for section in reasons),
        _kpis(summary),
        '<div class="grid">',
        *(_chart(chart) for chart in series(summary)),
        "</div>",
        '<div class="tables">',
        *(_table(section) for section in narrow),
        "</div>",
        *(_table(section) for section in wide),
        "</main>",
        "<footer>Times are UTC. Routes are request paths with ids collapsed "
        "(<code>{id}</code>, <code>{uuid}</code>, <code>{hex}</code>, <code>{token}</code>). "
        "Bot errors are what Datadog's saved view selects: 4xx/5xx with a browser family "
        "containing <code>bot</code>.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html_text.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )


def _kpis(summary: Summary) -> str:
    requests = sum(summary.requests.values())
    classes = summary.classes
    read = summary.lines + summary.records
    bots = sum(summary.bots.values())
    figures = [
        ("requests", number(requests), "requests", ""),
        ("4xx", percent(classes["4xx"], requests), f"4xx · {number(classes['4xx'])}", "warn"),
        ("5xx", percent(classes["5xx"], requests), f"5xx · {number(classes['5xx'])}", "bad"),
    ]
    if summary.durations:
        merged = all_durations(summary)
        for name, fraction in QUANTILES[::2]:  # p50 and p99
            figures.append(
                (name, milliseconds(percentile(merged, fraction)), f"latency {name}", "")
            )
    figures += [
        ("bot-errors", number(bots), "bot errors", "warn" if bots else ""),
        (
            "exceptions",
            number(summary.tracebacks),
            "exceptions",
            "bad" if summary.tracebacks else "",
        ),
        (
            "parse-errors",
            percent(summary.parse_errors, read),
            f"parse errors · {number(summary.parse_errors)}",
            "bad" if summary.parse_errors else "",
        ),
    ]
    tiles = [
        f'<div class="kpi {tone if value not in ("0", "0.0 %", "-") else ""}" data-kpi="{key}">'
        f'<span class="value">{html_text.escape(value)}</span>'
        f'<span class="label">{html_text.escape(label)}</span></div>'
        for key, value, label, tone in figures
    ]
    return f'<div class="kpis">{"".join(tiles)}</div>'


def _failure(summary: Summary, about: About) -> str:
    paragraphs = "".join(f"<p>{_code(line)}</p>" for line in explanation(summary, about))
    heading = "<h2>Parsing failed</h2>"
    return f'<div class="failed" data-section="parsing-failed">{heading}{paragraphs}</div>'


def _code(line: str) -> str:
    """``line`` escaped, with its backquoted parts as ``<code>``."""
    pieces = html_text.escape(line).split("`")
    return "".join(
        f"<code>{piece}</code>" if index % 2 else piece for index, piece in enumerate(pieces)
    )


def _chart(chart: Series) -> str:
    wide = chart.id in WIDE
    total = (
        sum(value or 0.0 for values in chart.layers.values() for value in values)
        if chart.stacked
        else None
    )
    total_attribute = f' data-total="{int(total)}"' if total is not None else ""
    return (
        f'<section class="card{" wide" if wide else ""}" data-chart="{chart.id}" '
        f'data-step-ms="{chart.step}" data-bins="{len(chart.starts)}"{total_attribute}>'
        f"<h2>{html_text.escape(chart.title)} <small>per {svg.step_name(chart.step)}"
        f"{UNIT_NOTES.get(chart.unit, '')}</small></h2>"
        f"{svg.chart(chart, 1200 if wide else 600)}{svg.legend(chart)}</section>"
    )


def _table(section: Section) -> str:
    head = f'<section class="card" data-section="{section.id}">'
    heading = f"<h2>{html_text.escape(section.title)}</h2>"
    code = tuple(name in CODE_COLUMNS for name in section.header)
    if not section.rows:
        return f'{head}{heading}<p class="none">{html_text.escape(section.empty)}</p></section>'
    rows = []
    if any(section.header):
        rows.append("<thead>" + _row(section.header, section.align, "th", code) + "</thead>")
    rows += ["<tbody>", *(_row(row, section.align, "td", code) for row in section.rows), "</tbody>"]
    return f"{head}{heading}<table>{''.join(rows)}</table></section>"


def _wide(section: Section) -> bool:
    """A table with four columns or more, or long messages: across the page."""
    return len(section.align) >= 4 or section.id == "exceptions"


def _row(cells: tuple[str, ...], align: str, tag: str, code: tuple[bool, ...]) -> str:
    parts = [
        f'<{tag} class="{side}{" code" if monospace else ""}">{html_text.escape(cell)}</{tag}>'
        for cell, side, monospace in zip(cells, align, code, strict=True)
    ]
    return "<tr>" + "".join(parts) + "</tr>"

"""What the replay report shows, worked out once for both renderers (``render.text`` on the
terminal, ``dashboard.html`` in a browser), so they show the same numbers: the header
(``About``), the tables (``Section``, cells already formatted with thousands separators and
percentages), and the time series of the charts (``Series``), re-binned for the time span.

The panels follow Datadog's Gunicorn dashboard and saved views: request rate, 4xx and 5xx
rates, latency percentiles, status-code overview, 4xx and 5xx routes, bot errors, exceptions,
log levels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from logpipe.backfill import bins
from logpipe.backfill.summary import OTHER_REASON, Summary, status_class

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
SHOWN_INPUTS = 4  # input paths named in the header; the others are counted
MOSTLY_FAILED = 0.5  # parse errors over this share of lines: the format is the problem


@dataclass(frozen=True)
class About:
    """The report's header: what was replayed, and by what."""

    inputs: tuple[str, ...] = ()
    host: str = ""
    service: str = ""
    version: str = ""
    generated_ms: int | None = None  # epoch ms


@dataclass(frozen=True)
class Section:
    """One table: an id (``data-section`` in the page), a title, column headers, rows of
    formatted cells, each column's alignment (``l``/``r``), and what to say when empty."""

    id: str
    title: str
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    align: str
    empty: str = "None."


@dataclass(frozen=True)
class Series:
    """One chart: values per bin start (epoch ms) for each named line or stack layer."""

    id: str
    title: str
    unit: str  # the y axis: "requests", "%", "ms", "records"
    step: int  # bin width in ms
    starts: list[int]
    layers: dict[str, list[float | None]] = field(default_factory=dict)
    stacked: bool = False


def number(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"


def percent(part: int, whole: int) -> str:
    """``12.3 %`` of ``whole``; ``<0.1 %`` for a small non-zero part; ``-`` when whole is 0."""
    if not whole:
        return "-"
    share = 100 * part / whole
    if 0 < share < 0.05:
        return "<0.1 %"
    return f"{share:.1f} %"


def milliseconds(value: float | None) -> str:
    """``14.7 s``, ``1.23 s``, ``234 ms``, ``12.3 ms``, ``0.584 ms``."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.3f} ms"


def utc(ms: int) -> str:
    """``2026-11-25 06:03:40.099 UTC`` for epoch milliseconds."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d} UTC"


def span(ms: int) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``42 s`` for a duration in ms."""
    seconds = ms // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds}.{ms % 1000:03d} s" if seconds < 10 else f"{seconds} s"


def parsing_failed(summary: Summary) -> bool:
    """Most lines did not parse: the explanation replaces the (empty) tables."""
    read = summary.lines + summary.records
    return bool(read) and summary.parse_errors > MOSTLY_FAILED * read


def header(summary: Summary, about: About, *, generated: bool = True) -> list[tuple[str, str]]:
    """The header's (label, value) pairs (``generated``: with the time the report was made,
    which a terminal summary, printed as it is made, leaves out)."""
    rows: list[tuple[str, str]] = []
    if about.inputs:
        shown = ", ".join(about.inputs[:SHOWN_INPUTS])
        more = len(about.inputs) - SHOWN_INPUTS
        count = f"{len(about.inputs):,} files: " if len(about.inputs) > 1 else ""
        rows.append(("inputs", count + shown + (f" and {more:,} more" if more > 0 else "")))
    first, last = summary.first, summary.last
    if first is not None and last is not None:
        rows.append(("time range", f"{utc(first)} to {utc(last)} ({span(last - first)})"))
    if about.host:
        rows.append(("host", about.host))
    if about.service:
        rows.append(("service", about.service))
    if summary.accepted or summary.refused or summary.pending:
        rows.append(
            (
                "delivery",
                f"accepted {number(summary.accepted)} / refused {number(summary.refused)}"
                f" / pending {number(summary.pending)}",
            )
        )
    if generated and about.generated_ms is not None:
        rows.append(("generated", utc(about.generated_ms)[:19] + " UTC"))
    if about.version:
        rows.append(("logpipe", about.version))
    return rows


def sections(summary: Summary, *, top: int = 10) -> list[Section]:
    """The tables, in order; the overview first."""
    requests = sum(summary.requests.values())
    classes = summary.classes
    result = [
        Section("overview", "Overview", ("", "", ""), _overview(summary), "lrr"),
        Section(
            "status-classes",
            "Status classes",
            ("Class", "Requests", "Share"),
            [
                (key, number(count), percent(count, requests))
                for key, count in sorted(classes.items())
            ],
            "lrr",
            "No requests.",
        ),
        Section(
            "status-codes",
            "Status codes",
            ("Status", "Requests", "Share"),
            [
                (str(code), number(count), percent(count, requests))
                for code, count in sorted(summary.statuses.items())
            ],
            "lrr",
            "No requests.",
        ),
        _routes("top-4xx", f"Top {top} 4xx routes", summary.paths_4xx, top, "No 4xx responses."),
        _routes("top-5xx", f"Top {top} 5xx routes", summary.paths_5xx, top, "No 5xx responses."),
        _latency(summary),
        Section(
            "bot-errors",
            "Bot errors by bot (4xx/5xx, browser family *bot*)",
            ("Errors", "Share", "Bot"),
            _shares(summary.bots, top),
            "rrl",
            "No bot errors.",
        ),
        Section(
            "bot-routes",
            f"Top {top} bot errors by bot and route",
            ("Errors", "Bot", "Route"),
            [
                (number(count), bot, path)
                for (bot, path), count in _by_count(summary.bot_paths)[:top]
            ],
            "rll",
            "No bot errors.",
        ),
        Section(
            "bot-kinds",
            "Requests by bot kind",
            ("Kind", "Requests", "4xx", "5xx", "Errors"),
            _bot_kinds(summary),
            "lrrrr",
            "No bots seen.",
        ),
        Section(
            "exceptions",
            f"Top {top} exceptions",
            ("Records", "Kind", "Example message"),
            [
                (number(count), kind, summary.exception_examples.get(kind, ""))
                for kind, count in _by_count(summary.exceptions)[:top]
            ],
            "rll",
            "No tracebacks in the error log.",
        ),
        Section(
            "levels",
            "Error log by level",
            ("Level", "Records", "Share"),
            _levels(summary),
            "lrr",
            "No error-log records.",
        ),
    ]
    if summary.parse_errors:  # first when most lines failed: the one table with something in it
        result.insert(0 if parsing_failed(summary) else len(result), _parse_errors(summary, top))
    return result


def explanation(summary: Summary, about: About | None = None) -> list[str]:
    """Why the tables are empty when most lines did not parse, and what to do about it."""
    read = summary.lines + summary.records
    example = about.inputs[0] if about and len(about.inputs) == 1 else "FILE"
    return [
        f"{number(summary.parse_errors)} of {number(read)} lines and records "
        f"({percent(summary.parse_errors, read)}) did not parse: the format logpipe read "
        "them with does not match these logs, so there is little to count.",
        f"Run `logpipe detect {example}` to see which access format or error layout a file holds, "
        "then replay with `--access-format '<gunicorn access_log_format>'` (or "
        "`--error-format` for an error log). Without these options each file's format is "
        "detected from its first lines; the reasons below say where the lines stopped matching.",
    ]


def series(summary: Summary) -> list[Series]:
    """The charts, for the summary's time span (none without timestamps)."""
    first, last = summary.first, summary.last
    if first is None or last is None:
        return []
    step = bins.step_for(first, last)
    starts = bins.bin_starts(first, last, step)
    per_class: dict[str, dict[int, int]] = {}
    for (code, start), count in summary.requests.items():
        if start is not None:
            binned = per_class.setdefault(status_class(code), {})
            key = start - start % step
            binned[key] = binned.get(key, 0) + count
    rate = Series(
        "request-rate", "Requests by status class", "requests", step, starts, stacked=True
    )
    for group in sorted(per_class):
        rate.layers[group] = [float(per_class[group].get(start, 0)) for start in starts]
    charts = [rate] if per_class else []
    totals = [sum(per_class[group].get(start, 0) for group in per_class) for start in starts]
    for group in ("4xx", "5xx"):
        if per_class:
            counts = per_class.get(group, {})
            shares: list[float | None] = [
                100 * counts.get(start, 0) / total if total else None
                for start, total in zip(starts, totals, strict=True)
            ]
            charts.append(
                Series(f"rate-{group}", f"{group} rate", "%", step, starts, {group: shares})
            )
    if summary.durations:
        histograms = bins.rebin_histograms(summary.durations, step)
        latency = Series("latency", "Latency", "ms", step, starts)
        for name, fraction in QUANTILES:
            latency.layers[name] = [
                bins.percentile(histograms[start], fraction) if start in histograms else None
                for start in starts
            ]
        charts.append(latency)
    levels: dict[str, dict[int, int]] = {}
    for (level, start), count in summary.level_bins.items():
        if start is not None:
            binned = levels.setdefault(level, {})
            key = start - start % step
            binned[key] = binned.get(key, 0) + count
    if levels:
        order = sorted(levels, key=lambda name: (_level_rank(name), name))
        charts.append(
            Series(
                "levels",
                "Error log by level",
                "records",
                step,
                starts,
                {name: [float(levels[name].get(start, 0)) for start in starts] for name in order},
                stacked=True,
            )
        )
    return charts


def all_durations(summary: Summary) -> list[int]:
    """The duration bucket counts of the whole replay (empty without durations)."""
    merged: list[int] = []
    for counts in summary.durations.values():
        merged = [a + b for a, b in zip(merged, counts, strict=True)] if merged else list(counts)
    return merged


def _overview(summary: Summary) -> list[tuple[str, ...]]:
    requests = sum(summary.requests.values())
    classes = summary.classes
    read = summary.lines + summary.records
    rows: list[tuple[str, ...]] = [
        ("requests", number(requests), ""),
        ("4xx", number(classes["4xx"]), percent(classes["4xx"], requests)),
        ("5xx", number(classes["5xx"]), percent(classes["5xx"], requests)),
        (
            "bot errors",
            number(sum(summary.bots.values())),
            percent(sum(summary.bots.values()), requests),
        ),
        ("events", number(summary.events), ""),
        ("access lines", number(summary.lines), ""),
        ("error records", number(summary.records), ""),
        (
            "with a traceback",
            number(summary.tracebacks),
            percent(summary.tracebacks, summary.records),
        ),
        ("parse errors", number(summary.parse_errors), percent(summary.parse_errors, read)),
        ("truncated", number(summary.truncated), percent(summary.truncated, read)),
    ]
    if summary.skipped_old:
        rows.append(
            (
                "skipped (too old for intake)",
                number(summary.skipped_old),
                percent(summary.skipped_old, summary.events),
            )
        )
    return rows


def _routes(id: str, title: str, counter: Counter[str], top: int, empty: str) -> Section:
    return Section(id, title, ("Requests", "Share", "Route"), _shares(counter, top), "rrl", empty)


def _shares(counter: Counter[str], top: int) -> list[tuple[str, ...]]:
    total = counter.total()
    return [(number(count), percent(count, total), key) for key, count in _by_count(counter)[:top]]


def _latency(summary: Summary) -> Section:
    merged = all_durations(summary)
    rows = []
    if merged:
        rows = [
            (name, milliseconds(bins.percentile(merged, fraction))) for name, fraction in QUANTILES
        ]
        rows.append(("requests timed", number(sum(merged))))
    return Section(
        "latency",
        "Latency",
        ("Percentile", "Duration"),
        rows,
        "lr",
        "No durations: the access format has no %(D)s, %(L)s, %(M)s or %(T)s.",
    )


def _bot_kinds(summary: Summary) -> list[tuple[str, ...]]:
    """Per bot kind, most requests first: requests, its 4xx and 5xx, and their share."""
    totals: Counter[str] = Counter()
    for (kind, _), count in summary.bot_kinds.items():
        totals[kind] += count
    rows: list[tuple[str, ...]] = []
    for kind, count in _by_count(totals):
        client, server = summary.bot_kinds[kind, "4xx"], summary.bot_kinds[kind, "5xx"]
        rows.append(
            (kind, number(count), number(client), number(server), percent(client + server, count))
        )
    return rows


def _levels(summary: Summary) -> list[tuple[str, ...]]:
    levels = summary.levels
    total = levels.total()
    order = sorted(levels, key=lambda name: (_level_rank(name), name))
    return [(level, number(levels[level]), percent(levels[level], total)) for level in order]


def _parse_errors(summary: Summary, top: int) -> Section:
    rows = [
        (
            number(count),
            percent(count, summary.parse_errors),
            reason,
            summary.parse_examples.get(reason, ""),
        )
        for reason, count in _by_count(summary.parse_reasons)[:top]
    ]
    return Section(
        "parse-errors",
        "Why lines did not parse",
        ("Lines", "Share", "Reason", "Example"),
        rows,
        "rrll",
        f"See {OTHER_REASON}.",
    )


def _level_rank(level: str) -> int:
    upper = level.upper()
    return LEVELS.index(upper) if upper in LEVELS else len(LEVELS)


def _by_count(counter: Counter[Any]) -> list[tuple[Any, int]]:
    """Most frequent first; ties by key, so the order does not depend on arrival."""
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))

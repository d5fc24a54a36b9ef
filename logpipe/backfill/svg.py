"""Inline SVG charts of a ``views.Series``: stacked bars (one ``<path>`` per layer, so a week
of bins stays a few kB) or lines with gaps where a bin has no value; nice y ticks, UTC time
ticks, a legend. The SVG scales to its container (``viewBox``, width 100 %)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from logpipe.backfill.bins import DAY, HOUR, MINUTE
from logpipe.backfill.views import Series

HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 12, 34
MAX_X_TICKS = 8
TIME_TICKS_MS = (
    MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
)
COLOURS = {
    "1xx": "#8d99ae",
    "2xx": "#2a9d62",
    "3xx": "#3b82c4",
    "4xx": "#e09a1a",
    "5xx": "#d6363f",
    "p50": "#3b82c4",
    "p90": "#8a5cc7",
    "p99": "#d6363f",
    "DEBUG": "#a0a8b4",
    "INFO": "#3b82c4",
    "WARNING": "#e09a1a",
    "ERROR": "#d6363f",
    "CRITICAL": "#7a1020",
}
OTHER_COLOUR = "#6b7280"


def colour(name: str) -> str:
    return COLOURS.get(name, COLOURS.get(name.upper(), OTHER_COLOUR))


@dataclass(frozen=True)
class _Frame:
    """Maps bin starts and values to chart coordinates."""

    width: int
    start: int  # epoch ms at the left edge
    end: int  # epoch ms at the right edge
    top: float  # the value at the top of the plot
    bottom: float = 0.0  # the value at the bottom; on a log scale, a power of ten
    log: bool = False  # a log scale (latencies: p50 and p99 apart by orders of magnitude)

    def x(self, ms: int) -> float:
        return LEFT + (ms - self.start) * (self.width - LEFT - RIGHT) / (self.end - self.start)

    def y(self, value: float) -> float:
        if self.log:
            low, high = math.log10(self.bottom), math.log10(self.top)
            share = (math.log10(max(value, self.bottom)) - low) / (high - low)
        else:
            share = value / self.top
        return HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM)


def chart(series: Series, width: int = 600) -> str:
    """The SVG of one series."""
    peak = max(_peaks(series), default=0.0)
    step = nice_step(peak)
    if series.unit in ("requests", "records"):
        step = max(step, 1.0)  # whole counts
    start, end = series.starts[0], series.starts[-1] + series.step
    if series.unit == "ms":
        frame = _log_frame(width, start, end, series)
        y_axis = _log_y_axis(frame)
    else:
        frame = _Frame(width, start, end, step * max(1, -(-peak // step)))
        y_axis = _y_axis(frame, step, series.unit)
    label = html.escape(f"{series.title} per {step_name(series.step)}")
    parts = [
        f'<svg viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="{label}" '
        'preserveAspectRatio="xMidYMid meet">',
        *y_axis,
        *_x_axis(frame),
        *(_bars(frame, series) if series.stacked else _lines(frame, series)),
        "</svg>",
    ]
    return "\n".join(parts)


def legend(series: Series) -> str:
    """The series' layers as coloured keys (HTML)."""
    keys = [
        f'<span class="key"><span class="swatch" style="background:{colour(name)}"></span>'
        f"{html.escape(name)}</span>"
        for name in series.layers
    ]
    return f'<div class="legend">{"".join(keys)}</div>'


def nice_step(top: float, ticks: int = 4) -> float:
    """The smallest of ... 0.1, 0.2, 0.5, 1, 2, 5, 10 ... giving at most ``ticks`` steps up to
    ``top``."""
    if top <= 0:
        return 1.0
    scale = 10.0 ** (len(str(int(top))) - 3) if top >= 1 else 0.001
    while True:
        for multiple in (1, 2, 5):
            step = multiple * scale
            if top <= step * ticks:
                return step
        scale *= 10


def step_name(step: int) -> str:
    """``1 min``, ``15 min``, ``1 h``, ``1 d``."""
    if step % DAY == 0:
        return f"{step // DAY} d"
    if step % HOUR == 0:
        return f"{step // HOUR} h"
    return f"{step // MINUTE} min"


def _peaks(series: Series) -> list[float]:
    if series.stacked:
        return [
            sum(values[i] or 0.0 for values in series.layers.values())
            for i in range(len(series.starts))
        ]
    return [value for values in series.layers.values() for value in values if value is not None]


def _tick_label(value: float, unit: str, *, zero: bool = True) -> str:
    if value == 0 and zero:
        return "0"
    if unit == "%":
        return f"{value:g} %"
    if unit == "ms":
        return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:,g}"


def _y_axis(frame: _Frame, step: float, unit: str) -> list[str]:
    parts = []
    ticks = round(frame.top / step)
    for index in range(ticks + 1):
        value = index * step
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{frame.width - RIGHT}" y2="{y:.1f}"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, _tick_label(value, unit), "end"))
    return parts


def _log_frame(width: int, start: int, end: int, series: Series) -> _Frame:
    """A log scale from the power of ten below the least value to the one above the most."""
    values = [value for value in _peaks(series) if value > 0] or [1.0]
    low = 10.0 ** math.floor(math.log10(min(values)))
    high = 10.0 ** math.ceil(math.log10(max(values)))
    return _Frame(width, start, end, max(high, low * 10), low, log=True)


def _log_y_axis(frame: _Frame) -> list[str]:
    """Grid lines at 1, 2 and 5 times each power of ten; labels at the powers (and at 2 and 5
    when the scale spans at most two of them)."""
    decades = round(math.log10(frame.top / frame.bottom))
    parts = []
    power = frame.bottom
    while power <= frame.top * 1.001:
        for multiple in (1, 2, 5):
            value = power * multiple
            if value > frame.top * 1.001:
                break
            y = frame.y(value)
            parts.append(
                f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{frame.width - RIGHT}" '
                f'y2="{y:.1f}"/>'
            )
            if multiple == 1 or decades <= 2:
                parts.append(_text(LEFT - 6, y + 4, _tick_label(value, "ms", zero=False), "end"))
        power *= 10
    return parts


def _x_axis(frame: _Frame) -> list[str]:
    span = frame.end - frame.start
    step = next((s for s in TIME_TICKS_MS if span / s <= MAX_X_TICKS), TIME_TICKS_MS[-1])
    base = HEIGHT - BOTTOM
    parts = [f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{frame.width - RIGHT}" y2="{base}"/>']
    for tick in range(-(-frame.start // step) * step, frame.end + 1, step):
        x = frame.x(tick)
        moment = datetime.fromtimestamp(tick / 1000, UTC)
        if step >= DAY or (moment.hour == 0 and moment.minute == 0 and span > DAY):
            label = f"{moment:%b %d}"
        elif span > DAY:
            label = f"{moment:%d %H:%M}"
        else:
            label = f"{moment:%H:%M}"
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}"/>')
        parts.append(_text(x, base + 17, label, "middle"))
    return parts


def _bars(frame: _Frame, series: Series) -> list[str]:
    """One path per layer, bins stacked in layer order (the first at the bottom); one
    transparent column per bin with the bin's values as its tooltip."""
    slot = frame.x(frame.start + series.step) - LEFT
    gap = min(slot * 0.15, 2.0)
    width = max(slot - gap, 0.6)
    below = [0.0] * len(series.starts)
    parts = []
    for name, values in series.layers.items():
        commands = []
        for index, (start, value) in enumerate(zip(series.starts, values, strict=True)):
            if not value:
                continue
            bottom = frame.y(below[index])
            below[index] += value
            top = frame.y(below[index])
            commands.append(
                f"M{frame.x(start) + gap / 2:.1f} {bottom:.1f}V{top:.1f}h{width:.1f}V{bottom:.1f}z"
            )
        if commands:
            parts.append(f'<path fill="{colour(name)}" d="{"".join(commands)}"/>')
    for index, start in enumerate(series.starts):
        if not below[index]:
            continue
        shares = ", ".join(
            f"{name} {int(layer[index] or 0):,}"
            for name, layer in series.layers.items()
            if layer[index]
        )
        tip = html.escape(f"{_when(start)}: {int(below[index]):,} ({shares})")
        parts.append(
            f'<rect class="hit" x="{frame.x(start):.1f}" y="{TOP}" width="{slot:.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}"><title>{tip}</title></rect>'
        )
    return parts


def _lines(frame: _Frame, series: Series) -> list[str]:
    """One path per layer through the middle of each bin, broken where a bin has no value;
    a lone point is drawn as a dot."""
    half = series.step / 2
    parts = []
    for name, values in series.layers.items():
        commands, dots, run = [], [], 0
        for start, value in zip(series.starts, values, strict=True):
            if value is None:
                run = 0
                continue
            x, y = frame.x(int(start + half)), frame.y(value)
            commands.append(f"{'L' if run else 'M'}{x:.1f} {y:.1f}")
            dots.append((x, y))
            run += 1
        if not commands:
            continue
        parts.append(f'<path class="line" stroke="{colour(name)}" d="{"".join(commands)}"/>')
        if len(dots) <= 40:  # few points: show each
            parts += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour(name)}"/>'
                for x, y in dots
            ]
    return parts


def _when(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M} UTC"


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{html.escape(text)}</text>'

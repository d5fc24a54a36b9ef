"""Which ``access_log_format`` a file's lines were written with, from its first lines.

The known layouts are tried first (gunicorn's default and what Datadog's pipeline accepts with
it, then uvicorn's line); when none parses every line, a format is inferred from the lines
(``infer.py``) and kept if it parses more of them. Lines are tried on the fast path only: a line
it declines is one the format does not fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from logpipe.parsing.access.fast import fast_access
from logpipe.parsing.access.format import (
    DEFAULT_FORMATS,
    UVICORN_FORMAT,
    FormatError,
)
from logpipe.parsing.access.infer import infer_formats
from logpipe.parsing.access.parser import AccessParser

SAMPLE_LINES = 50  # lines a detection looks at

# (name, formats): the layouts known by name, tried in this order.
# (gunicorn's default stands for what Datadog's pipeline accepts: it, the common log format,
# and it with a quoted X-Forwarded-For after it.)
KNOWN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gunicorn's default", DEFAULT_FORMATS),
    ("uvicorn's access line", (UVICORN_FORMAT,)),
)


@dataclass(frozen=True)
class Detection:
    """The formats chosen for some lines, and how many of them they parse."""

    formats: tuple[str, ...]
    name: str  # a known layout's name, or "inferred"
    parsed: int
    sample: int

    @property
    def default(self) -> bool:
        """gunicorn's default formats: what the parser accepts when given none."""
        return self.formats == DEFAULT_FORMATS

    def describe(self) -> str:
        """One line: the format, to paste into a config, and how well it fits."""
        return (
            f"{self.name}: {self.formats[0]!r} ({self.parsed} of the first {self.sample} lines "
            "parse)"
        )


def detect(lines: Sequence[str]) -> Detection | None:
    """The best format for ``lines`` (non-empty ones, the first ``SAMPLE_LINES``), or None
    when nothing parses any of them."""
    sample = [line for line in lines if line.strip()][:SAMPLE_LINES]
    if not sample:
        return None
    best: Detection | None = None
    for name, formats in KNOWN:
        found = Detection(formats, name, _parsed(formats, sample), len(sample))
        if found.parsed == len(sample):
            return found
        if best is None or found.parsed > best.parsed:
            best = found
    for inferred in infer_formats(sample):
        try:
            parsed = _parsed((inferred,), sample)
        except FormatError:
            continue
        if best is None or parsed > best.parsed:
            best = Detection((inferred,), "inferred", parsed, len(sample))
    return best if best is not None and best.parsed else None


def unfit(lines: Sequence[str], closest: Detection | None) -> str:
    """Why no format was chosen for ``lines``: the closest one and the commonest reasons its
    lines fail, and what to do."""
    formats = closest.formats if closest is not None else DEFAULT_FORMATS
    parser = AccessParser(formats)
    reasons = Counter(
        event["logpipe"]["parse_error"]
        for event in map(parser.parse, [line for line in lines if line.strip()][:SAMPLE_LINES])
        if "parse_error" in event.get("logpipe", {})
    )
    top = "; ".join(f"{reason} ({count} lines)" for reason, count in reasons.most_common(3))
    near = closest.describe() if closest is not None else f"gunicorn's default: {formats[0]!r}"
    return (
        f"no access format fits its first lines (the closest, {near}; {top}); they become "
        "events with logpipe.parse_error: give --access-format FMT (logpipe detect FILE shows "
        "what was tried)"
    )


def _parsed(formats: tuple[str, ...], lines: Sequence[str]) -> int:
    match = fast_access(formats).match
    return sum(1 for line in lines if match(line) is not None)

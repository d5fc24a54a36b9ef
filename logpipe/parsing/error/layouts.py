"""Error-log layouts: which logging formats (or JSON lines) a file's records are written in.

``ErrorLayout`` names a layout: text formats (a ``logging`` format and datefmt each), JSON
lines or both. ``DEFAULT_LAYOUT`` is what ``ErrorParser`` has always read: gunicorn's own
records and Flask-style application records (grammars/error_record.lark, its hand-written
builders). Any other format is assembled from grammars/error_attributes.lark
(logpipe/parsing/error/assembly.py) and gets an event builder compiled for it here.
``detect_error_layout`` tells the layout of a file from its first lines.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from logpipe.event import ERROR_LOGGER
from logpipe.memo import Memo
from logpipe.parsing.attributes import STATUSES
from logpipe.parsing.codegen import Code, compile_builder, literal
from logpipe.parsing.error.assembly import (
    END,
    LayoutError,
    RecordRule,
    Value,
    date_regex,
    is_directive,
    lark_parser,
    record_rule,
)
from logpipe.parsing.error.json_lines import LOGGER_FIELDS, json_record
from logpipe.parsing.error.traceback import MARKER, logged_error
from logpipe.parsing.timestamps import directive_time_ms

GUNICORN_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
GUNICORN_DATEFMT = "[%Y-%m-%d %H:%M:%S %z]"
FLASK_FORMAT = "[%(asctime)s] %(levelname)s in %(module)s: %(message)s"
LOGGING_CONF_DATEFMT = "%Y-%m-%d %H:%M:%S"  # gunicorn's examples/logging.conf
BASIC_FORMAT = "%(levelname)s:%(name)s:%(message)s"  # logging.basicConfig()'s
COOKBOOK_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # logging's HOWTO
# The start of a record in DEFAULT_LAYOUT: logpipe.sources.multiline.DEFAULT_START (parsing
# does not import sources; tests/unit/test_error_layouts.py holds the two equal).
DEFAULT_START = r"\[\d{4}-\d{2}-\d{2}"


@dataclass(frozen=True)
class TextFormat:
    """A ``logging`` format and its datefmt (None: logging's default, ``,mmm`` appended)."""

    fmt: str
    datefmt: str | None = None

    def describe(self) -> str:
        options = f"--error-format {shlex.quote(self.fmt)}"
        if self.datefmt is not None:
            options += f" --error-datefmt {shlex.quote(self.datefmt)}"
        return options


@dataclass(frozen=True)
class ErrorLayout:
    """How a file's error records are written: text formats, tried in order, and whether a
    line may be a JSON object (then JSON first, the text formats for other lines).

    ``start_pattern`` is the regex for ``Multiline(pattern)``; ``ErrorParser(layout=...)``
    parses its records.
    """

    name: str
    formats: tuple[TextFormat, ...]
    json: bool = False

    @property
    def legacy(self) -> bool:
        """Its text formats are DEFAULT_LAYOUT's (error_record.lark's hand-written rules)."""
        return self.formats == DEFAULT_LAYOUT.formats

    @property
    def start_pattern(self) -> str:
        """What the first line of a record matches (``""``: every line is a record)."""
        if self.json:
            return ""
        if self.legacy:
            return DEFAULT_START
        starts = [record_rule(f.fmt, f.datefmt).start_regex() for f in self.formats]
        if "" in starts:
            return ""
        return starts[0] if len(starts) == 1 else "(?:" + "|".join(starts) + ")"

    def record_start(self, given: str) -> str:
        """The record start to aggregate with: ``given`` (``--multiline-pattern``) when it was
        given, i.e. is not the default, else this layout's own."""
        return given if given != DEFAULT_START else self.start_pattern

    def describe(self) -> str:
        """The layout, with the options (or logging config values) that name it."""
        if self.json:
            return f"{self.name}: --error-format json"
        if self.legacy:  # (Flask-style records come with it: no option to name them)
            return f"{self.name}: {self.formats[0].describe()}"
        shown = "; ".join(f.describe() for f in self.formats)
        return f"{self.name}: {shown}"

    @classmethod
    def of(cls, fmt: str, datefmt: str | None = None) -> ErrorLayout:
        """The layout for ``--error-format`` and ``--error-datefmt`` (``json``, a logging
        format; gunicorn's own is DEFAULT_LAYOUT). LayoutError when it cannot be read."""
        if fmt == "json":
            return JSON_LAYOUT
        if (fmt, datefmt) == (GUNICORN_FORMAT, GUNICORN_DATEFMT):
            return DEFAULT_LAYOUT
        record_rule(fmt, datefmt)  # raises LayoutError
        return cls("logging format", (TextFormat(fmt, datefmt),))


DEFAULT_LAYOUT = ErrorLayout(
    "gunicorn default (with Flask-style app records)",
    (TextFormat(GUNICORN_FORMAT, GUNICORN_DATEFMT), TextFormat(FLASK_FORMAT)),
)
JSON_LAYOUT = ErrorLayout("JSON lines", DEFAULT_LAYOUT.formats, json=True)
LOGGING_CONF_LAYOUT = ErrorLayout(
    "gunicorn logging.conf", (TextFormat(GUNICORN_FORMAT, LOGGING_CONF_DATEFMT),)
)
COOKBOOK_LAYOUT = ErrorLayout("logging cookbook", (TextFormat(COOKBOOK_FORMAT),))
BASIC_LAYOUT = ErrorLayout("logging basicConfig", (TextFormat(BASIC_FORMAT),))
# What detection chooses among, in order of preference on a tie.
KNOWN_LAYOUTS = (DEFAULT_LAYOUT, LOGGING_CONF_LAYOUT, COOKBOOK_LAYOUT, BASIC_LAYOUT, JSON_LAYOUT)


def detect_error_layout(first_lines: Sequence[str]) -> ErrorLayout | None:
    """The known layout most of ``first_lines`` (a file's first lines, no line endings) begin a
    record of; None when no line begins one (nothing to go by yet, or an unknown layout).

    Continuation lines (tracebacks) begin no record and count for none."""
    best, best_score = None, 0
    for layout in KNOWN_LAYOUTS:
        score = sum(1 for line in first_lines if _begins_record(layout, line))
        if score > best_score:
            best, best_score = layout, score
    return best


def _begins_record(layout: ErrorLayout, line: str) -> bool:
    if layout.json:
        return json_record(line) is not None
    return any(_line_regex(f)(line + END) is not None for f in layout.formats)


_LINE_REGEXES: dict[TextFormat, Callable[[str], re.Match[str] | None]] = {}


def _line_regex(text_format: TextFormat) -> Callable[[str], re.Match[str] | None]:
    """The record regex of ``text_format``, matched against one line with END."""
    match = _LINE_REGEXES.get(text_format)
    if match is None:
        rule = record_rule(text_format.fmt, text_format.datefmt)
        match = _LINE_REGEXES[text_format] = re.compile(rule.fast_regex()).match
    return match


# --- the records of one assembled format, and their events

Build = Callable[[str, Sequence[str], dict[str, Any] | None], dict[str, Any]]

LEVEL_NAMES: Memo[str, tuple[str, str]] = Memo(lambda text: (text, STATUSES[text]), 256)
INTEGER_FIELDS = frozenset({"thread", "lineno"})
IGNORED = frozenset({"levelno", "relativeCreated"})
# Locals of a builder and names of its namespace: an unknown attribute may not be one.
_TAKEN = frozenset(
    {"text", "parts", "bookkeeping", "event", "int", "level", "status", "timestamp", "pid"}
    | {"error", "logger", "message", "ddsource", "logpipe", "service", "hostname", "ddtags"}
)


class FormatRecords:
    """The fast-path regex, the event builder and the Lark explanation of one format."""

    def __init__(
        self,
        text_format: TextFormat,
        zone: datetime.tzinfo | None,
        attributes: Mapping[str, Any],
    ) -> None:
        self.format = text_format
        self.rule = record_rule(text_format.fmt, text_format.datefmt)
        self.match = re.compile(self.rule.fast_regex()).match
        self.build, self.source = format_build(self.rule, zone, attributes)

    def lark_parts(self, line: str) -> list[str]:
        """The values of ``line`` (a record with END) by the Lark parser; raises Lark's
        UnexpectedInput when it does not parse."""
        rule = self.rule
        tree = lark_parser(rule.fmt, rule.datefmt).parse(line)
        texts = [str(token) for token in tree.children]
        parts: list[str] = []
        for token, text in zip(rule.tokens, texts, strict=False):
            found = re.fullmatch(token.regex(re.escape(END)), text, re.DOTALL)
            if found is None:  # (cannot happen: the token matched this text)
                raise ValueError(f"token {token.name} does not split")
            parts += found.groups()
        return parts

    def describe(self, terminal: str) -> str:
        """What a token of the assembled grammar is, as the format writes it."""
        for token in self.rule.tokens:
            if token.name == terminal:
                return repr(token.shown)
        return terminal


class DateReader:
    """Read asctime as a datefmt prints it: epoch ms per stamp (memoized)."""

    def __init__(self, parts: tuple[str, ...], zone: datetime.tzinfo | None) -> None:
        self._match = re.compile(date_regex(parts)).fullmatch
        self._letters = [part[1] for part in parts if is_directive(part)]
        self._zone = zone
        self.times: Memo[str, int | None] = Memo(self.time_ms, 4096)

    def time_ms(self, stamp: str) -> int | None:
        found = self._match(stamp)
        if found is None:
            return None
        return directive_time_ms(dict(zip(self._letters, found.groups(), strict=True)), self._zone)

    @property
    def has_fraction(self) -> bool:
        return "f" in self._letters


def format_build(
    rule: RecordRule, zone: datetime.tzinfo | None, attributes: Mapping[str, Any]
) -> tuple[Build, str]:
    """The event builder for records of ``rule`` (``parts``: the fast path's groups)."""
    values: tuple[Value, ...] = rule.values
    names = [f"_v{index}" for index in range(len(values))] + (["_rest"] if rule.rest else [])
    lines = [f"{', '.join(names)}{',' if len(names) == 1 else ''} = parts"]
    if rule.rest:
        lines.append("_rest = _rest[:-1]")  # (without END)
    namespace: dict[str, Any] = {
        "LEVEL_NAMES": LEVEL_NAMES,
        "MARKER": MARKER,
        "logged_error": logged_error,
        "created_ms": _created_ms,
    }
    writes: set[str] = {"logger"}
    logger = {"name": literal(ERROR_LOGGER)}
    extras: dict[str, str] = {}
    stamp: tuple[str, DateReader] | None = None
    msecs = created = message = None
    for local, value in zip(names, values, strict=False):
        attribute = value.attribute
        if attribute == "asctime":
            stamp = (local, DateReader(value.date, zone))
        elif attribute == "msecs":
            msecs = local
        elif attribute == "created":
            created = local
        elif attribute == "levelname":
            lines.append(f"level, status = LEVEL_NAMES[{local}]")
            writes |= {"level", "status"}
        elif attribute == "process":
            lines.append(f"pid = int({local})")
            writes.add("pid")
        elif attribute == "message":
            message = local
        elif attribute == "name":
            logger["name"] = local
        elif attribute in LOGGER_FIELDS:
            field = LOGGER_FIELDS[attribute]
            logger[field] = f"int({local})" if attribute in INTEGER_FIELDS else local
        elif attribute not in IGNORED:
            if attribute in _TAKEN:
                raise LayoutError(f"attribute %({attribute})s is not supported")
            lines.append(f"{attribute} = {local}")
            extras[attribute] = local
    if stamp is not None:
        local, reader = stamp
        namespace["TIMES"] = reader.times
        lines.append(f"timestamp = TIMES[{local}]")
        if msecs is not None and not reader.has_fraction:
            lines += [
                "if timestamp is not None:",
                f"    timestamp += int({msecs}.partition('.')[0])",
            ]
        writes.add("timestamp")
    elif created is not None:
        lines.append(f"timestamp = created_ms({created})")
        writes.add("timestamp")
    lines.append("logger = {" + ", ".join(f"{literal(k)}: {v}" for k, v in logger.items()) + "}")
    body = " + ".join(name for name in (message, "_rest" if rule.rest else None) if name)
    if body:
        lines.append(f"error = logged_error({body}) if MARKER in {body} else None")
        writes.add("error")
    order: dict[str, str | None] = {
        "logger": None,
        "level": None,
        "status": None,
        "timestamp": "timestamp is None",
        "pid": None,
        "error": "error is None",
        **dict.fromkeys(extras),
    }
    return compile_builder(
        "error",
        ERROR_LOGGER,
        "parts",
        [Code.of(*lines, writes=writes | set(extras))],
        order,
        attributes,
        namespace,
    )


def _created_ms(text: str) -> int:
    return int(float(text) * 1000)

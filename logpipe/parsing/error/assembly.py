"""Assemble the record rule of an error-log layout from a Python ``logging`` format.

A format (``%(asctime)s [%(process)d] [%(levelname)s] %(message)s``) and its ``datefmt`` are
split into literal text and attributes (``parse_logging_format``); each attribute is a terminal
of grammars/error_attributes.lark (``%(asctime)s`` is the datefmt's directives, each a terminal,
with its literal text). As for access formats (logpipe/parsing/access/grammar.py), the values
are grouped into tokens, each its values then the literal printed after them, and an open-ended
value (a word, free text, a message with more after it) ends at the first place where its
literal and what follows it (the next token, when that has a fixed shape) match.

From the tokens come:

* the fast path: one regex, each token in an atomic group ``(?>...)`` (Lark's lexer never goes
  back into a token; nor does the regex engine then: matching stays linear);
* a Lark grammar (``%import error_attributes (...)``, one terminal per token, the same
  lookaheads) that explains why a record does not parse;
* the start of a record, for the multi-line aggregator: the tokens before ``%(message)s``.

When the format does not end with ``%(message)s``, what logging appends after the formatted
record (the traceback, stack_info) is the ``REST`` of the record: a line break and anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from logpipe.parsing.disk_cache import cached
from logpipe.parsing.grammars import grammar_dir, grammar_text

if TYPE_CHECKING:
    from lark import Lark
    from lark.lexer import TerminalDef

END = "\n"  # sentinel appended to every record before Lark parses it
FAST_END = r"\n\Z"  # the END literal in regexes: the sentinel, at the end of the record

# logging's defaults: the datefmt when none is given, then ",%03d" of the milliseconds
DEFAULT_DATEFMT = "%Y-%m-%d %H:%M:%S"

# Attribute -> terminal of grammars/error_attributes.lark (asctime: the datefmt's directives).
ATTRIBUTE_TERMINALS: dict[str, str] = {
    "levelname": "LEVELNAME",
    "levelno": "INTEGER",
    "process": "INTEGER",
    "thread": "INTEGER",
    "lineno": "INTEGER",
    "msecs": "NUMBER",
    "created": "NUMBER",
    "relativeCreated": "NUMBER",
    "name": "WORD",
    "module": "WORD",
    "funcName": "WORD",
    "filename": "WORD",
    "pathname": "TEXT",
    "threadName": "TEXT",
    "processName": "TEXT",
    "taskName": "TEXT",
    "message": "MESSAGE",
}
UNKNOWN_TERMINAL = "TEXT"  # an attribute the application adds (``extra``, a filter)

# strftime directive -> terminal
DIRECTIVE_TERMINALS: dict[str, str] = {
    "Y": "DATE_YEAR",
    "y": "DATE_YEAR2",
    "m": "DATE_MONTH",
    "b": "DATE_MONTH_NAME",
    "d": "DATE_DAY",
    "a": "DATE_WEEKDAY",
    "H": "DATE_HOUR",
    "I": "DATE_HOUR12",
    "p": "DATE_AMPM",
    "M": "DATE_MINUTE",
    "S": "DATE_SECOND",
    "f": "DATE_MICROSECOND",
    "z": "DATE_OFFSET",
    "Z": "DATE_ZONE_NAME",
}
# Values whose end is found by what follows them.
OPEN_ENDED = frozenset({"WORD", "TEXT", "MESSAGE_PART"})
# Values that may hold spaces and any separator: a lookahead never spans them.
FREE_TEXT = frozenset({"TEXT", "MESSAGE_PART", "MESSAGE"})

_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^()]*)\)(?P<flags>[-#0 +]*)(?P<width>\d*)(?:\.\d+)?"
    r"(?P<conversion>[sdfirxXeEgG])|(?P<percent>%))"
)
_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)


class LayoutError(ValueError):
    """A logging format or datefmt logpipe cannot read."""


@dataclass(frozen=True)
class Value:
    """One attribute's value: ``%(process)d``, ``%(levelname)-8s``, ``%(asctime)s``."""

    attribute: str
    terminal: str  # "" for asctime (its directives are in ``date``)
    shown: str  # as written in the format
    pad_before: bool = False  # right-justified to a width: spaces before
    pad_after: bool = False  # left-justified to a width: spaces after
    date: tuple[str, ...] = ()  # asctime: directives ("%Y") and literal text, in order

    @property
    def open_ended(self) -> bool:
        return self.terminal in OPEN_ENDED


@dataclass(frozen=True)
class Literal:
    text: str


Segment = Value | Literal


def parse_logging_format(fmt: str, datefmt: str | None = None) -> tuple[Segment, ...]:
    """Split a ``%``-style logging format into values and literals (adjacent literals merged);
    LayoutError for what logging would not render or logpipe cannot read."""
    if not fmt:
        raise LayoutError("empty format")
    segments: list[Segment] = []
    literal = ""
    position = 0
    for match in _PLACEHOLDER.finditer(fmt):
        literal += _plain(fmt, position, match.start())
        position = match.end()
        if match["percent"]:
            literal += "%"
            continue
        name = match["name"]
        if literal:
            segments.append(Literal(literal))
            literal = ""
        segments += _values(name, match, datefmt)
    literal += _plain(fmt, position, len(fmt))
    if literal:
        segments.append(Literal(literal))
    return _merged(segments)


def _plain(fmt: str, start: int, end: int) -> str:
    text = fmt[start:end]
    stray = text.find("%")
    if stray >= 0:
        raise LayoutError(f"unsupported placeholder at column {start + stray + 1}: use %(name)s")
    return text


def _values(name: str, match: re.Match[str], datefmt: str | None) -> list[Segment]:
    width = int(match["width"] or 0)
    left = "-" in match["flags"]
    shown = match.group(0)
    if name == "asctime":
        if width:
            raise LayoutError("a width on %(asctime)s is not supported")
        date = _date_parts(datefmt if datefmt is not None else DEFAULT_DATEFMT)
        asctime = Value("asctime", "", shown, date=date)
        if datefmt is not None:
            return [asctime]
        # logging's default: the time to the second, then ",%03d" of the milliseconds
        return [asctime, Literal(","), Value("msecs", "INTEGER", shown)]
    if not name.isidentifier() or name.startswith("_"):
        raise LayoutError(f"unsupported attribute {shown!r}")
    terminal = ATTRIBUTE_TERMINALS.get(name, UNKNOWN_TERMINAL)
    if match["conversion"] not in "sr" and terminal not in ("INTEGER", "NUMBER"):
        raise LayoutError(f"{shown!r}: %(name)s-style conversions only for numbers")
    zero = "0" in match["flags"] and not left
    padded = bool(width)
    return [Value(name, terminal, shown, padded and not left and not zero, padded and left)]


def _date_parts(datefmt: str) -> tuple[str, ...]:
    parts: list[str] = []
    position = 0
    for match in _DIRECTIVE.finditer(datefmt):
        if match.start() > position:
            parts.append(datefmt[position : match.start()])
        position = match.end()
        letter = match.group(1)
        if letter == "%":
            parts.append("%")
        elif letter in DIRECTIVE_TERMINALS:
            parts.append(match.group(0))
        else:
            raise LayoutError(
                f"datefmt directive {match.group(0)!r} is not supported "
                f"(supported: {' '.join('%' + d for d in DIRECTIVE_TERMINALS)})"
            )
    if position < len(datefmt):
        parts.append(datefmt[position:])
    if not any(is_directive(part) for part in parts):
        raise LayoutError(f"datefmt {datefmt!r} has no directive")
    return tuple(_merge_text(parts))


def is_directive(part: str) -> bool:
    return len(part) == 2 and part[0] == "%" and part[1] in DIRECTIVE_TERMINALS


def _merge_text(parts: list[str]) -> list[str]:
    merged: list[str] = []
    for part in parts:
        if merged and not is_directive(part) and not is_directive(merged[-1]):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def _merged(segments: list[Segment]) -> tuple[Segment, ...]:
    merged: list[Segment] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if isinstance(segment, Literal) and isinstance(last, Literal):
            merged[-1] = Literal(last.text + segment.text)
        else:
            merged.append(segment)
    return tuple(merged)


@cache
def terminal_patterns() -> dict[str, str]:
    """Python regex of every terminal of grammars/error_attributes.lark, by name."""
    source = grammar_text("error_attributes")
    patterns: dict[str, str] = cached("error_attributes", source, lambda: _compile(source))
    return patterns


def _compile(source: str) -> dict[str, str]:
    from lark.load_grammar import load_grammar

    # Compiled without a lexer: alone, some terminals may be empty, which lexers refuse.
    grammar, _ = load_grammar(source, "error_attributes", [], False)  # type: ignore[no-untyped-call]
    terminals, _, _ = grammar.compile(["attribute_value"], "*")
    return {terminal.name: terminal.pattern.to_regexp() for terminal in terminals}


@dataclass(frozen=True)
class Token:
    """One terminal of an assembled record rule: values, then the literal printed after them."""

    name: str
    values: tuple[Value, ...]
    literal: str  # may end with END (the sentinel), for the last token
    shown: str  # the piece of the format it comes from
    rest: bool = False  # the last token of a format not ending with %(message)s: REST follows

    @property
    def open_ended(self) -> bool:
        return any(value.open_ended for value in self.values)

    def regex(self, end: str) -> str:
        """The token's text, a group per value, with ``end`` for the END sentinel."""
        values = "".join(_value_regex(value) for value in self.values)
        rest = f"({terminal_patterns()['REST']})\\Z" if self.rest else ""
        return values + _literal_regex(self.literal, end) + rest

    def definition(self) -> str:
        """The token in Lark's terms: terminals and strings."""
        parts = [part for value in self.values for part in _value_definition(value)]
        if self.literal:
            parts.append(_lark_string(self.literal))
        if self.rest:
            parts.append("REST")
        return " ".join(parts)


@dataclass(frozen=True)
class RecordRule:
    """The assembled rule of one logging format: its tokens, then REST or not."""

    fmt: str
    datefmt: str | None
    tokens: tuple[Token, ...]
    rest: bool  # the format does not end with %(message)s: logging's REST follows
    lookaheads: tuple[str | None, ...]  # per token, what must follow it (fast path terms)

    @property
    def values(self) -> tuple[Value, ...]:
        return tuple(value for token in self.tokens for value in token.values)

    def fast_regex(self) -> str:
        """One regex for the whole record, with the END sentinel as Lark sees it: a group per
        value, then (``rest``) one for REST, with the sentinel."""
        parts = [
            _atomic(token.regex(FAST_END), ahead)
            for token, ahead in zip(self.tokens, self.lookaheads, strict=True)
        ]
        return "".join(parts)

    def start_regex(self) -> str:
        """What the first line of a record (no line break) matches: the tokens before the
        message, the last of them without its lookahead (none: ``""``, every line starts a
        record)."""
        prefix: list[Token] = []
        for token in self.tokens:
            if any(value.attribute == "message" for value in token.values):
                break
            prefix.append(token)
        return "".join(
            _atomic(
                _ungrouped(token.regex(FAST_END)),
                self.lookaheads[index] if index + 1 < len(prefix) else None,
            )
            for index, token in enumerate(prefix)
        )

    def lark_source(self) -> str:
        used = sorted(
            {
                part
                for token in self.tokens
                for value in token.values
                for part in _value_definition(value)
                if part[0].isupper()
            }
            | ({"REST"} if self.rest else set())
        )
        names = [token.name for token in self.tokens]
        return "\n".join(
            [
                f"%import error_attributes ({', '.join(used)})",
                "start: " + " ".join(names),
                *(f"{token.name}: {token.definition()}" for token in self.tokens),
            ]
        )


@cache
def record_rule(fmt: str, datefmt: str | None) -> RecordRule:
    """The rule for records of ``fmt`` with ``datefmt`` (LayoutError when it cannot be read)."""
    segments = list(parse_logging_format(fmt, datefmt))
    last = segments[-1]
    ends_with_message = isinstance(last, Value) and last.attribute == "message"
    if not ends_with_message:  # a message with more after it is the shortest text before it
        segments = [
            Value(s.attribute, "MESSAGE_PART", s.shown)
            if isinstance(s, Value) and s.attribute == "message"
            else s
            for s in segments
        ]
    groups: list[tuple[list[Value], str]] = []
    pending: list[Value] = []
    for segment in segments:
        if isinstance(segment, Literal):
            groups.append((pending, segment.text))
            pending = []
        else:
            pending.append(segment)
    if pending or not groups:
        groups.append((pending, ""))
    if ends_with_message:
        values, literal = groups[-1]
        groups[-1] = (values, literal + END)
    tokens = tuple(
        Token(
            f"T{index}",
            tuple(values),
            literal,
            "".join(value.shown for value in values) + literal.removesuffix(END),
            rest=not ends_with_message and index == len(groups) - 1,
        )
        for index, (values, literal) in enumerate(groups)
    )
    lookaheads = tuple(_lookahead(token, tokens[index + 1 :]) for index, token in enumerate(tokens))
    return RecordRule(fmt, datefmt, tokens, not ends_with_message, lookaheads)


def _lookahead(token: Token, following: tuple[Token, ...]) -> str | None:
    """What must follow an open-ended token: the tokens after it up to and including the next
    one of a fixed shape, never into free text (a message, TEXT)."""
    if not token.open_ended or token.literal.endswith(END) or token.rest:
        return None
    spanned = []
    for after in following:
        if any(value.terminal in FREE_TEXT for value in after.values):
            break
        spanned.append(_ungrouped(after.regex(FAST_END)))
        if not after.open_ended:  # (the last token is anchored at the end: END or REST)
            break
    return "".join(spanned) or None


@cache
def lark_parser(fmt: str, datefmt: str | None) -> Lark:
    """LALR parser for the assembled rule, with the fast path's lookaheads."""
    from lark import Lark
    from lark.lexer import PatternRE

    rule = record_rule(fmt, datefmt)
    aheads = {token.name: ahead for token, ahead in zip(rule.tokens, rule.lookaheads, strict=True)}

    def add_lookahead(terminal: TerminalDef) -> None:
        ahead = aheads.get(terminal.name)
        if ahead is not None:
            regex = f"{terminal.pattern.to_regexp()}(?={ahead})"
            terminal.pattern = PatternRE(regex, terminal.pattern.flags)

    return Lark(
        rule.lark_source(),
        parser="lalr",
        lexer="contextual",
        import_paths=[str(grammar_dir())],
        edit_terminals=add_lookahead,
    )


def _atomic(regex: str, ahead: str | None) -> str:
    return f"(?>{regex}(?={ahead}))" if ahead is not None else f"(?>{regex})"


def _value_regex(value: Value) -> str:
    pattern = _date_regex(value.date) if value.date else terminal_patterns()[value.terminal]
    before = "[ ]*" if value.pad_before else ""
    after = "[ ]*" if value.pad_after else ""
    return f"{before}({pattern}){after}"


def _date_regex(parts: tuple[str, ...]) -> str:
    patterns = terminal_patterns()
    return "".join(
        f"(?:{patterns[DIRECTIVE_TERMINALS[part[1]]]})" if is_directive(part) else re.escape(part)
        for part in parts
    )


def date_regex(parts: tuple[str, ...]) -> str:
    """The asctime of a datefmt's parts, a group per directive (to read the time from)."""
    patterns = terminal_patterns()
    return "".join(
        f"({patterns[DIRECTIVE_TERMINALS[part[1]]]})" if is_directive(part) else re.escape(part)
        for part in parts
    )


def _value_definition(value: Value) -> list[str]:
    if value.date:
        parts = [
            DIRECTIVE_TERMINALS[part[1]] if is_directive(part) else _lark_string(part)
            for part in value.date
        ]
    else:
        parts = [value.terminal]
    if value.pad_before:
        parts.insert(0, "/[ ]*/")
    if value.pad_after:
        parts.append("/[ ]*/")
    return parts


def _literal_regex(literal: str, end: str) -> str:
    if literal.endswith(END):
        return re.escape(literal.removesuffix(END)) + end
    return re.escape(literal)


def _lark_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


_GROUP = re.compile(r"(\\.)|\((?!\?)")


def _ungrouped(regex: str) -> str:
    """``regex`` with its capturing groups made non-capturing (for lookaheads and starts)."""
    return _GROUP.sub(lambda m: m.group(1) or "(?:", regex)

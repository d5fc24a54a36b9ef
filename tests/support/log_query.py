"""A small evaluator of the Datadog log search syntax the Gunicorn saved views use.

A query is terms separated by spaces, all of which must hold (implicit AND). A term is
``@attribute.path:value`` where the value is a numeric range ``[low TO high]`` (inclusive) or a
string in which ``*`` matches any run of characters, compared case-sensitively with the
attribute's value as Datadog compares attribute values. An event without the attribute does not
match. Only what the saved views need: no OR, no negation, no free text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

Event = dict[str, Any]

_TERM = re.compile(r"@(?P<path>[\w.]+):(?P<value>\[[^\]]*\]|\S+)")
_RANGE = re.compile(r"\[(?P<low>-?\d+(?:\.\d+)?) TO (?P<high>-?\d+(?:\.\d+)?)\]")


def attribute(event: Event, path: str) -> Any:
    """The value at a dotted path (None when absent)."""
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _term(path: str, value: str) -> Callable[[Event], bool]:
    found = _RANGE.fullmatch(value)
    if found:
        low, high = float(found["low"]), float(found["high"])

        def in_range(event: Event) -> bool:
            got = attribute(event, path)
            return (
                isinstance(got, (int, float)) and not isinstance(got, bool) and low <= got <= high
            )

        return in_range
    pattern = re.compile(".*".join(map(re.escape, value.split("*"))), re.DOTALL)

    def matches(event: Event) -> bool:
        got = attribute(event, path)
        return got is not None and pattern.fullmatch(str(got)) is not None

    return matches


def compile_query(query: str) -> Callable[[Event], bool]:
    """The predicate ``query`` selects events by."""
    terms = [_term(m["path"], m["value"]) for m in _TERM.finditer(query)]
    if " ".join(m.group() for m in _TERM.finditer(query)) != " ".join(query.split()):
        raise ValueError(f"unsupported query: {query!r}")
    return lambda event: all(term(event) for term in terms)


def select(query: str, events: Iterable[Event]) -> list[Event]:
    predicate = compile_query(query)
    return [event for event in events if predicate(event)]


def count_by(query: str, events: Iterable[Event], path: str) -> Counter[Any]:
    """The events ``query`` selects, counted by the value at ``path`` (a view's group-by)."""
    return Counter(attribute(event, path) for event in select(query, events))

"""The fast path for error records: the record rules of grammars/error_record.lark as regexes.

Each alternative of ``start`` (``gunicorn_record``, ``app_record``) is a sequence of terminals;
its regex is those terminals' own patterns, read from the compiled Lark grammar, one atomic group
each, in order. A record they do not match goes to the Lark parser, which says why. What is read
from the grammar is cached on disk (see logpipe.parsing.disk_cache), so this needs Lark only once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from logpipe.parsing.disk_cache import cached
from logpipe.parsing.error.grammar import error_parser
from logpipe.parsing.grammars import grammar_text


@dataclass(frozen=True)
class RecordRule:
    """One record layout: its rule name and the regex with a group for each of its terminals."""

    name: str
    pattern: re.Pattern[str]


@cache
def record_rules() -> tuple[RecordRule, ...]:
    """The record layouts of grammars/error_record.lark, in the order ``start`` lists them."""
    source = grammar_text("error_record")
    layouts = cached("error_record", source, lambda: _compile_layouts(source))
    return tuple(
        RecordRule(name, re.compile("".join(f"(?>({p}))" for p in patterns)))
        for name, _terminals, patterns in layouts
    )


def _compile_layouts(source: str) -> list[tuple[str, list[str], list[str]]]:
    """(rule name, its terminals, their regexes) for each alternative of ``start``."""
    lark = error_parser()
    expansions = {rule.origin.name: rule.expansion for rule in lark.rules}
    layouts = []
    for rule in lark.rules:
        if rule.origin.name == "start":
            name = rule.expansion[0].name
            terminals = [symbol.name for symbol in expansions[name]]
            patterns = [lark.get_terminal(t).pattern.to_regexp() for t in terminals]
            layouts.append((name, terminals, patterns))
    return layouts

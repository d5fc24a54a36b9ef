"""The fast path for error records: the record rules of grammars/error_record.lark as regexes.

Each alternative of ``start`` (``gunicorn_record``, ``app_record``) is a sequence of terminals;
its regex is those terminals' own patterns, read from the compiled Lark grammar, one atomic group
each, in order. A record they do not match goes to the Lark parser, which says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from lark import Lark


@dataclass(frozen=True)
class RecordRule:
    """One record layout: its rule name, terminal names and the regex with a group for each."""

    name: str
    terminals: tuple[str, ...]
    pattern: re.Pattern[str]


@cache
def record_rules(lark: Lark) -> tuple[RecordRule, ...]:
    """The record layouts of an error-record grammar, in the order ``start`` lists them."""
    expansions = {rule.origin.name: rule.expansion for rule in lark.rules}
    layouts = [rule.expansion[0].name for rule in lark.rules if rule.origin.name == "start"]
    rules = []
    for layout in layouts:
        terminals = tuple(symbol.name for symbol in expansions[layout])
        regex = "".join(
            f"(?>({lark.get_terminal(name).pattern.to_regexp()}))" for name in terminals
        )
        rules.append(RecordRule(layout, terminals, re.compile(regex)))
    return tuple(rules)

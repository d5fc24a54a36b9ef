"""The Lark grammar of error-log records (grammars/error_record.lark), and reading its trees.

Lark is imported only when the grammar is first needed: the fast path reads what it needs of
the grammar from the disk cache (logpipe.parsing.error.fast).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from logpipe.parsing.grammars import grammar_text

if TYPE_CHECKING:
    from lark import Lark, Token, Tree


@cache
def error_parser() -> Lark:
    """LALR parser for grammars/error_record.lark."""
    from lark import Lark

    return Lark(grammar_text("error_record"), parser="lalr", lexer="contextual")


def record_layout(tree: Tree[Token]) -> tuple[str, list[str]]:
    """The layout of a parsed record (the one alternative under ``start``: ``gunicorn_record``,
    ``app_record``) and the text of each of its tokens."""
    from lark import Token, Tree

    (branch,) = tree.children
    if not isinstance(branch, Tree):
        raise TypeError("start must have one rule as its child")
    return str(branch.data), [str(child) for child in branch.children if isinstance(child, Token)]


def describe(terminal: str) -> str:
    """What a terminal of the grammar looks like, for the reason a record does not parse."""
    return {
        "GUNICORN_TIME": "[YYYY-MM-DD HH:MM:SS +ZZZZ]",
        "APP_TIME": "[YYYY-MM-DD HH:MM:SS,mmm]",
        "PROCESS": "[pid]",
        "LEVEL": "[LEVEL]",
        "APP_LEVEL": "LEVEL",
    }.get(terminal, terminal)

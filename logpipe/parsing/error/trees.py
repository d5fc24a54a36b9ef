"""Reading Lark parse trees of the shape the grammars here produce."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lark import Token, Tree


def branch_tokens(tree: Tree[Token]) -> list[Token]:
    """The tokens of the one alternative under ``start`` (``start: format_0 | format_1 ...``)."""
    from lark import Token, Tree

    (branch,) = tree.children
    if not isinstance(branch, Tree):
        raise TypeError("start must have one rule as its child")
    return [child for child in branch.children if isinstance(child, Token)]

"""The fast path for access lines: anchored regexes compiled from the assembled grammar.

Each format's token sequence (``AccessGrammar.sequences``, the rules of the Lark grammar) becomes
one regex: every token is its atom terminals as groups, its literal and its lookahead, wrapped in
an atomic group ``(?>...)``. Lark's lexer matches each token once at its position and never goes
back into it; the atomic group does the same, so the regex accepts exactly the lines the Lark
parser accepts and splits them into the same values. (The differential property test in
tests/unit/test_fast_path.py checks this on random formats and values.) Atomic groups also keep
matching linear: nothing is retried across tokens.

Two compilations per format:

* ``exact``: the terminals as written in grammars/access_atoms.lark;
* ``plain``: a terminal X with a ``PLAIN_X`` form in the grammar (the same language restricted
  to backslash-free values) uses that form, made possessive when it is lazy and the token's
  literal starts with ``"`` (such a value cannot contain ``"``, so it can only end at the first
  one). Where it matches, it splits the line as ``exact`` does; lines with a backslash inside a
  field need ``exact``.

A line neither regex accepts goes to the Lark parser, which explains why it fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from logpipe.parsing.access_grammar import TokenSpec, assemble, atom_patterns, literal_regex


@dataclass(frozen=True)
class FormatMatcher:
    """The two compiled regexes of one format (one group per atom, in line order)."""

    exact: re.Pattern[str]
    plain: re.Pattern[str]


Matcher = Callable[[str], "re.Match[str] | None"]


@dataclass(frozen=True)
class FastAccess:
    """Match access lines of any of the grammar's formats (first format that matches wins)."""

    matchers: tuple[FormatMatcher, ...]

    @property
    def plain(self) -> tuple[tuple[int, Matcher], ...]:
        """(format index, match function) of the plain regexes, in format order."""
        return tuple((index, matcher.plain.match) for index, matcher in enumerate(self.matchers))

    @property
    def exact(self) -> tuple[tuple[int, Matcher], ...]:
        """(format index, match function) of the exact regexes, in format order."""
        return tuple((index, matcher.exact.match) for index, matcher in enumerate(self.matchers))

    def match(self, text: str) -> tuple[int, tuple[str, ...]] | None:
        """(format index, raw atom values) of ``text`` (no line ending), or None."""
        tiers = (self.plain, self.exact) if "\\" in text else (self.plain,)
        for tier in tiers:
            for index, match in tier:
                found = match(text)
                if found is not None:
                    return index, found.groups()
        return None


@cache
def fast_access(formats: tuple[str, ...]) -> FastAccess:
    """The fast path for ``formats`` (built once per process and format set)."""
    grammar = assemble(formats)
    return FastAccess(tuple(_matcher(sequence) for sequence in grammar.sequences))


def _matcher(sequence: tuple[TokenSpec, ...]) -> FormatMatcher:
    exact = "".join(_token_regex(spec, plain=False) for spec in sequence)
    plain = "".join(_token_regex(spec, plain=True) for spec in sequence)
    return FormatMatcher(re.compile(exact), re.compile(plain))


_LINE_END = r"\Z"


def _token_regex(spec: TokenSpec, *, plain: bool) -> str:
    patterns = atom_patterns()
    parts = []
    for index, atom in enumerate(spec.atoms):
        pattern = patterns[atom.terminal]
        if plain and f"PLAIN_{atom.terminal}" in patterns:
            pattern = patterns[f"PLAIN_{atom.terminal}"]
            last = index == len(spec.atoms) - 1
            if last and pattern.endswith("*?") and spec.literal.startswith('"'):
                pattern = pattern.removesuffix("*?") + "*+"
        parts.append(f"({pattern})")
    # Lark sees the line with the END sentinel; here the line has none, so END is its end.
    parts.append(literal_regex(spec.literal, _LINE_END))
    if spec.ahead:
        parts.append(f"(?={spec.lookahead_regex(_LINE_END)})")
    return "(?>" + "".join(parts) + ")"

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
* ``plain``: for lines without a backslash (nearly all), free-text atoms use PLAIN_TEXT, the same
  language restricted to backslash-free values, made possessive where the token's literal starts
  with ``"`` (such a value cannot contain ``"``, so it can only end at the first one).

A line neither regex accepts goes to the Lark parser, which explains why it fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from logpipe.parsing.access_grammar import END, AccessGrammar, TokenSpec, assemble, atom_patterns


@dataclass(frozen=True)
class FormatMatcher:
    """The two compiled regexes of one format and the atom key of each group."""

    keys: tuple[str, ...]
    exact: re.Pattern[str]
    plain: re.Pattern[str]


@dataclass(frozen=True)
class FastAccess:
    """Match access lines of any of the grammar's formats (first format that matches wins)."""

    matchers: tuple[FormatMatcher, ...]

    def values(self, text: str) -> dict[str, str] | None:
        """Raw atom values of ``text`` (no line ending), or None when no format matches."""
        plain = "\\" not in text
        line = text + END
        for matcher in self.matchers:
            found = (matcher.plain if plain else matcher.exact).match(line)
            if found is not None:
                return dict(zip(matcher.keys, found.groups(), strict=True))
        return None


@cache
def fast_access(formats: tuple[str, ...]) -> FastAccess:
    """The fast path for ``formats`` (built once per process and format set)."""
    grammar = assemble(formats)
    return FastAccess(tuple(_matcher(grammar, sequence) for sequence in grammar.sequences))


def _matcher(grammar: AccessGrammar, sequence: tuple[TokenSpec, ...]) -> FormatMatcher:
    keys = tuple(atom.key for spec in sequence for atom in spec.atoms)
    exact = "".join(_token_regex(spec, plain=False) for spec in sequence)
    plain = "".join(_token_regex(spec, plain=True) for spec in sequence)
    return FormatMatcher(keys, re.compile(exact + r"\Z"), re.compile(plain + r"\Z"))


def _token_regex(spec: TokenSpec, *, plain: bool) -> str:
    patterns = atom_patterns()
    parts = []
    for index, atom in enumerate(spec.atoms):
        pattern = patterns[atom.terminal]
        if plain and atom.free_text:
            pattern = patterns["PLAIN_TEXT"]
            if index == len(spec.atoms) - 1 and spec.literal.startswith('"'):
                pattern = pattern.removesuffix("*?") + "*+"
        parts.append(f"({pattern})")
    parts.append(re.escape(spec.literal))
    if spec.lookahead:
        parts.append(f"(?={spec.lookahead})")
    return "(?>" + "".join(parts) + ")"

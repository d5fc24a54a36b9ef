r"""The fast path for access lines: anchored regexes compiled from the assembled grammar.

Each format's token sequence (``AccessGrammar.sequences``, the rules of the Lark grammar) becomes
one regex: every token is its atom terminals as groups, its literal and its lookahead, wrapped in
an atomic group ``(?>...)``. Lark's lexer matches each token once at its position and never goes
back into it; the atomic group does the same, so the regex accepts exactly the lines the Lark
parser accepts and splits them into the same values. (The differential property test in
tests/unit/test_fast_path.py checks this on random formats and values.) Atomic groups also keep
matching linear: nothing is retried across tokens.

Three compilations per format:

* ``exact``: the terminals as written in grammars/access_atoms.lark, for lines with a backslash;
* ``plain``: a terminal X with a ``PLAIN_X`` form in the grammar (the same language restricted
  to backslash-free values) uses that form, made possessive when it is lazy and the token's
  literal starts with ``"`` (such a value cannot contain ``"``, so it can only end at the first
  one). Where it matches, it splits the line as ``exact`` does;
* ``ascii``: ``plain`` for the common line, ASCII without a backslash or line break, where it
  can be cheaper for Python's regex engine with the same outcome:

  - compiled with ``re.ASCII`` (``\d`` and ``\s`` mean the same on ASCII text, and are
    checked without Unicode tables);
  - a class excluding ``"``, ``\`` and ``\n`` is ``[^"]`` on such lines (and ``[^ \n]`` is
    ``[^ ]``), which the engine scans as a single-character negation;
  - a lookahead is cut to its first character when that is a fixed literal (``(?=\[)``
    instead of a whole ``%(t)s``). A lazy field then ends at the first place the cut
    lookahead allows. If the rest of the regex matches from there, the whole lookahead held
    there too (it spans exactly the tokens that follow, whose patterns are no wider), so that
    is where the full lookahead would have ended it. If the rest fails, the field may hold
    the separator and that character (a user name `` [``), so the same format's ``plain``
    regex is tried next: the tier answers for every line ``plain`` answers for.

A line no regex of its tier accepts goes to the Lark parser, which explains why it fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from logpipe.parsing.access.grammar import TokenSpec, assemble, atom_patterns, literal_regex


@dataclass(frozen=True)
class FormatMatcher:
    """The compiled regexes of one format (one group per atom, in line order)."""

    exact: re.Pattern[str]
    plain: re.Pattern[str]
    ascii: re.Pattern[str]


Matcher = Callable[[str], "re.Match[str] | None"]


Tier = tuple[tuple[int, Matcher], ...]  # (format index, match function), in format order
EXACT, PLAIN, ASCII = range(3)  # the tiers (see above), as indexes into FastAccess.tiers


def tier_of(text: str) -> int:
    """Which tier answers for ``text``: EXACT if it has a backslash, else ASCII if it is ASCII
    on one line, else PLAIN."""
    if "\\" in text:
        return EXACT
    if text.isascii() and "\n" not in text:
        return ASCII
    return PLAIN


class FastAccess:
    """Match access lines of any of the grammar's formats (first format that matches wins)."""

    def __init__(self, matchers: tuple[FormatMatcher, ...]) -> None:
        exact = tuple((i, m.exact.match) for i, m in enumerate(matchers))
        plain = tuple((i, m.plain.match) for i, m in enumerate(matchers))
        ascii_then_plain = tuple(  # each format's ascii regex, then its plain one (see above)
            pair
            for i, m in enumerate(matchers)
            for pair in ((i, m.ascii.match), (i, m.plain.match))
        )
        self.tiers: tuple[Tier, Tier, Tier] = (exact, plain, ascii_then_plain)

    def match(self, text: str) -> tuple[int, tuple[str, ...]] | None:
        """(format index, raw atom values) of ``text`` (no line ending), or None."""
        for index, match in self.tiers[tier_of(text)]:
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
    exact = "".join(_token_regex(spec, "exact") for spec in sequence)
    plain = "".join(_token_regex(spec, "plain") for spec in sequence)
    ascii_only = "".join(_token_regex(spec, "ascii") for spec in sequence)
    return FormatMatcher(re.compile(exact), re.compile(plain), re.compile(ascii_only, re.ASCII))


_LINE_END = r"\Z"
# Classes excluding a character and also backslash and/or line break, as the grammar writes
# them, to the single-character negation they mean on an ASCII line (see "ascii" above).
_SINGLE_NEGATIONS = {'[^"\\\\\n]': '[^"]', "[^ \n]": "[^ ]"}


def _token_regex(spec: TokenSpec, tier: str) -> str:
    patterns = atom_patterns()
    parts = []
    for index, atom in enumerate(spec.atoms):
        pattern = patterns[atom.terminal]
        if tier != "exact" and f"PLAIN_{atom.terminal}" in patterns:
            pattern = patterns[f"PLAIN_{atom.terminal}"]
            last = index == len(spec.atoms) - 1
            if last and pattern.endswith("*?") and spec.literal.startswith('"'):
                pattern = pattern.removesuffix("*?") + "*+"
        if tier == "ascii":
            for written, single in _SINGLE_NEGATIONS.items():
                pattern = pattern.replace(written, single)
        parts.append(f"({pattern})")
    # Lark sees the line with the END sentinel; here the line has none, so END is its end.
    parts.append(literal_regex(spec.literal, _LINE_END))
    if spec.ahead:
        ahead = spec.lookahead_regex(_LINE_END)
        if tier == "ascii":
            ahead = _lead(ahead) or ahead
        parts.append(f"(?={ahead})")
    return "(?>" + "".join(parts) + ")"


def _lead(regex: str) -> str | None:
    """The first character of ``regex``'s matches as a regex, when that is one fixed
    character (an escaped punctuation mark or a plain letter, digit or space, not under a
    quantifier or alternation); else None."""
    if "|" in regex:
        return None
    if regex[:1] == "\\" and regex[1:2] and not regex[1].isalnum():
        lead, rest = regex[:2], regex[2:]
    elif regex[:1].isalnum() or regex[:1] == " ":
        lead, rest = regex[:1], regex[1:]
    else:
        return None
    return None if rest[:1] in ("*", "+", "?", "{") else lead

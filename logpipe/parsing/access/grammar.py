"""Assemble the Lark grammar for gunicorn access-log formats from the per-atom terminals.

A format such as ``%(h)s %(l)s %(u)s %(t)s "%(r)s" ...`` becomes a sequence of tokens. Each token
is one atom's value followed by the literal text the format prints after it (separators folded
into the terminals: no ``%ignore``, no zero-width tokens). A line is parsed with a ``"\\n"``
sentinel appended, so the last atom is followed by a literal too.

Where a value ends is decided by field position, not by escape rules: an open-ended value (free
text, a token without spaces) is matched lazily and must be followed by its literal *and* by what
the format prints next (``(?=...)``), up to the first atom of a distinctive fixed shape (a time,
a status, a protocol...) and never into free text. So a user agent ending in a backslash, a user
name with spaces or a decoded path with spaces still split where gunicorn put the separators.
Lookaheads span only fixed-shape atoms, so lexing stays linear.

Several formats can be accepted at once (``start: format_0 | format_1 | ...``); tokens that are
the same in several formats are one terminal, so their common prefix is parsed once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from logpipe.parsing.access.format import Atom, Literal, Segment, parse_format
from logpipe.parsing.disk_cache import cached
from logpipe.parsing.grammars import grammar_dir, grammar_text

if TYPE_CHECKING:
    from lark import Lark
    from lark.lexer import TerminalDef

END = "\n"  # sentinel appended to every line before parsing

Group = tuple[tuple[Atom, ...], str]  # atoms, then the literal printed after them


@dataclass(frozen=True)
class TokenSpec:
    """One terminal of an assembled grammar: atom values, then a literal."""

    name: str
    atoms: tuple[Atom, ...]  # empty for a literal that starts a format
    literal: str  # printed after the atoms (END for the last one)
    pattern: str  # Python regex for the token's text, one group per atom
    ahead: tuple[Group, ...]  # what must follow the token (see _ahead); () for nothing

    @property
    def lookahead(self) -> str:
        """Regex of what must follow the token, in Lark's terms (END is the sentinel)."""
        return self.lookahead_regex(re.escape(END))

    def lookahead_regex(self, end: str) -> str:
        """Regex of what must follow the token, with ``end`` matching the end of the line."""
        patterns = atom_patterns()
        return "".join(
            "".join(patterns[atom.terminal] for atom in atoms) + literal_regex(literal, end)
            for atoms, literal in self.ahead
        )

    def values(self, text: str) -> tuple[str, ...]:
        """Split the token's text into its atom values."""
        if len(self.atoms) == 1:
            return (text[: len(text) - len(self.literal)],)
        match = _compiled(self.pattern).fullmatch(text)
        return match.groups() if match else ()


@dataclass(frozen=True)
class AccessGrammar:
    """The assembled grammar for one or more formats, and how its tokens map to atoms."""

    formats: tuple[str, ...]
    lark_source: str
    tokens: dict[str, TokenSpec]
    sequences: tuple[tuple[TokenSpec, ...], ...]  # per format, in order

    @property
    def keys(self) -> tuple[tuple[str, ...], ...]:
        """Per format, the atom key of each value, in line order."""
        return tuple(
            tuple(atom.key for spec in sequence for atom in spec.atoms)
            for sequence in self.sequences
        )

    @property
    def atoms(self) -> tuple[Atom, ...]:
        """Every atom of every accepted format (first occurrence order)."""
        seen: dict[str, Atom] = {}
        for sequence in self.sequences:
            for spec in sequence:
                for atom in spec.atoms:
                    seen.setdefault(atom.key, atom)
        return tuple(seen.values())


@cache
def atom_patterns() -> dict[str, str]:
    """Python regex of every terminal in grammars/access_atoms.lark, by name."""
    source = grammar_text("access_atoms")
    patterns: dict[str, str] = cached("access_atoms", source, lambda: _compile_atoms(source))
    return patterns


def _compile_atoms(source: str) -> dict[str, str]:
    from lark.load_grammar import load_grammar

    # Compiled without a lexer: alone, TEXT and NOSPACE may be empty, which Lark's lexers refuse.
    grammar, _ = load_grammar(source, "access_atoms", [], False)  # type: ignore[no-untyped-call]
    terminals, _, _ = grammar.compile(["atom_value"], "*")
    return {terminal.name: terminal.pattern.to_regexp() for terminal in terminals}


@cache
def assemble(formats: tuple[str, ...]) -> AccessGrammar:
    """Build the grammar accepting any of ``formats`` (raises FormatError on a bad format)."""
    tokens: dict[str, TokenSpec] = {}
    names: dict[tuple[str, tuple[Group, ...], tuple[str, ...]], str] = {}  # by definition,
    # lookahead span and atoms
    sequences = []
    lines = []
    for index, fmt in enumerate(formats):
        specs = []
        for atoms, literal, ahead in _tokenize(parse_format(fmt)):
            definition = _definition(atoms, literal)
            key = (definition, ahead, tuple(atom.key for atom in atoms))
            name = names.setdefault(key, f"T{len(names)}")
            spec = TokenSpec(name, atoms, literal, _pattern(atoms, literal), ahead)
            tokens.setdefault(name, spec)
            specs.append(spec)
        sequences.append(tuple(specs))
        lines.append(f"format_{index}: " + " ".join(spec.name for spec in specs))
    used = sorted({atom.terminal for spec in tokens.values() for atom in spec.atoms})
    source = "\n".join(
        [
            f"%import access_atoms ({', '.join(used)})" if used else "",
            "start: " + " | ".join(f"format_{index}" for index in range(len(formats))),
            *lines,
            *(f"{name}: {definition}" for (definition, _, _), name in names.items()),
        ]
    )
    return AccessGrammar(tuple(formats), source, tokens, tuple(sequences))


@cache
def lark_parser(formats: tuple[str, ...], *, lookahead: bool = True) -> Lark:
    """LALR parser (contextual lexer) for the assembled grammar.

    ``lookahead=False`` gives the same grammar without the position lookaheads: it accepts fewer
    lines, but where a line is wrong it fails at the field that is wrong, not at the free-text
    field before it, so it serves to explain failures.
    """
    from lark import Lark
    from lark.lexer import PatternRE

    grammar = assemble(formats)

    def add_lookahead(terminal: TerminalDef) -> None:
        spec = grammar.tokens.get(terminal.name)
        if lookahead and spec and spec.lookahead:
            regex = f"{terminal.pattern.to_regexp()}(?={spec.lookahead})"
            terminal.pattern = PatternRE(regex, terminal.pattern.flags)

    return Lark(
        grammar.lark_source,
        parser="lalr",
        lexer="contextual",
        import_paths=[str(grammar_dir())],
        edit_terminals=add_lookahead,
    )


def _tokenize(
    segments: Sequence[Segment],
) -> list[tuple[tuple[Atom, ...], str, tuple[Group, ...]]]:
    """Group segments into (atoms, following literal, what must follow) triples."""
    groups: list[Group] = []
    pending: list[Atom] = []
    for segment in segments:
        if isinstance(segment, Literal):
            groups.append((tuple(pending), segment.text))
            pending = []
        else:
            pending.append(segment)
    if pending:
        groups.append((tuple(pending), ""))
    atoms, literal = groups[-1]
    groups[-1] = (atoms, literal + END)
    result = []
    for index, (atoms, literal) in enumerate(groups):
        open_ended = any(atom.open_ended for atom in atoms)
        ahead = _ahead(groups[index + 1 :]) if open_ended else ()
        result.append((atoms, literal, ahead))
    return result


def _ahead(following: Sequence[Group]) -> tuple[Group, ...]:
    """What a token's lookahead spans: the groups after it up to and including the next anchor
    atom, but never into a free-text atom."""
    spanned: list[Group] = []
    for atoms, literal in following:
        if any(atom.free_text for atom in atoms):
            break
        spanned.append((atoms, literal))
        if any(atom.anchor for atom in atoms):
            break
    return tuple(spanned)


def literal_regex(literal: str, end: str) -> str:
    """Regex of a format literal, with ``end`` for the END sentinel that closes the last one."""
    if literal.endswith(END):
        return re.escape(literal.removesuffix(END)) + end
    return re.escape(literal)


def _definition(atoms: tuple[Atom, ...], literal: str) -> str:
    """Lark definition of a token: its atom terminals, then its literal."""
    parts = [atom.terminal for atom in atoms]
    if literal:
        parts.append(_lark_string(literal))
    return " ".join(parts)


def _pattern(atoms: tuple[Atom, ...], literal: str) -> str:
    patterns = atom_patterns()
    groups = "".join(f"({patterns[atom.terminal]})" for atom in atoms)
    return groups + re.escape(literal)


def _lark_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)

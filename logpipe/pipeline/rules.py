"""Processing rules, as the Datadog Agent's ``log_processing_rules`` have them.

``exclude_at_match`` drops a line (access) or a whole record (error) the pattern matches
anywhere in; ``include_at_match`` keeps only those it matches; ``mask_sequences`` replaces every
match with ``replace_placeholder`` (``$1``, ``${name}`` name groups, as in the Agent's Go
``ReplaceAll``). Rules run in their order, each on what the ones before it left, before events
are built: the parsers see the masked text, and excluded lines are never parsed.

Rules are applied in the batch route (``pipeline.batch``), so ``follow``, ``parse`` and replay
take them alike. A dropped line needs no delivery: the end offset of a line or record that is
dropped is carried by the kept one before it (or by the batch end), so checkpoints and ledgers
cover it once what comes before is delivered (``Skips`` does this for a batch dropped whole).

Patterns run on RE2 (``google-re2``), linear in the text whatever the pattern; without it, on
``re`` after refusing what can backtrack without bound (backreferences, lookarounds, a
quantifier inside a quantifier; RE2 does not have the first two either).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from logpipe.event import Token
from logpipe.lines import LineBatch
from logpipe.problems import SetupError
from logpipe.sources.multiline import Record

try:  # RE2: linear time on any input
    import re2 as _re2

    _OPTIONS: Any = _re2.Options()
    _OPTIONS.log_errors = False  # an error is said once, in our words, not logged by RE2
except ImportError:  # pragma: no cover - google-re2 is a dependency
    _re2 = None

ENGINE = "re2" if _re2 is not None else "re"

EXCLUDE = "exclude_at_match"
INCLUDE = "include_at_match"
MASK = "mask_sequences"
TYPES = (EXCLUDE, INCLUDE, MASK)
KINDS = ("access", "error", "both")


class RuleError(SetupError):
    """A processing rule that cannot be used."""


@dataclass(frozen=True)
class RuleSpec:
    """One rule as written (the Agent's names; ``applies_to`` and ``path`` are logpipe's)."""

    type: str
    pattern: str
    name: str = ""
    replace_placeholder: str = ""
    applies_to: str = "both"  # access | error | both
    path: str | None = None  # a glob of followed paths; None: every file

    def label(self) -> str:
        return f"{self.type} rule {self.name!r}" if self.name else f"{self.type} rule"


class _Compiled:
    __slots__ = ("kind", "replace", "search", "spec", "subn")

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.kind = spec.type
        if any(char in spec.replace_placeholder for char in "\n\r\x00"):
            raise RuleError(f"{spec.label()}: the replace_placeholder has a line break or NUL")
        regex = compile_pattern(spec.pattern, spec.label())
        self.search: Callable[[str], object] = regex.search
        self.subn: Callable[..., tuple[str, int]] = regex.subn
        self.replace = _replacement(spec.replace_placeholder)


@dataclass
class Counts:
    """Lines (or records) dropped by exclude/include rules, and lines changed by masks."""

    excluded: int = 0
    masked: int = 0


class RuleSet:
    """The rules for one kind of input (and one path), in order."""

    def __init__(self, rules: Sequence[_Compiled], counts: Counts) -> None:
        self._rules = tuple(rules)
        self.counts = counts

    def apply(self, text: str) -> str | None:
        """``text`` after the rules (masked), or None when a rule drops it (counted)."""
        masked = False
        for rule in self._rules:
            if rule.kind == MASK:
                text, found = rule.subn(rule.replace, text)
                masked = masked or found > 0
            elif (rule.search(text) is None) == (rule.kind == EXCLUDE):
                continue  # exclude: no match; include: a match
            else:
                self.counts.excluded += 1
                return None
        if masked:
            self.counts.masked += 1
        return text

    def lines(self, batch: LineBatch) -> Iterator[tuple[str | bytes, int, int, bool]]:
        """The kept non-empty lines of ``batch``: (data, offset, end, truncated). In a batch
        decoded whole, data is the line's text (masked or not: clean, for ``parse_text``);
        otherwise bytes, to be repaired by ``parse`` (a masked line re-encoded). The end of a
        kept line covers the dropped lines after it, the last one's the batch's end."""
        texts = batch.texts()
        kept: tuple[str | bytes, int, int, bool] | None = None
        if texts is not None:
            offset = batch.offset
            items: Iterable[tuple[str | bytes, str, int, int, bool]] = (
                (text, text, offset, (offset := offset + len(text.encode()) + 1), False)
                for text in texts
            )
        else:
            items = (
                (line.data, line.data.decode("utf-8", "replace"), *line[:2], line.truncated)
                for line in batch
            )
        for data, text, start, end, truncated in items:
            if not text:
                continue
            after = self.apply(text)
            if after is None:
                if kept is not None:
                    kept = (kept[0], kept[1], end, kept[3])
                continue
            if kept is not None:
                yield kept
            if after is not text:
                data = after if texts is not None else after.encode()
            kept = (data, start, end, truncated)
        if kept is not None:
            yield kept[0], kept[1], max(kept[2], batch.end), kept[3]

    def records(self, records: Iterable[Record[bytes]]) -> Iterator[Record[bytes]]:
        """The kept records, a masked one holding its new text; the end of a kept record
        covers the dropped ones after it."""
        kept: Record[bytes] | None = None
        for record in records:
            text = record.text.decode("utf-8", "replace")
            after = self.apply(text)
            if after is None:
                if kept is not None:
                    kept = kept._replace(end=record.end)
                continue
            if kept is not None:
                yield kept
            kept = record if after is text else record._replace(text=after.encode())
        if kept is not None:
            yield kept


@dataclass
class Rules:
    """Every rule, compiled once; ``for_input`` picks those of a kind of input and a path."""

    specs: tuple[RuleSpec, ...]
    counts: Counts = field(default_factory=Counts)
    _compiled: tuple[_Compiled, ...] = field(init=False, repr=False)
    _sets: dict[tuple[str, str | None], RuleSet | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled = tuple(_Compiled(spec) for spec in self.specs)
        self._sets = {}

    def __reduce__(self) -> tuple[type[Rules], tuple[tuple[RuleSpec, ...]]]:
        """Pickled as the specs (compiled again in a worker process)."""
        return Rules, (self.specs,)

    def for_input(self, kind: str, path: str | None = None) -> RuleSet | None:
        """The rules for ``kind`` ("access" or "error") read from ``path``; None when none
        apply (the batch route then takes its fast path)."""
        found = self._sets.get((kind, path), False)
        if found is not False:
            return found  # type: ignore[return-value]
        chosen = [
            rule
            for rule in self._compiled
            if rule.spec.applies_to in (kind, "both")
            and (rule.spec.path is None or (path is not None and _matches(path, rule.spec.path)))
        ]
        ruleset = RuleSet(chosen, self.counts) if chosen else None
        self._sets[(kind, path)] = ruleset
        return ruleset


def _matches(path: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern)


class Skips:
    """Follow mode: a batch whose lines were all dropped sends nothing, so no token of the
    sink's covers it. Its end is acknowledged once everything sent before it from its file is
    (at once when that is so already)."""

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}  # file key -> end of what was last sent
        self._acked: dict[str, int] = {}  # file key -> end acknowledged
        self._waiting: dict[str, int] = {}  # file key -> end of dropped batches, not yet acked

    def sent(self, key: str, end: int) -> None:
        self._sent[key] = end
        self._waiting.pop(key, None)  # the sent batch's end covers them

    def skipped(self, key: str, end: int) -> list[Token]:
        if self._acked.get(key, -1) >= self._sent.get(key, -1):
            return [(key, end)]
        self._waiting[key] = end
        return []

    def acked(self, tokens: Iterable[Token]) -> list[Token]:
        """Note the tokens acknowledged; return the dropped batches' ends they release."""
        for key, end in tokens:
            if end > self._acked.get(key, -1):
                self._acked[key] = end
        released = [
            (key, end)
            for key, end in self._waiting.items()
            if self._acked.get(key, -1) >= self._sent.get(key, -1)
        ]
        for key, _ in released:
            del self._waiting[key]
        return released


def compile_pattern(pattern: str, label: str) -> Any:
    """``pattern`` compiled (RE2, else checked ``re``), or one clear ``RuleError``."""
    if not pattern:
        raise RuleError(f"{label}: the pattern is empty")
    if _re2 is None:
        check_pattern(pattern, label)
        return re.compile(pattern)
    if _literal(pattern):  # the same in both engines, linear, and ~10x faster a call in re
        return re.compile(pattern)
    try:  # RE2's syntax, the Agent's (Go's regexp): \p{L} and \z too
        return _re2.compile(pattern, options=_OPTIONS)
    except Exception as error:  # re2.error, or a pattern RE2 cannot take
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise RuleError(
            f"{label}: bad pattern {pattern!r}: {detail} (RE2 syntax: no backreferences "
            "or lookarounds)"
        ) from None


def check_pattern(pattern: str, label: str) -> None:
    """For ``re`` (no RE2): refuse a pattern Python cannot read, or one with a backreference,
    a lookaround, a conditional, or a quantifier inside a quantifier."""
    try:
        parsed = re._parser.parse(pattern)
    except re.error as error:
        raise RuleError(f"{label}: bad pattern {pattern!r}: {error}") from None
    problem = _backtracking(parsed.data, repeated=False)
    if problem is not None:
        raise RuleError(
            f"{label}: pattern {pattern!r} has {problem}: refused (it can take time "
            "exponential in a line's length; rules must stay linear)"
        )


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _literal(pattern: str) -> bool:
    """Whether ``pattern`` is plain characters (``GET /healthz``, ``a\\.b``), no flags: it
    means the same to ``re`` as to RE2, and ``re`` finds it in linear time."""
    try:
        parsed = re._parser.parse(pattern)
    except re.error:
        return False
    return parsed.state.flags == re.UNICODE and all(str(op) == "LITERAL" for op, _ in parsed.data)


def _backtracking(items: Any, *, repeated: bool) -> str | None:
    """What in a parsed pattern can backtrack without bound, if anything."""
    for op, value in items:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            return "a backreference" if name == "GROUPREF" else "a conditional group"
        if name in ("ASSERT", "ASSERT_NOT"):
            return "a lookaround"
        if name in _REPEATS:
            _low, high, sub = value
            unbounded = high > 1
            if repeated and unbounded:
                return "a quantifier inside a quantifier"
            found = _backtracking(sub.data, repeated=repeated or unbounded)
        elif name == "SUBPATTERN":
            found = _backtracking(value[-1].data, repeated=repeated)
        elif name == "ATOMIC_GROUP":
            found = _backtracking(value.data, repeated=repeated)
        elif name == "BRANCH":
            found = None
            for branch in value[1]:
                found = found or _backtracking(branch.data, repeated=repeated)
        else:
            found = None
        if found is not None:
            return found
    return None


_GROUP = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _replacement(placeholder: str) -> Callable[[Any], str]:
    """Go's ``Regexp.Expand`` rules for ``replace_placeholder``: ``$1``/``${1}``/``$name``
    name a group (one that does not exist, or did not match, gives nothing), ``$$`` is ``$``;
    anything else is literal (backslashes included)."""
    if "$" not in placeholder:
        return lambda match: placeholder
    parts: list[tuple[bool, str | int]] = []  # (is a group, literal text or group)
    last = 0
    for found in _GROUP.finditer(placeholder):
        parts.append((False, placeholder[last : found.start()]))
        name = found.group(1) or found.group(2)
        if name is None:
            parts.append((False, "$"))
        else:
            parts.append((True, int(name) if name.isdigit() else name))
        last = found.end()
    parts.append((False, placeholder[last:]))

    def expand(match: Any) -> str:
        out: list[str] = []
        for is_group, part in parts:
            if not is_group:
                out.append(str(part))
                continue
            try:
                out.append(match.group(part) or "")
            except (IndexError, KeyError, ValueError):
                out.append("")
        return "".join(out)

    return expand


def spec_from_mapping(values: dict[str, Any], where: str) -> RuleSpec:
    """One ``[[log_processing_rules]]`` table (the Agent's keys), checked."""
    known = {"type", "name", "pattern", "replace_placeholder", "applies_to", "path"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key, value in values.items():
        if not isinstance(value, str):
            raise RuleError(f"{where}: {key} must be a string")
    kind = values.get("type")
    if kind == "multi_line":
        raise RuleError(
            f"{where}: type multi_line is not a processing rule here: use --multiline-pattern"
        )
    if kind not in TYPES:
        raise RuleError(f"{where}: type must be one of {', '.join(TYPES)} (got {kind!r})")
    if "pattern" not in values:
        raise RuleError(f"{where}: a {kind} rule needs a pattern")
    if kind == MASK and "replace_placeholder" not in values:
        raise RuleError(f"{where}: a mask_sequences rule needs a replace_placeholder")
    applies_to = values.get("applies_to", "both")
    if applies_to not in KINDS:
        raise RuleError(f"{where}: applies_to must be one of {', '.join(KINDS)}")
    return RuleSpec(
        type=kind,
        pattern=values["pattern"],
        name=values.get("name", ""),
        replace_placeholder=values.get("replace_placeholder", ""),
        applies_to=applies_to,
        path=values.get("path"),
    )


def mask_spec(option: str) -> RuleSpec:
    """``--mask 'REGEX=PLACEHOLDER'`` (split at the last ``=``)."""
    pattern, equals, placeholder = option.rpartition("=")
    if not equals or not pattern:
        raise RuleError(f"--mask {option!r}: expected REGEX=PLACEHOLDER")
    return RuleSpec(MASK, pattern, name="--mask", replace_placeholder=placeholder)


def build_rules(specs: Iterable[RuleSpec]) -> Rules | None:
    """The rules compiled (each pattern checked: ``RuleError`` on the first bad one), or None
    when there are none."""
    specs = tuple(specs)
    return Rules(specs) if specs else None

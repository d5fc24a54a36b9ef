"""``AccessParser``: one gunicorn access-log line to one event, for any ``access_log_format``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from logpipe.event import ACCESS_LOGGER, Event, Processor
from logpipe.lines import MAX_LINE_BYTES, decode
from logpipe.parsing.access.builder import AccessEventPlan, Build
from logpipe.parsing.access.format import DEFAULT_FORMATS
from logpipe.parsing.access.grammar import END, AccessGrammar, assemble, lark_parser
from logpipe.parsing.attributes import run_chain

if TYPE_CHECKING:
    from lark.exceptions import UnexpectedInput
from logpipe.parsing.access.fast import ASCII, EXACT, Matcher, Tier, fast_access, tier_of
from logpipe.parsing.failures import failed_event, flag_repairs, reason

Match = tuple[int, Sequence[str]]  # (index of the format, atom values in that format's order)
EXPLAIN_LIMIT = 65_536  # characters: longer lines the fast path declines are not given to Lark
EXTRA_FIELDS = 8  # trailing fields looked for past a format's end


class AccessParseError(ValueError):
    """A line that the format's grammar does not accept."""


class AccessParser:
    """Parse access lines written with ``fmt`` (gunicorn's ``access_log_format``).

    With no format, gunicorn's default is accepted, and so are the common log format and the
    default followed by a quoted X-Forwarded-For field (what Datadog's pipeline accepts).
    Every event carries ``attributes`` (the identity: service, hostname, ddtags), which replace
    the line's attributes of the same name (not ``logpipe``: that is logpipe's bookkeeping).
    ``parse`` never raises: a line that does not fit becomes an event carrying the raw
    ``message`` and ``logpipe.parse_error``. A bad format raises FormatError here.
    Events may share nested details (``http.useragent_details``, cached per user agent): treat
    them as read-only, or copy before changing them.
    """

    def __init__(
        self,
        fmt: str | Sequence[str] | None = None,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        chain: Sequence[Processor] = (),
        fast_path: bool = True,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if fmt is None:
            self.formats = DEFAULT_FORMATS
        else:
            self.formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
        self.grammar: AccessGrammar = assemble(self.formats)
        self.attributes = dict(attributes or {})
        self._fast = fast_access(self.formats) if fast_path else None
        self._builds = tuple(
            AccessEventPlan(keys, attributes=self.attributes).build for keys in self.grammar.keys
        )
        # Per tier of the fast path, its (match, build) pairs: a line of the ASCII tier has no
        # value to repair, so its events come from the formats' clean builds.
        self._tiers: tuple[tuple[tuple[Matcher, Build], ...], ...] = ((), (), ())
        if self._fast:
            clean = tuple(
                AccessEventPlan(keys, clean=True, attributes=self.attributes).build
                for keys in self.grammar.keys
            )
            self._tiers = tuple(
                _paired(tier, clean if number == ASCII else self._builds)
                for number, tier in enumerate(self._fast.tiers)
            )
        self.max_line_bytes = max_line_bytes
        self.chain = tuple(chain)
        self.failures = 0  # lines that did not parse
        self.last_failure: tuple[str, str] | None = None  # (reason, line) of the last one

    def parse(self, line: str | bytes, *, truncated: bool = False) -> Event:
        """The event for one line (``truncated``: the reader already cut it)."""
        text, repairs = decode(line, max_bytes=self.max_line_bytes, truncated=truncated)
        event = self.parse_text(text)
        if self.chain:
            event = run_chain(event, self.chain)
        return event if repairs is None else flag_repairs(event, repairs)

    def values(self, text: str) -> dict[str, str]:
        """The raw atom values of a line, keyed like gunicorn's atoms; AccessParseError if none."""
        index, values = self.match(text)
        return dict(zip(self.grammar.keys[index], values, strict=True))

    def match(self, text: str) -> Match:
        """Which format ``text`` is in and its atom values; AccessParseError if none fits.

        The fast path (regexes compiled from the grammar) answers for the lines it accepts; the
        Lark parser takes the rest and explains why they fail.
        """
        found = self._fast.match(text) if self._fast else None
        return found or self._explained(text)

    def _explained(self, text: str) -> Match:
        """Lark's verdict on a line the fast path declined (declined lines are bad lines, so
        this explains them; Lark needs ~200 bytes of memory per character to do it, hence the
        limit)."""
        if self._fast and len(text) > EXPLAIN_LIMIT:
            raise AccessParseError(
                f"access line: does not fit the format ({len(text)} characters: too long to "
                "explain)"
            )
        return self.lark_match(text)

    def lark_match(self, text: str) -> Match:
        """``match`` by the Lark parser alone."""
        from lark import Token, Tree
        from lark.exceptions import UnexpectedInput

        try:
            tree = lark_parser(self.formats).parse(text + END)
        except UnexpectedInput as error:
            raise AccessParseError(self._explain(text, error)) from None
        (branch,) = tree.children
        assert isinstance(branch, Tree)
        values: list[str] = []
        for token in branch.children:
            assert isinstance(token, Token)
            values.extend(self.grammar.tokens[token.type].values(token))
        return int(str(branch.data).removeprefix("format_")), values

    def parse_text(self, text: str, bookkeeping: dict[str, Any] | None = None) -> Event:
        """The event for a line already decoded: no line ending or NUL byte, within the cap
        (what ``decode`` gives; ``parse`` is ``decode`` then this). The processor chain is not
        run. ``bookkeeping``: the event's ``logpipe`` object (where the line is from), if any."""
        for match, build in self._tiers[tier_of(text)]:
            found = match(text)
            if found is not None:  # (FastAccess.match, unrolled here: the hot loop)
                return build(text, found.groups(), bookkeeping)
        return self._declined(text, bookkeeping)

    def parse_ascii(self, text: str, bookkeeping: dict[str, Any] | None = None) -> Event:
        """``parse_text`` for a line known to be ASCII (as every line of a batch is when the
        batch is): only a backslash can change the tier."""
        for match, build in self._tiers[EXACT if "\\" in text else ASCII]:
            found = match(text)
            if found is not None:
                return build(text, found.groups(), bookkeeping)
        return self._declined(text, bookkeeping)

    def _declined(self, text: str, bookkeeping: dict[str, Any] | None) -> Event:
        """The event for a line no regex of its tier accepts: Lark's verdict."""
        try:
            index, values = self._explained(text)
        except AccessParseError as error:
            self.failures += 1
            self.last_failure = (str(error), text)
            return failed_event(text, str(error), ACCESS_LOGGER, self.attributes, bookkeeping)
        return self._builds[index](text, values, bookkeeping)

    def _explain(self, text: str, error: UnexpectedInput) -> str:
        """The reason for the failure that got furthest into the line, with or without lookahead;
        for a line that is a whole line of the format with more after it, how much more."""
        from lark.exceptions import UnexpectedInput

        extra = self._extra_fields(text)
        if extra:
            return (
                f"access line: {extra} more field{'s' if extra > 1 else ''} after the format's end"
            )

        try:
            lark_parser(self.formats, lookahead=False).parse(text + END)
        except UnexpectedInput as plain:
            if plain.column > error.column:
                error = plain
        return reason(error, self._describe, "access line")

    def _extra_fields(self, text: str) -> int:
        """How many space-separated fields follow the longest start of ``text`` that the format
        parses whole (0: none does). Tried from the right, at most ``EXTRA_FIELDS`` cuts."""
        match = fast_access(self.formats).match  # (whether or not this parser takes the path)
        end = len(text)
        for count in range(1, EXTRA_FIELDS + 1):
            end = text.rfind(" ", 0, end)
            if end <= 0:
                return 0
            if match(text[:end]) is not None:
                return count
        return 0

    def _describe(self, terminal: str) -> str:
        spec = self.grammar.tokens.get(terminal)
        if spec is None:
            return terminal
        if spec.atoms:
            return "".join(f"%({atom.key})s" for atom in spec.atoms)
        return repr(spec.literal)


def _paired(tier: Tier, builds: Sequence[Build]) -> tuple[tuple[Matcher, Build], ...]:
    return tuple((match, builds[index]) for index, match in tier)

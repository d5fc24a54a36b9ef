"""The parsers of each followed file: the ones the options fix, or those for the format
detected from the file's first lines (an access format is detected again when most of a batch
stops parsing: gunicorn was reconfigured and restarted)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from logpipe.lines import LineBatch, head_lines
from logpipe.parsing.access.detect import detect, unfit
from logpipe.parsing.access.fast import fast_access
from logpipe.parsing.access.format import DEFAULT_FORMATS
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout, detect_error_layout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.sources.multiline import Multiline, Record

CHECKED_LINES = 10  # lines of each batch tried on the chosen format
SAMPLE_LINES = 50  # lines a detection looks at
RETRY_BATCHES = 100

Formats = tuple[str, ...]
K = TypeVar("K", bound=Hashable)  # what a file's parser is made from
P = TypeVar("P")  # a parser


class _PerFile(Generic[K, P]):
    """A parser per file: the fixed one, or one per chosen key (formats, a layout), made once
    by ``make``; ``report`` says each choice."""

    def __init__(
        self,
        fixed: P | None = None,
        *,
        make: Callable[[K], P] | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        if (fixed is None) == (make is None):
            raise ValueError("give a fixed parser or a way to make them")
        self._fixed = fixed
        self._make = make
        self._report = report
        self._parsers: dict[K, P] = {}
        self._chosen: dict[str, K] = {}  # path -> its key

    def chosen(self, path: str) -> K | None:
        """What ``path`` is read in, once detected (None with a fixed parser)."""
        return self._chosen.get(path)

    def _parser(self, key: K) -> P:
        parser = self._parsers.get(key)
        if parser is None:
            assert self._make is not None
            parser = self._parsers[key] = self._make(key)
        return parser


class AccessFormats(_PerFile[Formats, AccessParser]):
    """``parser_for(path, lines)``: the parser for a file's lines; with ``make`` (formats to a
    parser), formats are detected per file and each choice is said through ``report``."""

    def __init__(
        self,
        fixed: AccessParser | None = None,
        *,
        make: Callable[[Formats], AccessParser] | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        super().__init__(fixed, make=make, report=report)
        self._unfit: dict[str, Formats] = {}  # path -> formats kept though its lines do not fit
        self._waited: dict[str, int] = {}  # path -> batches since nothing fitted it

    def parser_for(self, path: str, lines: LineBatch) -> AccessParser:
        if self._fixed is not None:
            return self._fixed
        chosen = self._chosen.get(path)
        if chosen is None or (not self._fits(chosen, lines) and self._may_detect(path)):
            chosen = self._detect(path, lines, chosen)
        return self._parser(chosen)

    def _may_detect(self, path: str) -> bool:
        """Whether to detect again: at once, unless nothing fitted the file last time (then
        every ``RETRY_BATCHES`` batches: detecting costs more than a batch of bad lines)."""
        if path not in self._unfit:
            return True
        self._waited[path] = waited = self._waited.get(path, 0) + 1
        return waited % RETRY_BATCHES == 0

    def _detect(self, path: str, lines: LineBatch, before: Formats | None) -> Formats:
        texts = _texts(lines, SAMPLE_LINES)
        detection = detect(texts)
        if detection is None or detection.parsed * 2 < detection.sample:
            chosen = before or DEFAULT_FORMATS
            if self._unfit.get(path) != chosen:  # said once, until it changes
                self._unfit[path] = chosen
                self._report(f"{path}: {unfit(texts, detection)}")
        else:
            chosen = detection.formats
            self._unfit.pop(path, None)
            if chosen != before:
                verb = "access format" if before is None else "access format changed to"
                self._report(f"{path}: {verb} {detection.describe()}")
        self._chosen[path] = chosen
        return chosen

    def _fits(self, formats: Formats, lines: LineBatch) -> bool:
        """Whether most of the batch's first lines parse with ``formats``."""
        texts = _texts(lines, CHECKED_LINES)
        match = fast_access(formats).match
        return sum(1 for text in texts if match(text) is not None) * 2 >= len(texts)


def _texts(lines: LineBatch, count: int) -> list[str]:
    return [
        line.decode("utf-8", "replace").removesuffix("\r")
        for line in lines.lines[:count]
        if line.strip()
    ]


class ErrorLayouts(_PerFile[ErrorLayout, ErrorParser]):
    """``parser_for(path, records)``: the parser for a file's error records; with ``make``
    (a layout to a parser), layouts are detected per file from its first records, each choice
    said through ``report``."""

    def parser_for(self, path: str, records: Sequence[Record[bytes]]) -> ErrorParser:
        if self._fixed is not None:
            return self._fixed
        layout = self._chosen.get(path)
        if layout is None:
            firsts = [record.text.split(b"\n", 1)[0] for record in records[:SAMPLE_LINES]]
            found = detect_error_layout([line.decode("utf-8", "replace") for line in firsts])
            layout = self._chosen[path] = found or DEFAULT_LAYOUT
            how = "error log layout" if found else "no known error log layout; using"
            self._report(f"{path}: {how} {layout.describe()}")
        return self._parser(layout)


def error_multiline(
    head: bytes, *, fixed: ErrorLayout | None, given: str, max_bytes: int
) -> Multiline[bytes]:
    """The aggregator of an error log whose first bytes are ``head``: records start as its
    layout (``fixed``, else detected from ``head``) says, unless ``given``
    (``--multiline-pattern``) overrides it."""
    layout = fixed or detect_error_layout(head_lines(head)) or DEFAULT_LAYOUT
    return Multiline(layout.record_start(given), max_bytes=max_bytes)

"""The access parser of each followed file: the one the options fix, or the one detected from
the file's first lines, detected again when most of a batch stops parsing (gunicorn was
reconfigured and restarted)."""

from __future__ import annotations

from collections.abc import Callable

from logpipe.lines import LineBatch
from logpipe.parsing.access.detect import Detection, detect
from logpipe.parsing.access.fast import fast_access
from logpipe.parsing.access.format import DEFAULT_FORMATS
from logpipe.parsing.access.parser import AccessParser

CHECKED_LINES = 10  # lines of each batch tried on the chosen format
SAMPLE_LINES = 50  # lines a detection looks at
RETRY_BATCHES = 100

Formats = tuple[str, ...]


class AccessFormats:
    """``parser_for(path, lines)``: the parser for a file's lines; with ``make`` (formats to a
    parser), formats are detected per file and each choice is said through ``report``."""

    def __init__(
        self,
        fixed: AccessParser | None = None,
        *,
        make: Callable[[Formats], AccessParser] | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        if (fixed is None) == (make is None):
            raise ValueError("give a fixed parser or a way to make them")
        self._fixed = fixed
        self._make = make
        self._report = report
        self._parsers: dict[Formats, AccessParser] = {}
        self._chosen: dict[str, Formats] = {}  # path -> its formats
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
                self._report(_unfit_message(path, detection))
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

    def _parser(self, formats: Formats) -> AccessParser:
        parser = self._parsers.get(formats)
        if parser is None:
            assert self._make is not None
            parser = self._parsers[formats] = self._make(formats)
        return parser


def _texts(lines: LineBatch, count: int) -> list[str]:
    return [
        line.decode("utf-8", "replace").removesuffix("\r")
        for line in lines.lines[:count]
        if line.strip()
    ]


def _unfit_message(path: str, detection: Detection | None) -> str:
    best = f"; the closest, {detection.describe()}" if detection is not None else ""
    return (
        f"{path}: no access format fits its lines{best}; they become events with "
        "logpipe.parse_error (give --access-format FMT)"
    )

"""What a replay counted: Datadog's Gunicorn dashboard and saved views, offline (``render`` and
``dashboard`` show them).

``Summary.observe`` is a processor (put it in a parser's ``chain``, or call it on each event): it
counts what the event says and returns it unchanged; parts of one replay ``merge``::

    summary = Summary()
    parser = AccessParser(chain=[summary.observe])
    ...
    summary.skipped_old = skipped          # events older than the intake window, if any
    print(render.text(summary), file=sys.stderr)

Counts over time are kept per ``BIN_MS`` (one minute: a week is 10,080 bins) and re-binned when
shown. Durations are counted per bin in fixed log-scale buckets (``duration_bucket``: four per
doubling, so a percentile read from them is within 10 % of the true value), never as lists of
values: memory is bounded by the time span, not by the number of requests.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from logpipe.backfill.routes import memoized_route
from logpipe.event import ACCESS_LOGGER, ERROR_LOGGER, Event, bot_error

BIN_MS = 60_000  # the finest time bin
NO_PATH = "(none)"
NO_TIME_YET = 1 << 62
UNMERGED = ("accepted", "refused", "pending")  # the caller's counts, not a part's
STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}
DURATION_OCTAVES = 40  # durations in µs up to 2**40 (12.7 days); longer ones count in the last
DURATION_BUCKETS = DURATION_OCTAVES * 4 + 4
MAX_REASONS = 200  # distinct parse-error reasons kept; the rest count as OTHER_REASON
OTHER_REASON = "(other reasons)"
EXAMPLE_CHARS = 300  # an example message or line, cut to this length
ROUTES = memoized_route()  # path -> route, shared by this process's summaries


class Summary:
    """Counts of a replay's events.

    ``lines`` counts access-log lines (gunicorn.access events), ``records`` error-log records
    (gunicorn.error events); ``skipped_old`` and the delivery counts ``accepted``, ``refused``
    and ``pending`` are set by the caller. ``requests`` counts requests per (status code, bin
    start in epoch ms, or None without a timestamp); ``durations`` per bin, a list of counts per
    ``duration_bucket``; ``level_bins`` error records per (level, bin or None).
    ``paths_4xx``/``paths_5xx`` count routes (``routes.route``: ids collapsed). ``bots`` and
    ``bot_paths`` count what Datadog's saved view "Bot errors" selects
    (``logpipe.event.bot_error``), by browser family (and route); ``bot_kinds`` counts requests
    per (``http.useragent_details.bot_kind``, status class). ``exceptions`` counts error records
    with a traceback by ``error.kind``, with the first message of each in
    ``exception_examples``; ``parse_reasons`` counts lines that did not parse by reason, with
    an example line each in ``parse_examples``.
    """

    def __init__(self) -> None:
        self.events = 0
        self.lines = 0
        self.records = 0
        self.parse_errors = 0
        self.truncated = 0
        self.skipped_old = 0
        # events the output accepted, refused, left pending: set by the caller, not merged
        self.accepted = 0
        self.refused = 0
        self.pending = 0
        # requests per (status code, bin or None): statuses and timeline, in one count
        self.requests: dict[tuple[int, int | None], int] = {}
        self.durations: dict[int, list[int]] = {}
        self.paths_4xx: Counter[str] = Counter()
        self.paths_5xx: Counter[str] = Counter()
        self.bots: Counter[str] = Counter()
        self.bot_paths: Counter[tuple[str, str]] = Counter()
        # requests per (bot kind, status class), for user agents with a bot_kind
        self.bot_kinds: Counter[tuple[str, str]] = Counter()
        self.level_bins: dict[tuple[str, int | None], int] = {}
        self.tracebacks = 0
        self.exceptions: Counter[str] = Counter()
        self.exception_examples: dict[str, str] = {}
        self.parse_reasons: Counter[str] = Counter()
        self.parse_examples: dict[str, str] = {}
        self._first = NO_TIME_YET  # epoch ms; sentinels until an event has a timestamp
        self._last = -NO_TIME_YET

    def observe(self, event: Event) -> Event:
        """Count what ``event`` says; return it unchanged (a hot loop: one pass, few calls)."""
        self.events += 1
        flags = event.get("logpipe")
        if flags:
            if "parse_error" in flags:
                self._parse_error(flags["parse_error"], event.get("message"))
            if flags.get("truncated"):
                self.truncated += 1
        at = event.get("timestamp")
        if type(at) is not int:
            at = int(at) if type(at) is float else None
        if at is not None:
            if at < self._first:
                self._first = at
            if at > self._last:
                self._last = at
            at -= at % BIN_MS
        logger = event.get("logger")
        name = logger.get("name") if type(logger) is dict else None
        if name == ACCESS_LOGGER:
            self.lines += 1
            http = event.get("http")
            code = http.get("status_code") if type(http) is dict else None
            if type(code) is int:
                key = (code, at)
                requests = self.requests
                requests[key] = requests.get(key, 0) + 1
                details = http.get("useragent_details")  # type: ignore[union-attr]
                if isinstance(details, dict):
                    kind = details.get("bot_kind")
                    if kind is not None:
                        self.bot_kinds[kind, status_class(code)] += 1
                if 400 <= code < 600:
                    self._failure(code, http)  # type: ignore[arg-type]
                duration = event.get("duration")
                if type(duration) is int and at is not None and duration >= 0:
                    counts = self.durations.get(at)
                    if counts is None:
                        counts = self.durations[at] = [0] * DURATION_BUCKETS
                    micros = duration // 1000  # duration_bucket, inlined: a hot loop
                    bits = micros.bit_length()
                    if bits < 3:
                        counts[micros] += 1
                    elif bits <= DURATION_OCTAVES:
                        counts[(bits << 2) | ((micros >> (bits - 3)) & 3)] += 1
                    else:
                        counts[-1] += 1
        elif name == ERROR_LOGGER:
            self.records += 1
            self._record(event, at)
        return event

    def merge(self, other: Summary) -> None:
        """Add what ``other`` counted (a part of the same replay) to this summary."""
        for name, value in vars(other).items():
            if name in UNMERGED:
                continue
            mine = getattr(self, name)
            if isinstance(value, Counter):
                mine.update(value)
            elif name in ("requests", "level_bins"):
                for key, count in value.items():
                    mine[key] = mine.get(key, 0) + count
            elif name == "durations":
                for key, counts in value.items():
                    held = mine.get(key)
                    mine[key] = (
                        list(counts)
                        if held is None
                        else [a + b for a, b in zip(held, counts, strict=True)]
                    )
            elif name in ("exception_examples", "parse_examples"):
                for key, example in value.items():
                    mine.setdefault(key, example)  # parts merge in order: the first kept
            elif name in ("_first", "_last"):
                setattr(self, name, (min if name == "_first" else max)(mine, value))
            else:
                setattr(self, name, mine + value)

    @property
    def first(self) -> int | None:
        """Epoch ms of the earliest event (None without timestamps)."""
        return self._first if self._first != NO_TIME_YET else None

    @property
    def last(self) -> int | None:
        return self._last if self._last != -NO_TIME_YET else None

    @property
    def statuses(self) -> Counter[int]:
        """Requests per status code."""
        statuses: Counter[int] = Counter()
        for (code, _), count in self.requests.items():
            statuses[code] += count
        return statuses

    @property
    def timeline(self) -> Counter[tuple[int, str]]:
        """Requests per (bin start in epoch ms, status class)."""
        timeline: Counter[tuple[int, str]] = Counter()
        for (code, bucket), count in self.requests.items():
            if bucket is not None:
                timeline[bucket, status_class(code)] += count
        return timeline

    @property
    def classes(self) -> Counter[str]:
        """Requests per status class (``2xx``...)."""
        classes: Counter[str] = Counter()
        for code, count in self.statuses.items():
            classes[status_class(code)] += count
        return classes

    @property
    def levels(self) -> Counter[str]:
        """Error records per level."""
        levels: Counter[str] = Counter()
        for (level, _), count in self.level_bins.items():
            levels[level] += count
        return levels

    def _failure(self, code: int, http: dict[str, Any]) -> None:
        details = http.get("url_details")
        path = details.get("path") if isinstance(details, dict) else None
        path = ROUTES[path] if isinstance(path, str) and path else NO_PATH
        (self.paths_4xx if code < 500 else self.paths_5xx)[path] += 1
        family = bot_error(http)  # the saved view "Bot errors" (logpipe.event.bot_error)
        if family is not None:
            self.bots[family] += 1
            self.bot_paths[family, path] += 1

    def _record(self, event: Event, at: int | None) -> None:
        level = event.get("level")
        if isinstance(level, str):
            key = (level, at)
            level_bins = self.level_bins
            level_bins[key] = level_bins.get(key, 0) + 1
        error = event.get("error")
        if isinstance(error, dict) and error.get("stack"):
            self.tracebacks += 1
            kind = error.get("kind")
            kind = kind if isinstance(kind, str) and kind else "(unknown kind)"
            self.exceptions[kind] += 1
            if kind not in self.exception_examples:
                message = error.get("message")
                self.exception_examples[kind] = _example(
                    message if isinstance(message, str) else ""
                )

    def _parse_error(self, reason: object, message: object) -> None:
        self.parse_errors += 1
        reason = reason if isinstance(reason, str) else "does not parse"
        reasons = self.parse_reasons
        if reason not in reasons and len(reasons) >= MAX_REASONS:
            reason = OTHER_REASON
        reasons[reason] += 1
        if reason not in self.parse_examples and isinstance(message, str):
            self.parse_examples[reason] = _example(message)


def duration_bucket(nanoseconds: int) -> int:
    """The log-scale bucket of a duration: its µs with four buckets per doubling (0 to 3 µs
    one each), up to ``DURATION_OCTAVES`` doublings."""
    micros = nanoseconds // 1000
    bits = micros.bit_length()
    if bits < 3:
        return micros
    if bits > DURATION_OCTAVES:
        return DURATION_BUCKETS - 1
    return (bits << 2) | ((micros >> (bits - 3)) & 3)


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """The µs a duration bucket covers, ``[low, high)``."""
    if bucket < 4:
        return bucket, bucket + 1
    bits, quarter = bucket >> 2, bucket & 3
    return (4 | quarter) << (bits - 3), ((4 | quarter) + 1) << (bits - 3)


def status_class(code: int) -> str:
    """``"4xx"`` for 404."""
    return STATUS_CLASSES.get(code) or f"{code // 100}xx"


def _example(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"

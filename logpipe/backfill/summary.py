"""What a replay counted: Datadog's Gunicorn saved views, offline (``render`` shows them).

``Summary.observe`` is a processor (put it in a parser's ``chain``, or call it on each event): it
counts what the event says and returns it unchanged; parts of one replay ``merge``::

    summary = Summary()
    parser = AccessParser(chain=[summary.observe])
    ...
    summary.skipped_old = skipped          # events older than the intake window, if any
    print(render.text(summary), file=sys.stderr)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from logpipe.event import ACCESS_LOGGER, ERROR_LOGGER, Event, bot_error

BUCKET_MS = 30_000  # Datadog's status-code overview steps by 30 s
NO_PATH = "(none)"
NO_TIME_YET = 1 << 62
UNMERGED = ("accepted", "refused", "pending")  # the caller's counts, not a part's
STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}


class Summary:
    """Counts of a replay's events.

    ``lines`` counts access-log lines (gunicorn.access events), ``records`` error-log records
    (gunicorn.error events); ``skipped_old`` is set by the caller. ``timeline`` counts requests
    per (30 s bucket start in epoch ms, status class); ``first`` / ``last`` are epoch ms.
    ``bots`` and ``bot_paths`` count what Datadog's saved view "Bot errors" selects
    (``logpipe.event.bot_error``), by browser family (and path); ``bot_kinds`` counts requests
    per (``http.useragent_details.bot_kind``, status class).
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
        # requests per (status code, 30 s bucket or None): statuses and timeline, in one count
        self.requests: dict[tuple[int, int | None], int] = {}
        self.paths_4xx: Counter[str] = Counter()
        self.paths_5xx: Counter[str] = Counter()
        self.bots: Counter[str] = Counter()
        self.bot_paths: Counter[tuple[str, str]] = Counter()
        # requests per (bot kind, status class), for user agents with a bot_kind
        self.bot_kinds: Counter[tuple[str, str]] = Counter()
        self.levels: Counter[str] = Counter()
        self.tracebacks = 0
        self._first = NO_TIME_YET  # epoch ms; sentinels until an event has a timestamp
        self._last = -NO_TIME_YET

    def observe(self, event: Event) -> Event:
        """Count what ``event`` says; return it unchanged (a hot loop: one pass, few calls)."""
        self.events += 1
        flags = event.get("logpipe")
        if flags:
            if "parse_error" in flags:
                self.parse_errors += 1
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
        logger = event.get("logger")
        name = logger.get("name") if type(logger) is dict else None
        if name == ACCESS_LOGGER:
            self.lines += 1
            http = event.get("http")
            code = http.get("status_code") if type(http) is dict else None
            if type(code) is int:
                key = (code, None if at is None else at - at % BUCKET_MS)
                requests = self.requests
                requests[key] = requests.get(key, 0) + 1
                details = http.get("useragent_details")  # type: ignore[union-attr]
                if isinstance(details, dict):
                    kind = details.get("bot_kind")
                    if kind is not None:
                        self.bot_kinds[kind, status_class(code)] += 1
                if 400 <= code < 600:
                    self._failure(code, http)  # type: ignore[arg-type]
        elif name == ERROR_LOGGER:
            self.records += 1
            self._record(event)
        return event

    def merge(self, other: Summary) -> None:
        """Add what ``other`` counted (a part of the same replay) to this summary."""
        for name, value in vars(other).items():
            if name in UNMERGED:
                continue
            mine = getattr(self, name)
            if isinstance(value, Counter):
                mine.update(value)
            elif name == "requests":
                for key, count in value.items():
                    mine[key] = mine.get(key, 0) + count
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
        """Requests per (30 s bucket start in epoch ms, status class)."""
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

    def _failure(self, code: int, http: dict[str, Any]) -> None:
        details = http.get("url_details")
        path = details.get("path") if isinstance(details, dict) else None
        path = path if isinstance(path, str) and path else NO_PATH
        (self.paths_4xx if code < 500 else self.paths_5xx)[path] += 1
        family = bot_error(http)  # the saved view "Bot errors" (logpipe.event.bot_error)
        if family is not None:
            self.bots[family] += 1
            self.bot_paths[family, path] += 1

    def _record(self, event: Event) -> None:
        level = event.get("level")
        if isinstance(level, str):
            self.levels[level] += 1
        error = event.get("error")
        if isinstance(error, dict) and error.get("stack"):
            self.tracebacks += 1


def status_class(code: int) -> str:
    """``"4xx"`` for 404."""
    return STATUS_CLASSES.get(code) or f"{code // 100}xx"

"""``--metrics-mode gunicorn``: from the logs, the metrics gunicorn's own statsd instrumentation
(``gunicorn/instrument/statsd.py``, on with ``--statsd-host``) would have sent, so that Datadog's
stock Gunicorn dashboard works without it.

Per access line with a status (gunicorn's ``Statsd.access``):

- ``gunicorn.request.duration``: a timer (``|ms``), the request's time in ms, when the access
  format has a duration atom (``%(D)s`` gives gunicorn's exact value; ``%(M)s``, ``%(T)s`` and
  ``%(L)s`` are rounded as they print);
- ``gunicorn.requests`` and ``gunicorn.request.status.<code>``: counters, sample rate 1.

Per error record that one of gunicorn's own logger calls wrote (``Statsd.critical|error|
warning|exception``): ``gunicorn.log.critical|error|warning|exception``, counters. Which call
wrote a record is read from it:

- only records in gunicorn's own prefix count (they carry its ``[pid]``); captured app output
  (Flask-style records, bare lines) counts nothing, as in gunicorn, whose counters see only its
  own logger;
- CRITICAL is ``log.critical``, WARNING ``log.warning``;
- ERROR with a traceback is ``log.exception`` (``Error handling request /x``, ``Exception in
  worker process``...: ``Logger.exception`` always adds one), but for the messages gunicorn logs
  with ``log.error(..., exc_info=True)`` (``Unhandled exception in main loop``); ERROR without
  one is ``log.error``. INFO and DEBUG count nothing (gunicorn sends nothing for them).

Names start with gunicorn's ``--statsd-prefix`` as gunicorn makes it (``--statsd-prefix``
here; empty by default, so names start with ``gunicorn.``), and the only tags are gunicorn's
``--dogstatsd-tags`` (here the same option): no ``service``, ``env`` or ``DD_*`` tags, which
gunicorn does not send either. ``logpipe.*`` self-telemetry still goes out, through
``self_statsd``, tagged as in the default mode. ``gunicorn.workers`` is the process check's
(``--proc-name``), not derived from logs.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from logpipe.event import ERROR_LOGGER, Event
from logpipe.metrics.derive import EventMetrics

if TYPE_CHECKING:  # imported where clients are made
    from datadog.dogstatsd.base import DogStatsd

MODES = ("logpipe", "gunicorn")
MARKER = "Traceback (most recent call last):"  # as logging prints it (parsing's MARKER too)

# gunicorn's log.error(..., exc_info=True) calls: a traceback, yet log.error, not log.exception.
ERROR_WITH_TRACEBACK = ("Unhandled exception in main loop",)

NO_DURATION = (
    "--metrics-mode gunicorn: the access format has no duration atom (%(D)s, %(M)s, %(L)s or "
    "%(T)s), so gunicorn.request.duration is not sent"
)

_LEVELS = {"CRITICAL": "critical", "WARNING": "warning"}
_CACHE_LIMIT = 1024


def statsd_prefix(prefix: str) -> str:
    """gunicorn's ``--statsd-prefix`` as gunicorn applies it (``app`` and ``app..`` -> ``app.``;
    a one-character prefix gets no dot, as in gunicorn)."""
    return re.sub(r"^(.+[^.]+)\.*$", "\\g<1>.", prefix)


def dogstatsd_tags(text: str) -> list[str]:
    """gunicorn's ``--dogstatsd-tags`` (``k:v,k2:v2``) as a tag list."""
    return [tag.strip() for tag in text.split(",") if tag.strip()]


def log_metric(event: Event) -> str | None:
    """``critical``, ``error``, ``warning`` or ``exception``: the gunicorn logger call that
    wrote this error event, when it counts; None for anything else."""
    flags = event.get("logpipe")
    if flags and "parse_error" in flags:
        return None
    logger = event.get("logger")
    if not isinstance(logger, dict) or logger.get("name") != ERROR_LOGGER:
        return None
    if type(event.get("pid")) is not int:  # not gunicorn's prefix: app output
        return None
    level = event.get("level")
    if not isinstance(level, str):
        return None
    level = level.upper()
    if level in _LEVELS:
        return _LEVELS[level]
    if level != "ERROR":
        return None
    message = event.get("message")
    text = message if isinstance(message, str) else ""
    error = event.get("error")
    has_traceback = (isinstance(error, dict) and bool(error.get("stack"))) or MARKER in text
    if not has_traceback:
        return "error"
    head = text.partition(MARKER)[0]
    if any(known in head for known in ERROR_WITH_TRACEBACK):
        return "error"
    return "exception"


class GunicornMetrics(EventMetrics):
    """What gunicorn's statsd instrumentation sends, derived from events (see the module doc).

    ``statsd`` must have no namespace and only gunicorn's tags as constant tags; ``self_statsd``
    takes ``logpipe.*`` and the process check. ``report`` is told once when access events come
    without a duration.
    """

    def __init__(
        self,
        statsd: DogStatsd,
        self_statsd: DogStatsd,
        *,
        prefix: str = "",
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(statsd)
        self.self_statsd = self_statsd
        self._prefix = statsd_prefix(prefix)
        self._report = report
        self._warned = False
        pre = self._prefix + "gunicorn."
        self._requests = pre + "requests"
        self._duration = pre + "request.duration"
        self._status_prefix = pre + "request.status."
        self._logs = {name: f"{pre}log.{name}" for name in ("critical", "error", "warning")}
        self._logs["exception"] = pre + "log.exception"
        self._status_names: dict[int, str] = {}

    def _on_access(self, event: Event) -> None:
        http = event.get("http")
        code = http.get("status_code") if isinstance(http, dict) else None
        if type(code) is int:
            self._access(code, event.get("duration"))

    def _on_error(self, event: Event) -> None:
        metric = log_metric(event)
        if metric is not None:
            self.statsd.increment(self._logs[metric], 1)

    def _access(self, code: int, duration: object) -> None:
        statsd = self.statsd
        if type(duration) is int or type(duration) is float:
            statsd.timing(self._duration, duration / 1e6)  # ns -> ms
        elif not self._warned:
            self._warned = True
            if self._report is not None:
                self._report(NO_DURATION)
        statsd.increment(self._requests, 1)
        status = self._status_names.get(code)
        if status is None:
            status = f"{self._status_prefix}{code}"
            if len(self._status_names) < _CACHE_LIMIT:
                self._status_names[code] = status
        statsd.increment(status, 1)


def own_statsd(pid: int) -> str | None:
    """Why the gunicorn master ``pid`` already sends its own statsd (``--statsd-host`` on its
    command line or in ``GUNICORN_CMD_ARGS``, or a connected UDP socket, which is what
    gunicorn's statsd logger holds), or None when nothing says so or the process is gone.

    A titled master (setproctitle) has its command line and environment overwritten by the
    title, so the socket is what usually tells."""
    import psutil

    try:
        process = psutil.Process(pid)
        words = list(process.cmdline())
        with contextlib.suppress(psutil.Error):  # often not ours to read
            words += process.environ().get("GUNICORN_CMD_ARGS", "").split()
        for word in words:
            if word == "--statsd-host" or word.startswith("--statsd-host="):
                return "--statsd-host on its command line"
        for connection in process.net_connections(kind="udp"):
            if connection.raddr:
                host, port = connection.raddr[:2]
                return f"it holds a UDP socket connected to {host}:{port} (its --statsd-host)"
    except psutil.Error:
        return None
    return None


def refusal(proc_name: str, pid: int, why: str) -> str:
    """The one line that refuses ``--metrics-mode gunicorn`` for a master sending statsd."""
    return (
        f"--metrics-mode gunicorn: gunicorn [{proc_name}] (master pid {pid}) already sends its "
        f"own statsd: {why}; every request would be counted twice: drop --statsd-host from "
        "gunicorn or use --metrics-mode logpipe"
    )

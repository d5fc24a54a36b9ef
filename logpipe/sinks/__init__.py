"""Where events go. A log sink takes batches of events, each event with the offset just past it
in its file, and gives back tokens ``(file, offset)`` for what it has delivered (at once, or
later when its own batch is sent), so that the checkpoints only ever cover delivered events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypedDict

from logpipe.event import Event, Token


class Interrupted(Exception):
    """Shutdown was requested while a batch was waiting for its next try, or could not be
    sent by the shutdown deadline: its events stay behind the checkpoints. ``delivered``: the
    tokens of what the same call delivered before (to be acknowledged all the same)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.delivered: list[Token] = []


class Refused(Interrupted):
    """The intake refused a batch for good (a bad key, a bad request) and the sink was told
    not to acknowledge refused events (replay: its ledger must stay behind them). Nothing more
    is sent; ``refused``: the batch's tokens; ``delivered``: as for ``Interrupted``."""

    def __init__(self, message: str, refused: list[Token]) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Attempt:
    """One request to an intake, as it ended (shown to a sink's ``on_attempt`` hooks: the
    intake latency histogram, ``--log-level debug``)."""

    events: int  # events in the batch
    body_bytes: int  # the request's body, as sent (gzipped)
    status: int | None  # the HTTP status; None when no answer came
    seconds: float  # from the request's start to its answer or failure
    failure: str | None  # one line naming the host and the cause, when it failed


class SinkState(TypedDict):
    """Where events go, as a status snapshot shows it."""

    kind: str  # "datadog", "ndjson" (a file) or "stdout"
    target: str  # the intake's host:port, or the output path
    delivered: int  # events accepted (2xx) or written
    refused: int  # events the intake refused for good (kept as dead letters)
    pending: int  # events taken and not yet delivered nor refused
    retries: int  # tries that failed and were retried
    last_success: float | None  # Unix time of the last delivery
    last_error: str | None  # the last failure, one line (host and cause)
    last_error_at: float | None  # Unix time of it
    failing_since: float | None  # Unix time of the first failure since the last success


def nothing_to_sync() -> None:
    """The sync job of a sink with nothing to sync (an intake, stdout, a pipe)."""


class LogSink(Protocol):
    @property
    def delivered(self) -> int:
        """Events delivered so far."""
        ...

    @property
    def congested(self) -> bool:
        """Whether delivery is failing and batches pile up (a follower then reads for its
        metrics only, and reads the logs again from its checkpoints once delivery works)."""
        ...

    def state(self) -> SinkState:
        """What a status snapshot shows of this sink."""
        ...

    def send(self, events: Iterable[tuple[Event, int]], key: str, end: int) -> list[Token]:
        """Take the events of one batch read from file ``key``, each with the offset just past
        it (iterated once, as they are made); delivering all of them covers ``end``. Return
        the tokens ``(key, offset)`` of what was delivered meanwhile."""
        ...

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        """``send`` for events already serialised: one JSON object per line of ``block`` (each
        line ending with a newline), one token per line."""
        ...

    def tick(self) -> list[Token]:
        """Deliver what has waited long enough."""
        ...

    def drain(self) -> list[Token]:
        """Deliver everything taken so far."""
        ...

    def sync_job(self) -> Callable[[], None]:
        """A job that makes what was delivered until now survive a crash (run before the
        checkpoints covering it are stored). The job may run on another thread while this
        sink goes on sending."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters worth a status line: ``refused`` (events refused for good) and ``pending``
        (taken, neither delivered nor refused yet) when the sink has them, retries..."""
        ...

    def parallel_append_path(self) -> str | None:
        """The file other processes may append events to themselves, in turn
        (``parallel_append``), as if sent here; None when events must come through ``send``."""
        ...

    def reopen(self) -> str | None:
        """Open the output file's path again (SIGHUP after logrotate moved it): the path, or
        None when there is no file (nothing to reopen)."""
        ...

    def close(self) -> None: ...

"""Where events go. A log sink takes ``(event, token)`` pairs and gives back the tokens of the
events it has delivered (at once, or later when a batch is sent), so that the checkpoints only
ever cover delivered events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from logpipe.event import Event, Token


class Interrupted(Exception):
    """Shutdown was requested while a batch was waiting for its next try: its events stay
    behind the checkpoints."""


class LogSink(Protocol):
    def send(self, events: Iterable[tuple[Event, Token]]) -> list[Token]:
        """Take events (iterated once, as they are made); return the tokens of the events
        delivered meanwhile."""
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

    def make_durable(self) -> None:
        """Make what was delivered survive a crash (before checkpoints are stored)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters worth a status line (retries, dead-lettered...)."""
        ...

    def parallel_append_path(self) -> str | None:
        """The file other processes may append events to themselves, in turn
        (``parallel_append``), as if sent here; None when events must come through ``send``."""
        ...

    def close(self) -> None: ...

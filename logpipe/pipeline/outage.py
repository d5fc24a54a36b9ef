"""Follow mode's answer to writes that fail for a reason that can pass: a full disk (the
output's or the state dir's), a read-only or failing state dir.

The first failure is said in one line naming the file and the cause; reading pauses (events
already made stay in the sink's buffer, so memory stays bounded, and the checkpoints stay
behind what was not written); the writes are retried after 1 s, doubling to 30 s; the recovery
is said in one line. A new cause during the outage is said once too. Other errors are raised.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

PASSING = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)
FIRST_RETRY, LAST_RETRY = 1.0, 30.0


class Outage:
    """Whether writing is failing, and when to try again."""

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        first_retry: float = FIRST_RETRY,
        last_retry: float = LAST_RETRY,
    ) -> None:
        self._report = report
        self._first, self._last = first_retry, last_retry
        self.cause = ""  # what failed, as said; "" while writing works
        self._since = 0.0
        self._delay = first_retry
        self._retry_at = 0.0

    @property
    def active(self) -> bool:
        return bool(self.cause)

    def failed(self, error: OSError, now: float) -> None:
        """A write failed at ``now``: start or prolong the outage; ``error`` is raised again
        when it is not one that can pass."""
        if not passing(error):
            raise error
        cause = describe(error)
        if not self.active:
            self._since, self._delay = now, self._first
        if cause != self.cause:
            self._report(f"{cause}; reading paused, retrying in {self._delay:g} s")
            self.cause = cause
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, self._last)

    def due(self, now: float) -> bool:
        """Whether to try writing at ``now`` (always, outside an outage)."""
        return now >= self._retry_at or not self.active

    def wait(self, now: float) -> float:
        """Seconds until the next try."""
        return max(0.0, self._retry_at - now)

    def ended(self, now: float) -> None:
        """Writing works again: say so, once."""
        if self.active:
            self._report(f"writing again after {now - self._since:.0f} s; reading resumed")
            self.cause = ""

    def gave_up(self, error: OSError) -> None:
        """Shutting down while a write fails: say so (``error`` is raised again when it is not
        one that can pass)."""
        if not passing(error):
            raise error
        self._report(
            f"{describe(error)}; stopping with the checkpoints behind what was not written "
            "(it is read again after a restart)"
        )


def passing(error: OSError) -> bool:
    """Whether ``error`` is a write failure that can pass (``PASSING``)."""
    return error.errno in PASSING


def describe(error: OSError) -> str:
    """``cannot write PATH: REASON``."""
    return f"cannot write {error.filename or 'the output'}: {error.strerror}"

"""Where DogStatsD datagrams go: a host's address, looked up on a thread of its own, so that
nothing else ever waits on DNS.

An IP literal is its own address, at once. A name is looked up every ``RESOLVE_SECONDS`` at
most, one lookup at a time; the last address it gave is kept while later lookups fail. One line
says when a name cannot be resolved (a lookup unanswered after ``PATIENCE_SECONDS`` "timed
out"), one when it resolves again, and one when metrics counted before the first answer are
given up (after ``HOLD_SECONDS``).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable

RESOLVE_SECONDS = 30.0  # one lookup per this, at most
PATIENCE_SECONDS = 5.0  # a lookup unanswered this long is told as "timed out"
HOLD_SECONDS = 300.0  # metrics wait this long for a first address, then are dropped

Report = Callable[[str], None]
Lookup = Callable[[str, int], str]  # (host, port) -> IP literal; raises OSError when it cannot


def first_address(host: str, port: int) -> str:
    """The address ``getaddrinfo`` gives ``host`` for UDP, IPv4 first (as the ``datadog``
    client prefers it); OSError (``socket.gaierror``) when it gives none."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    if not infos:
        raise OSError(f"no address for {host}")
    return str(infos[0][4][0])


def ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (``fe80::1%eth0`` too), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DogStatsdAddress:
    """``host``'s current address (``current``: an IP literal, or None before a first answer).

    A name's lookups run on a daemon thread from construction until ``stop``; ``lookup`` is
    ``first_address`` unless a test gives its own. ``report`` is told the lines of the module
    doc (nothing when None).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        report: Report | None = None,
        lookup: Lookup = first_address,
        every: float = RESOLVE_SECONDS,
        patience: float = PATIENCE_SECONDS,
        hold: float = HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.current: str | None = host if ip_literal(host) else None
        self._report = report or (lambda line: None)
        self._lookup = lookup
        self._every = every
        self._patience = patience
        self._hold_until = clock() + hold
        self._hold = hold
        self._clock = clock
        self._failing = False
        self._said_dropped = False
        self._said_lock = threading.Lock()
        self._stop = threading.Event()
        self.answered = threading.Event()  # the first lookup succeeded, failed or timed out
        if self.current is not None:
            self.answered.set()
            return
        self._thread = threading.Thread(
            target=self._run, name=f"dogstatsd-resolve {host}", daemon=True
        )
        self._thread.start()

    def sendable(self) -> bool:
        """True when metrics can go out: an address is known, or none came within the hold
        (then they are dropped, and that is said once)."""
        if self.current is not None:
            return True
        if self._clock() < self._hold_until:
            return False
        self._say_once(
            f"DogStatsD: {self.host} not resolved after {self._hold:.0f} s; metrics are dropped "
            "until it resolves"
        )
        return True

    def unsent(self) -> None:
        """Say (once) that metrics were dropped at exit for want of an address."""
        self._say_once(f"DogStatsD: {self.host} was never resolved; its metrics were not sent")

    def stop(self) -> None:
        """No more lookups (one in flight is left to end on its own thread)."""
        self._stop.set()

    def _say_once(self, line: str) -> None:
        with self._said_lock:
            if self._said_dropped:
                return
            self._said_dropped = True
        self._report(line)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._look_up()
            self.answered.set()
            if self._stop.wait(self._every):
                return

    def _look_up(self) -> None:
        """One lookup, on a thread of its own so that it can be told as timed out while it
        goes on."""
        outcome: list[str | Exception] = []
        done = threading.Event()

        def attempt() -> None:
            try:
                outcome.append(self._lookup(self.host, self.port))
            except (OSError, UnicodeError, ValueError) as error:  # what getaddrinfo raises
                outcome.append(error)
            finally:
                done.set()

        threading.Thread(target=attempt, name=f"dogstatsd-lookup {self.host}", daemon=True).start()
        if not done.wait(self._patience):
            self._failed("timed out")
            self.answered.set()
            done.wait()
        if self._stop.is_set():
            return
        result = outcome[0]
        if isinstance(result, str):
            self._resolved(result)
        else:
            self._failed(_reason(result))

    def _resolved(self, address: str) -> None:
        self.current = address
        if self._failing:
            self._failing = False
            self._report(f"DogStatsD: {self.host} resolves again ({address}); metrics go there")

    def _failed(self, reason: str) -> None:
        if self._failing:
            return
        self._failing = True
        if self.current is None:
            fate = "metrics wait" if self._clock() < self._hold_until else "metrics are dropped"
            self._report(f"DogStatsD: cannot resolve {self.host} ({reason}); {fate}, logs go on")
        else:
            self._report(
                f"DogStatsD: cannot resolve {self.host} ({reason}); metrics still go to "
                f"{self.current}"
            )


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__

"""What every command does in its own process: pace the cycle collector, note on stderr,
stop on SIGINT and SIGTERM."""

from __future__ import annotations

import gc
import signal
import sys
import threading


def relax_gc() -> None:
    """Run the cycle collector rarely: events are acyclic dicts, freed as soon as written, and
    with the default threshold the collector would walk the young objects every ~90 events.
    Objects alive now (grammars, caches) are moved out of its sight for good."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def warn(message: str) -> None:
    """One line on stderr, ``logpipe: message``."""
    print(f"logpipe: {message}", file=sys.stderr, flush=True)


def stop_on_signals() -> tuple[threading.Event, list[signal.Signals]]:
    """An event set by SIGINT or SIGTERM, and the signals received (the command finishes what is
    in flight, then stops)."""
    stop = threading.Event()
    received: list[signal.Signals] = []

    def request_stop(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum))
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop, received

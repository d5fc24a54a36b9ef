"""What every command does in its own process: pace the cycle collector, note on stderr."""

from __future__ import annotations

import gc
import sys


def relax_gc() -> None:
    """Run the cycle collector rarely: events are acyclic dicts, freed as soon as written, and
    with the default threshold the collector would walk the young objects every ~90 events.
    Objects alive now (grammars, caches) are moved out of its sight for good."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def warn(message: str) -> None:
    """One line on stderr, ``logpipe: message``."""
    print(f"logpipe: {message}", file=sys.stderr, flush=True)

"""Wake the follow loop early when a followed file is created, renamed or deleted (watchdog),
as a hint only.

The follower's periodic rescan is the source of truth: watchdog drops events when inotify's
queue overflows, and cannot watch every filesystem. If watchdog cannot start (no inotify, watch
limit reached), logpipe says so once and relies on the rescan alone. Appends are not watched:
they are found by the rescan a fraction of a second later, and passing each write through
watchdog's threads cost a sidecar several percent of a core at 100 lines/s.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterable
from fnmatch import fnmatch

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

# What rotation does to a path (the kernel is asked for these events only).
_RENAMES: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent]


class _Poke(FileSystemEventHandler):
    def __init__(self, event: threading.Event, names: set[str]) -> None:
        """``names``: patterns of the file names to wake for."""
        self._event = event
        self._names = names

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = (event.src_path, getattr(event, "dest_path", ""))
        names = [os.path.basename(os.fsdecode(path)) for path in paths]
        if any(fnmatch(name, pattern) for name in names for pattern in self._names):
            self._event.set()


class Waker:
    """``wait(timeout)`` returns early when a followed file's directory shows activity."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._event = threading.Event()
        self._observer: BaseObserver | None = None
        self.problem: str | None = None
        directories: dict[str, set[str]] = {}  # directory -> name patterns (rotated names too)
        for path in paths:
            directory, name = os.path.split(os.path.abspath(path))
            if glob.has_magic(directory):
                continue  # a wildcard directory: the rescan alone finds its files
            pattern = (name if glob.has_magic(name) else glob.escape(name)) + "*"
            directories.setdefault(directory, set()).add(pattern)
        try:
            observer = Observer()
            for directory, names in directories.items():
                if os.path.isdir(directory):
                    observer.schedule(
                        _Poke(self._event, names),
                        directory,
                        recursive=False,
                        event_filter=_RENAMES,
                    )
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as error:
            self.problem = f"file notifications unavailable ({error}); rescanning every interval"

    def wait(self, timeout: float) -> None:
        """Sleep until activity, ``wake()``, or ``timeout`` seconds."""
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        """End the current ``wait`` now (e.g. on a shutdown signal)."""
        self._event.set()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)

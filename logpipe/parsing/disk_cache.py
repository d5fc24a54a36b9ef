"""Results kept on disk between runs, so that a short run starts about as fast as Python does.

* ``cached``: what is compiled from the grammars. The fast paths need only the terminals'
  regexes; reading them from a small JSON file keyed by the grammar text spares
  importing and running Lark's grammar compiler (~40 ms) at every start. Lark is loaded only
  when a line needs it.
* ``StoredTable``: user-agent details already worked out, so that a run whose user agents were
  all seen before never builds ua-parser's rule set (~140 ms).

The directory is ``$LOGPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/logpipe``, else
``~/.cache/logpipe``. If it cannot be written, logpipe simply computes everything each time.
A new version of a file (after an upgrade of logpipe or ua-parser) leaves the older ones, which
are deleted once ``STALE_DAYS`` have passed since they were last written.
"""

from __future__ import annotations

import atexit
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

FORMAT_VERSION = "2"  # bump when what is cached changes shape
STALE_DAYS = 30  # an older version of a file not written for this long is deleted (_prune)


def cache_dir() -> Path:
    explicit = os.environ.get("LOGPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "logpipe"


def cached(name: str, source: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` (a JSON value), read from the cache when ``source`` has not changed."""
    path = _path(name, source)
    value = _read(path, source)
    if value is None:
        value = compute()
        _write(path, source, value)
    return value


class StoredTable:
    """A string-keyed table of JSON values, read from disk on first use and written back at
    exit when it grew (the newest ``max_size`` entries are kept). Keys longer than
    ``max_key_chars`` are not kept: every start reads the table, and a hostile client's
    megabyte user agent has no business slowing them all."""

    def __init__(
        self, name: str, version: str, *, max_size: int = 10_000, max_key_chars: int = 1024
    ) -> None:
        self.path = _path(name, version)
        self.version = version
        self.max_size = max_size
        self.max_key_chars = max_key_chars
        self._values: dict[str, Any] = {}
        self._loaded = False
        self._grown = False

    def get(self, key: str) -> Any:
        if not self._loaded:
            stored = _read(self.path, self.version)
            if isinstance(stored, dict):
                self._values = {**stored, **self._values}
            self._loaded = True
        return self._values.get(key)

    def put(self, key: str, value: Any) -> Any:
        """Store ``value`` for ``key`` (unless the key is too long to keep) and return it."""
        if len(key) > self.max_key_chars:
            return value
        self._values[key] = value
        if not self._grown:
            self._grown = True
            atexit.register(self.save)
        return value

    def save(self) -> None:
        if self._grown:
            newest = dict(list(self._values.items())[-self.max_size :])
            _write(self.path, self.version, newest)
            self._grown = False


def _path(name: str, version: str) -> Path:
    """The file for ``name`` at ``version``. The name holds a checksum of the version, which
    tells versions apart; the file holds the version itself, which ``_read`` compares (no
    cryptographic hash needed, and no OpenSSL to load at start)."""
    checksum = zlib.crc32(f"{FORMAT_VERSION}\0{version}".encode())
    return cache_dir() / f"{name}-{checksum:08x}.json"


def _read(path: Path, version: str) -> Any:
    """The value stored in ``path`` for ``version``, or None."""
    try:
        stored = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(stored, dict) or stored.get("version") != [FORMAT_VERSION, version]:
        return None
    return stored.get("value")


def _write(path: Path, version: str, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps({"version": [FORMAT_VERSION, version], "value": value}))
        os.replace(temporary, path)
    except OSError:
        return  # a read-only home: compute again next time
    _prune(path)


def _prune(path: Path) -> None:
    """Delete the other versions of ``path``'s name not written for ``STALE_DAYS`` (left by
    upgrades of logpipe or ua-parser). By age, not by number: installs that share the cache
    (several virtual environments) would otherwise delete each other's files in turn."""
    name = path.name.rsplit("-", 1)[0]
    oldest = time.time() - STALE_DAYS * 86_400
    try:
        for other in path.parent.glob(f"{name}-*.json"):
            if other != path and other.stat().st_mtime < oldest:
                other.unlink()
    except OSError:
        pass  # another process pruned first

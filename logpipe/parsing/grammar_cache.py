"""What is compiled from the grammars, kept on disk so that start-up need not load Lark.

The fast paths need only the terminals' regexes. Reading them from a small JSON file keyed by a
hash of the grammar text spares importing and running Lark's grammar compiler (~40 ms) at every
start; Lark is loaded only when a line needs it. The cache directory is ``$LOGPIPE_CACHE_DIR``,
else ``$XDG_CACHE_HOME/logpipe``, else ``~/.cache/logpipe``; if it cannot be written, logpipe
simply compiles every time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

FORMAT_VERSION = "1"  # bump when what is cached changes shape


def cache_dir() -> Path:
    explicit = os.environ.get("LOGPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "logpipe"


def cached(name: str, source: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` (a JSON value), read from the cache when ``source`` has not changed."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}\0{source}".encode()).hexdigest()[:24]
    path = cache_dir() / f"{name}-{digest}.json"
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(value))
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: compile again next time
    return value

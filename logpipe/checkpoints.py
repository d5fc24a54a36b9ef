"""Checkpoints: per file identity, the offset below which every event was delivered.

They live in ``checkpoints.json`` in the state directory (``{"version": 1, "checkpoints":
[...]}``). A save never leaves that directory without a complete copy:

1. the new document is written to ``checkpoints.json.tmp`` and fsynced;
2. ``checkpoints.json.bak`` becomes a second name (hard link) of the current file, which stays
   in place (where hard links are refused, the current file is renamed to the backup);
3. ``checkpoints.json.tmp`` replaces ``checkpoints.json`` (``os.replace``, atomic);
4. the directory is fsynced, so the renames survive a power cut.

A load that finds the main file damaged reports it and falls back to the backup, then to a
complete temporary file; it never quietly starts over.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

VERSION = 1
FILE_NAME = "checkpoints.json"
_FIELDS = {"identity": str, "path": str, "offset": int, "fingerprint_bytes": int}
_KINDS = {str: "a string", int: "a non-negative integer"}


class CorruptCheckpoints(ValueError):
    """Checkpoint files exist but none of them can be used."""


@dataclass(frozen=True)
class Checkpoint:
    """Where to resume a file: everything before ``offset`` was delivered."""

    identity: str  # the file's identity (a head fingerprint)
    path: str  # where the file was last seen (informational)
    offset: int  # the next byte to read
    fingerprint_bytes: int  # how many head bytes ``identity`` covers

    def __post_init__(self) -> None:
        if problem := _problem(vars(self)):
            raise ValueError(f"not a valid checkpoint: {problem} ({self!r})")


def _print_problem(message: str) -> None:
    print(f"logpipe: {message}", file=sys.stderr, flush=True)


class CheckpointStore:
    """Loads and saves the checkpoints of ``state_dir``; problems found on load go to
    ``on_problem`` (one line each) and are counted in ``problems``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        on_problem: Callable[[str], None] = _print_problem,
        file_name: str = FILE_NAME,
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / file_name
        self.backup = state_dir / f"{file_name}.bak"
        self.temporary = state_dir / f"{file_name}.tmp"
        self.on_problem = on_problem
        self.problems = 0
        self._saved: bytes | None = None  # what the main file holds, when known
        self._good = self.path  # the file with the last good state (the one to keep)

    def load(self) -> dict[str, Checkpoint]:
        """The stored checkpoints by identity; ``{}`` on a first run (no file at all).

        Raises ``CorruptCheckpoints`` when files exist but none is usable. A temporary file
        alone (a first save was interrupted) is reported and counts as a first run.
        """
        candidates = [self.path, self.backup, self.temporary]
        existing = [path for path in candidates if path.exists()]
        if not existing:
            return {}
        reasons = []
        for path in candidates:
            if path != self.path and path not in existing:
                continue
            try:
                data = _read(path)
                checkpoints = _parse(data)
            except _Unusable as error:
                reasons.append(f"{path.name}: {error}")
                self.problems += 1
                self.on_problem(f"checkpoint file {path} is unusable: {error}")
                continue
            self._good = path
            self._saved = data if path == self.path else None
            return checkpoints
        if existing == [self.temporary]:
            return {}
        raise CorruptCheckpoints(f"no usable checkpoints in {self.state_dir}: {'; '.join(reasons)}")

    def saved_at(self) -> float | None:
        """When the stored checkpoints were last saved (None: never)."""
        for path in (self.path, self.backup):
            with contextlib.suppress(OSError):
                return path.stat().st_mtime
        return None

    def save(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Store ``checkpoints`` (one per identity) durably; nothing is written when they are
        what the main file already holds. Raises ``OSError`` when they cannot be written (the
        files stored before stay as they were)."""
        ordered = sorted(checkpoints, key=attrgetter("identity"))
        if any(first.identity == second.identity for first, second in pairwise(ordered)):
            raise ValueError("two checkpoints for one identity")
        document = {"version": VERSION, "checkpoints": ordered}
        data = orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)
        if data == self._saved:
            return
        self._saved = None  # until this save is complete, the main file may hold anything
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._good == self.temporary:  # the only good copy: keep it as the backup
                os.replace(self.temporary, self.backup)
                self._good = self.backup
                _sync_directory(self.state_dir)
            _write_synced(self.temporary, data)
            if self._good == self.path:
                self._back_up()
            os.replace(self.temporary, self.path)
            self._good = self.path
            _sync_directory(self.state_dir)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)
            where = error.filename or str(self.temporary)
            raise OSError(error.errno, error.strerror, where) from None
        self._saved = data

    def check_writable(self) -> None:
        """Create the state dir if needed, then write, sync and remove a file in it: raises
        ``OSError`` when checkpoints could not be saved there."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = self.state_dir / f"{self.path.name}.probe"
        try:
            _write_synced(probe, b"probe\n")
        finally:
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()

    def _back_up(self) -> None:
        """Make the backup a second name of the main file, which stays in place meanwhile."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.backup)
        try:
            os.link(self.path, self.backup)
        except FileNotFoundError:
            pass  # no main file yet
        except OSError:  # no hard links on this file system: until the replace, only the backup
            os.replace(self.path, self.backup)
            self._good = self.backup


class _Unusable(Exception):
    """Why a checkpoint file cannot be used."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _Unusable("missing") from None
    except OSError as error:
        raise _Unusable(f"unreadable ({error.strerror})") from None


def _parse(data: bytes) -> dict[str, Checkpoint]:
    if not data:
        raise _Unusable("empty")
    if b"\0" in data:
        where = f"from byte {data.index(0)}" if data.strip(b"\0") else "only"
        raise _Unusable(f"NUL bytes {where} (a torn write)")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        what = "truncated JSON" if str(error).startswith("unexpected end") else "not JSON"
        raise _Unusable(f"{what} ({error})") from None
    if not isinstance(document, dict) or "version" not in document:
        raise _Unusable("no version field")
    version = document["version"]
    if type(version) is not int or version != VERSION:
        raise _Unusable(f"version {version!r}, expected {VERSION}")
    entries = document.get("checkpoints")
    if not isinstance(entries, list):
        raise _Unusable("no checkpoints list")
    checkpoints = {}
    for number, entry in enumerate(entries, 1):
        if problem := _problem(entry):
            raise _Unusable(f"checkpoint {number}: {problem}")
        checkpoints[entry["identity"]] = Checkpoint(**entry)
    if len(checkpoints) < len(entries):
        raise _Unusable("two checkpoints for one identity")
    return checkpoints


def _problem(entry: Any) -> str:
    """What is wrong with a checkpoint's fields ("" when nothing is)."""
    if not isinstance(entry, dict):
        return "is not an object"
    for name, kind in _FIELDS.items():
        if name not in entry:
            return f"has no {name}"
        value = entry[name]
        if type(value) is not kind or (isinstance(value, int) and value < 0):
            return f"{name} is not {_KINDS[kind]}"
    unknown = sorted(map(str, entry.keys() - _FIELDS.keys()))
    return f"has an unknown field {unknown[0]!r}" if unknown else ""


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

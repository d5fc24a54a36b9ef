"""Shared by the bench scripts: run a command, get its wall time and peak RSS; pick the tree.

Peak RSS comes from `/usr/bin/time -f %M`, not from `os.wait4` on our own child: Linux charges a
child's `ru_maxrss` with the high-water mark of the process that forked it (kept through exec,
even for vfork), so a bench script holding 200 MB would report 200 MB for `/bin/true`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Tree:
    """Which logpipe to run: the installed package, or the one at ``pythonpath``."""

    pythonpath: str | None = None

    def env(self) -> dict[str, str]:
        """The environment for a logpipe process of this tree."""
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def command(self, *args: str) -> list[str]:
        """``python -m logpipe ARGS`` (run it with a cwd outside the work tree)."""
        return [sys.executable, "-m", "logpipe", *args]

    def compile(self) -> None:
        """Write the tree's bytecode, as an installed package has it (`make bench` does this
        for the work tree; PYTHONDONTWRITEBYTECODE would otherwise recompile at every start)."""
        if self.pythonpath:
            package = str(Path(self.pythonpath) / "logpipe")
            subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)

    def describe(self) -> str:
        return f"PYTHONPATH={self.pythonpath}" if self.pythonpath else "the installed package"


class Measured:
    """A started process whose wall time and peak RSS are taken when it ends."""

    def __init__(
        self,
        args: Sequence[str],
        stdout: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stderr: Path | None = None,
    ) -> None:
        handle, name = tempfile.mkstemp(prefix="rss-", suffix=".txt")
        os.close(handle)
        self._rss_file = Path(name)
        self._stdout = open(stdout or os.devnull, "wb")  # noqa: SIM115 (closed in finish)
        self._stderr = open(stderr, "wb") if stderr else None  # noqa: SIM115 (the same)
        self.cpu = 0.0
        self.args = list(args)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [TIME, "-f", "%U %S %M", "-o", name, *args],
            stdout=self._stdout,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
        )

    def finish(self, timeout: float = 600) -> tuple[float, int]:
        """Wait for the end: (wall seconds since the start, peak RSS in KB); the CPU seconds
        (user + system) are left in ``cpu``."""
        code = self.process.wait(timeout)
        elapsed = time.perf_counter() - self.started
        self._stdout.close()
        if self._stderr:
            self._stderr.close()
        text = self._rss_file.read_text()
        self._rss_file.unlink()
        if code != 0:
            raise SystemExit(f"{' '.join(self.args)} failed ({code})")
        user, system, rss = text.strip().splitlines()[-1].split()
        self.cpu = float(user) + float(system)
        return elapsed, int(rss)


def run(
    args: Sequence[str],
    target: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[float, int]:
    """Wall time and peak RSS (KB) of one process, its stdout to ``target``."""
    return Measured(args, target, env, cwd).finish()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> None:
    """Poll ``predicate`` until it holds; SystemExit after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(interval)


class LineCounter:
    """Counts the lines of a growing file, reading only what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._offset = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as data:
                data.seek(self._offset)
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    self.lines += chunk.count(b"\n")
                    self._offset += len(chunk)
        except FileNotFoundError:
            pass
        return self.lines

    def reached(self, lines: int) -> bool:
        return self.count() >= lines


def count_lines(path: Path) -> int:
    return LineCounter(path).count()

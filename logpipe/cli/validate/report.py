"""The lines of ``logpipe validate``: one per check (``ok``, ``warn``, ``FAIL``), then a sum."""

from __future__ import annotations

from typing import TextIO

OK, WARN, FAIL = "ok", "warn", "FAIL"


class Report:
    """The check lines, as they are made, and their counts."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.counts = {OK: 0, WARN: 0, FAIL: 0}

    def line(self, verdict: str, subject: str, detail: str = "") -> None:
        self.counts[verdict] += 1
        text = f"{verdict:<6}{subject}" + (f": {detail}" if detail else "")
        print(text, file=self._out, flush=True)

    def ok(self, subject: str, detail: str = "") -> None:
        self.line(OK, subject, detail)

    def warn(self, subject: str, detail: str = "") -> None:
        self.line(WARN, subject, detail)

    def fail(self, subject: str, detail: str = "") -> None:
        self.line(FAIL, subject, detail)

    def finish(self) -> bool:
        """Write the line summing up; whether any check failed."""
        print(self.summary(), file=self._out, flush=True)
        return self.counts[FAIL] > 0

    def summary(self) -> str:
        total = sum(self.counts.values())
        warnings = self.counts[WARN]
        verdict = "logpipe can start" if not self.counts[FAIL] else "fix the FAIL lines"
        return (
            f"{total} check{'' if total == 1 else 's'}: {self.counts[OK]} ok, {warnings} warning"
            f"{'' if warnings == 1 else 's'}, {self.counts[FAIL]} failed: {verdict}"
        )


def lower_first(text: str) -> str:
    """``Permission denied`` -> ``permission denied`` (an error's words inside a line)."""
    return text[:1].lower() + text[1:]

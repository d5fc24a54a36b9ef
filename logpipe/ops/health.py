"""Whether a running follower delivers: the verdict ``/health`` answers with (200 or 503),
judged from its latest snapshot at the time of asking."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from logpipe.pipeline.snapshot import Snapshot

STALE_AFTER = 10.0  # a snapshot older than this (or the threshold) means the loop is stuck


@dataclass(frozen=True)
class Health:
    """``status``: ``ok`` (delivering), ``starting`` (no snapshot yet, within the threshold)
    or ``stuck``, with ``reason`` (one line)."""

    status: str
    reason: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status != "stuck"


def verdict(
    snapshot: Snapshot | None,
    now: float,
    threshold: float,
    *,
    waiting_since: float,
    paused_since: float | None = None,
) -> Health:
    """The follower is stuck when, for longer than ``threshold`` seconds: it has events
    pending and every try to deliver them failed; its logs are paused (``paused_since``: when
    that was first seen); or no snapshot came (since ``waiting_since``, the endpoint's start).
    A snapshot older than ``threshold`` and ``STALE_AFTER`` means the loop itself is stuck."""
    if snapshot is None:
        waited = now - waiting_since
        if waited > threshold:
            return Health("stuck", f"the follow loop has published no snapshot in {waited:.0f} s")
        return Health("starting")
    age = now - snapshot["taken_at"]
    if age > max(threshold, STALE_AFTER):
        return Health("stuck", f"the follow loop has published no snapshot for {age:.0f} s")
    outage, outage_since = snapshot.get("write_outage"), snapshot.get("write_outage_since")
    if outage and outage_since is not None and now - outage_since > threshold:
        return Health("stuck", f"{outage} for {now - outage_since:.0f} s")
    sink = snapshot["sink"]
    pending = sink["pending"]
    failing_since = sink["failing_since"]
    if pending and failing_since is not None and now - failing_since > threshold:
        what = sink["last_error"] or f"{sink['target']}: failing"
        if sink["kind"] == "datadog":
            what = f"logs intake: {what}"
        return Health(
            "stuck", f"{what} for {now - failing_since:.0f} s, {pending:,} events pending"
        )
    if snapshot["logs_paused"] and paused_since is not None and now - paused_since > threshold:
        return Health(
            "stuck",
            f"logs paused (the sink is congested) for {now - paused_since:.0f} s, "
            f"{pending:,} events pending",
        )
    return Health("ok")


class HealthCheck:
    """``verdict`` with the endpoint's memory: when it started waiting for a snapshot, and
    since when the snapshots it was shown say the logs are paused."""

    def __init__(self, threshold: float, started: float) -> None:
        self.threshold = threshold
        self._started = started
        self._paused_since: float | None = None
        self._lock = threading.Lock()

    def judge(self, snapshot: Snapshot | None, now: float) -> Health:
        with self._lock:
            if snapshot is None or not snapshot["logs_paused"]:
                self._paused_since = None
            elif self._paused_since is None:
                self._paused_since = snapshot.get("logs_paused_since") or snapshot["taken_at"]
            paused_since = self._paused_since
        return verdict(
            snapshot,
            now,
            self.threshold,
            waiting_since=self._started,
            paused_since=paused_since,
        )

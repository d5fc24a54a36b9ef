"""Counts at the logs' own times, for replay: summed per bucket of log time, then sent with
``count_with_timestamp``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from logpipe.metrics.client import SELF_PREFIX, shutdown, twin_without_namespace

if TYPE_CHECKING:  # imported where clients are made: worker processes only count, never send
    from datadog.dogstatsd.base import DogStatsd

SETTLE_SECONDS = 600  # a bucket this far behind the newest gets no more events


Sums = dict[tuple[str, tuple[str, ...], int], float]  # (metric, tags, bucket start) -> sum


class BucketedCounts:
    """Counts at the events' own time: summed per ``bucket_seconds`` of log time.

    It stands in for the DogStatsd client an ``EventMetrics`` uses: set ``at`` (epoch seconds
    of the event) before each ``observe``. Distributions and gauges cannot carry a timestamp, so
    ``request.duration`` is not counted. Sums of separate parts of a replay ``merge``; a
    ``TimestampedCounts`` sends them.
    """

    namespace = None  # EventMetrics then counts logpipe.* here too; the sender routes them

    def __init__(self, *, bucket_seconds: int = 10) -> None:
        self.bucket = bucket_seconds
        self.sums: Sums = {}
        self.at = 0.0

    def count(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        bucket = int(self.at // self.bucket * self.bucket)
        key = (metric, tuple(tags or ()), bucket)
        self.sums[key] = self.sums.get(key, 0) + value

    def distribution(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        """Not sendable with a timestamp: dropped."""

    def gauge(self, metric: str, value: float, tags: Sequence[str] | None = None) -> None:
        """Not meaningful for past data: dropped."""

    def merge(self, other: BucketedCounts) -> None:
        """Add ``other``'s sums to these."""
        sums = self.sums
        for key, value in other.sums.items():
            sums[key] = sums.get(key, 0) + value

    def take_settled(self) -> Sums:
        """Remove and return the sums of the buckets that ended ``SETTLE_SECONDS`` before the
        newest bucket of the same metric (each series of files has its own times: an error log
        replayed after the access logs starts back in time).

        The Agent does not aggregate timestamped points, so a second point for a bucket could
        replace the first: a bucket is sent when no more events should fall into it (log lines
        are ordered by when requests ended, their time is when they began; consecutive files of
        a series share the bucket of the rotation). Only a log whose clock jumps back more than
        that gets a second point for a bucket. Counts of events without a time (bucket 0) wait
        for the end.
        """
        newest: dict[str, int] = {}
        for metric, _, bucket in self.sums:
            if bucket > newest.get(metric, 0):
                newest[metric] = bucket
        settled = {
            key: value
            for key, value in self.sums.items()
            if 0 < key[2] < newest[key[0]] - SETTLE_SECONDS
        }
        for key in settled:
            del self.sums[key]
        return settled


class TimestampedCounts(BucketedCounts):
    """``BucketedCounts`` sent with ``count_with_timestamp`` (DogStatsD protocol 1.3, Agent
    7.40+) at each flush, for replay. datadogpy's own aggregator ignores timestamps, so the
    client given here has its aggregation turned off.
    """

    def __init__(self, statsd: DogStatsd, *, bucket_seconds: int = 10) -> None:
        super().__init__(bucket_seconds=bucket_seconds)
        statsd.disable_aggregation()
        self._statsd = statsd
        self._plain = (  # flushed by the caller, like ``statsd``
            twin_without_namespace(statsd, flush_thread=False) if statsd.namespace else statsd
        )
        self._plain.disable_aggregation()

    def flush_aggregated_metrics(self) -> None:
        """Send the bucketed sums (each with its bucket's timestamp) and start afresh."""
        self.send(self.sums)
        self.sums = {}

    def send(self, sums: Sums) -> None:
        """Send ``sums`` (what ``take_settled`` took), each with its bucket's timestamp."""
        for key in sorted(sums):
            metric, tags, bucket = key
            client = self._plain if metric.startswith(SELF_PREFIX) else self._statsd
            client.count_with_timestamp(
                metric, sums[key], timestamp=bucket, tags=list(tags) or None
            )

    def flush(self) -> None:
        self._statsd.flush()
        self._plain.flush()

    def close(self) -> None:
        """Send what is left and close the clients."""
        self.flush_aggregated_metrics()
        for client in {id(self._statsd): self._statsd, id(self._plain): self._plain}.values():
            shutdown(client)

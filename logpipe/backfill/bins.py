"""Time bins for charts: a nice step for a time span (at most ``MAX_BINS`` bins), counts kept
per ``summary.BIN_MS`` re-binned to it, and percentiles read from log-scale duration buckets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from logpipe.backfill.summary import BIN_MS, bucket_bounds

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
STEPS_MS = (
    MINUTE,
    5 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
)
MAX_BINS = 300


def step_for(first: int, last: int, max_bins: int = MAX_BINS) -> int:
    """The smallest nice step (1 min, 5 min, 15 min, 30 min, 1 h... 1 week) that covers
    ``first``..``last`` (epoch ms) in at most ``max_bins`` bins."""
    for step in STEPS_MS:
        if step >= BIN_MS and (last // step - first // step + 1) <= max_bins:
            return step
    return STEPS_MS[-1]


def bin_starts(first: int, last: int, step: int) -> list[int]:
    """Every bin start from ``first``'s bin to ``last``'s, empty bins included."""
    return list(range(first - first % step, last - last % step + 1, step))


def rebin(counts: Iterable[tuple[int, int]], step: int) -> dict[int, int]:
    """(fine bin start, count) pairs summed per ``step`` bin."""
    binned: dict[int, int] = {}
    for start, count in counts:
        key = start - start % step
        binned[key] = binned.get(key, 0) + count
    return binned


def rebin_histograms(histograms: Mapping[int, Sequence[int]], step: int) -> dict[int, list[int]]:
    """Duration bucket counts per fine bin, summed per ``step`` bin."""
    binned: dict[int, list[int]] = {}
    for start, counts in histograms.items():
        key = start - start % step
        held = binned.get(key)
        binned[key] = (
            list(counts) if held is None else [a + b for a, b in zip(held, counts, strict=True)]
        )
    return binned


def percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0.5 for p50) in ms, read from duration bucket counts: in the
    bucket that holds it, interpolated as if its durations were evenly spread (None for no
    counts)."""
    total = sum(counts)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for bucket, count in enumerate(counts):
        if count and seen + count >= rank:
            low, high = bucket_bounds(bucket)
            return (low + (high - low) * (rank - seen) / count) / 1000
        seen += count
    return None  # not reached: seen ends at total

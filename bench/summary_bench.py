"""The replay summary's cost per event: ``Summary.observe`` timed over parsed bench events.

Events are parsed once (default format, the same lines with durations, an error log), then
observed ``--runs`` times; the best run is kept. Usage:
    python bench/summary_bench.py [--lines 200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_logs import access_lines, error_records, with_durations  # noqa: E402
from parse_bench import DURATIONS_FORMAT  # noqa: E402

from logpipe import AccessParser, ErrorParser, Multiline  # noqa: E402
from logpipe.backfill.summary import Summary  # noqa: E402
from logpipe.event import Event  # noqa: E402
from logpipe.pipeline.batch import access_events, error_events  # noqa: E402


def events(lines: list[str], parser: AccessParser) -> list[Event]:
    import io

    return list(access_events(io.BytesIO(("\n".join(lines) + "\n").encode()), parser))


def best(observed: list[Event], runs: int) -> float:
    """Best seconds to observe every event into a new Summary."""
    times = []
    for _ in range(runs):
        summary = Summary()
        observe = summary.observe
        started = time.process_time()
        for event in observed:
            observe(event)
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    import io

    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--lines", type=int, default=200_000)
    options.add_argument("--runs", type=int, default=5)
    args = options.parse_args()
    lines = access_lines(args.lines)
    records = "\n".join(error_records(args.lines // 10)) + "\n"
    sets = {
        "access (default format)": events(lines, AccessParser()),
        "access with durations": events(with_durations(lines), AccessParser(DURATIONS_FORMAT)),
        "error records": list(
            error_events(io.BytesIO(records.encode()), ErrorParser(), Multiline())
        ),
    }
    gc.freeze()  # as replay's relax_gc does: the parsed events are not the collector's work
    gc.set_threshold(100_000, 50, 100)
    for name, observed in sets.items():
        seconds = best(observed, args.runs)
        print(
            f"{name:26} {len(observed):>9,} events  {seconds * 1e9 / len(observed):6.0f} ns/event"
        )


if __name__ == "__main__":
    main()

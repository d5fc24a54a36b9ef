"""Sidecar cost: logpipe's CPU and memory while it follows logs written at a steady rate.

logpipe follows an access and an error log (`--output file:`, `--dogstatsd off`) while this
process appends default-format access lines at each rate, and one error record per 100 access
lines, in bursts every 10 ms against a monotonic schedule (the writer is not counted). After
--warmup seconds, logpipe's CPU time (user + system, children included) is taken over --window
seconds, as % of one core; then its RSS; then the output must hold every line written.
Prints a table and, for the installed package, records it in bench/RESULTS.md. Usage:
    python bench/sidecar_bench.py [--rates 0,100,1000] [--warmup 5] [--window 30] [--runs 1]
        [--pythonpath /tmp/old] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_logs import access_lines, error_records
from measure import LineCounter, Tree, wait_for
from parse_bench import HERE, record

TICK = 0.01  # seconds between bursts
ERROR_EVERY = 100  # access lines per error record
TARGETS = {0: 0.1, 100: 1.0, 1000: 2.0}  # % of one core, as the project set them


@dataclass(frozen=True)
class Result:
    cpu_percent: float
    rss_mb: float
    written: int  # access lines + error records
    received: int  # events in the output file
    paced: float  # access lines/s achieved over the window
    late_ms: float  # the writer's worst lateness against its schedule


class Writer:
    """Appends access lines at ``rate`` a second, with an error record every 100 of them."""

    def __init__(self, directory: Path, rate: int, seconds: float) -> None:
        self.rate = rate
        count = max(1, int(rate * seconds) + rate)
        self.lines = [f"{line}\n".encode() for line in access_lines(count)]
        self.records = [
            f"{record}\n".encode() for record in error_records(count // ERROR_EVERY + 1)
        ]
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.access = os.open(directory / "access.log", flags, 0o644)
        self.error = os.open(directory / "error.log", flags, 0o644)
        self.written = 0
        self.errors = 0

    def write_due(self, elapsed: float) -> None:
        """Write, as one burst per file, what the schedule owes at ``elapsed`` seconds."""
        due = int(self.rate * elapsed)
        if due <= self.written:
            return
        burst = [self.lines[n % len(self.lines)] for n in range(self.written, due)]
        os.write(self.access, b"".join(burst))
        records = due // ERROR_EVERY
        if records > self.errors:
            chosen = [self.records[n % len(self.records)] for n in range(self.errors, records)]
            os.write(self.error, b"".join(chosen))
            self.errors = records
        self.written = due

    def close(self) -> None:
        os.close(self.access)
        os.close(self.error)


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of ``process`` and its children, living and reaped."""
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def rss_bytes(process: psutil.Process) -> int:
    total: int = process.memory_info().rss
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def measure(tree: Tree, directory: Path, rate: int, warmup: float, window: float) -> Result:
    """One logpipe beside one writer at ``rate``: its CPU over the window, RSS, delivery."""
    directory.mkdir()
    writer = Writer(directory, rate, warmup + window)
    output = directory / "events.ndjson"
    command = tree.command(
        "--access", str(directory / "access.log"), "--error", str(directory / "error.log"),
        "--output", f"file:{output}", "--state-dir", str(directory / "state"),
        "--start-at", "beginning", "--dogstatsd", "off", "--status-interval", "0",
    )  # fmt: skip
    with open(directory / "logpipe.err", "wb") as errors:
        child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=errors, env=tree.env(), cwd=directory
        )
    process = psutil.Process(child.pid)
    try:
        wait_for(output.exists, 30)
        started = time.monotonic()
        tick, late = 0, 0.0
        while True:
            now = time.monotonic()
            elapsed = now - started
            late = max(late, elapsed - tick * TICK)
            writer.write_due(elapsed)
            if tick == round(warmup / TICK):
                window_start, written_at_start = now, writer.written
                cpu_start = cpu_seconds(process)
            elif tick == round((warmup + window) / TICK):
                cpu_end, window_end = cpu_seconds(process), now
                break
            tick += 1
            # Pacing, not synchronisation: sleep to the next 10 ms mark of the schedule.
            time.sleep(max(0.0, started + tick * TICK - time.monotonic()))
        expected = writer.written + writer.errors
        counter = LineCounter(output)
        with suppress(SystemExit):  # a record held back is counted after the stop below
            wait_for(partial(counter.reached, expected), 30, interval=0.05)
        rss = rss_bytes(process)
    finally:
        writer.close()
        child.terminate()
        child.wait(30)
    return Result(
        cpu_percent=100 * (cpu_end - cpu_start) / (window_end - window_start),
        rss_mb=rss / 2**20,
        written=expected,
        received=counter.count(),
        paced=(writer.written - written_at_start) / (window_end - window_start),
        late_ms=late * 1000,
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--rates", default="0,100,1000", help="access lines/s, comma-separated")
    options.add_argument("--warmup", type=float, default=5)
    options.add_argument("--window", type=float, default=30)
    options.add_argument("--runs", type=int, default=1, help="runs of each rate, in turn")
    options.add_argument("--pythonpath", help="run the logpipe of this tree (default: installed)")
    options.add_argument("--no-record", action="store_true", help="leave RESULTS.md as it is")
    args = options.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]
    tree = Tree(args.pythonpath)
    tree.compile()
    results: dict[int, list[Result]] = {rate: [] for rate in rates}
    with tempfile.TemporaryDirectory(dir=HERE) as temporary:
        for run in range(args.runs):
            for rate in rates:
                directory = Path(temporary) / f"{rate}-{run}"
                results[rate].append(measure(tree, directory, rate, args.warmup, args.window))
    rows = [
        f"logpipe follows an access and an error log (`--output file: --dogstatsd off "
        f"--status-interval 0`) while a writer appends default-format access lines at each "
        f"rate, plus one error record per {ERROR_EVERY} (5% with tracebacks), in bursts every "
        f"10 ms. CPU: user + system of logpipe and its children over {args.window:g} s after a "
        f"{args.warmup:g} s warm-up, as % of one core (clock ticks of 10 ms: "
        f"{1 / args.window:.2f} % of resolution); best / median of {args.runs} run(s); RSS "
        f"at the end of the window (median). Tree: {tree.describe()}.",
        "",
        "| access lines/s | achieved | writer late, max | events written | CPU % of a core "
        "| target | RSS | every event out |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rate in rates:
        runs = results[rate]
        cpu = sorted(result.cpu_percent for result in runs)
        target = f"< {TARGETS[rate]:g} %" if rate in TARGETS else "-"
        delivered = all(result.received == result.written for result in runs)
        rows.append(
            f"| {rate:,} | {statistics.median(r.paced for r in runs):,.1f} "
            f"| {max(r.late_ms for r in runs):.0f} ms "
            f"| {statistics.median(r.written for r in runs):,.0f} "
            f"| {cpu[0]:.2f} / {statistics.median(cpu):.2f} | {target} "
            f"| {statistics.median(r.rss_mb for r in runs):.0f} MB "
            f"| {'yes' if delivered else 'NO: ' + str([(r.received, r.written) for r in runs])} |"
        )
    report = "\n".join(rows)
    print(report)
    if not args.no_record and not args.pythonpath:
        record(report, heading="## Sidecar (bench/sidecar_bench.py)")


if __name__ == "__main__":
    main()

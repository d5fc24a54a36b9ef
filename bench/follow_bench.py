"""Follow mode: write-to-emit latency at 5,000 lines/s, and memory after following 1 GB.

Usage: python bench/follow_bench.py [--seconds 10] [--gigabytes 1.0]
Prints a table and records it in bench/RESULTS.md (section "Follow mode").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parse_bench import record

LINE = (
    '10.1.2.3 - - [25/Nov/2026:04:22:59 +0000] "GET /t/{stamp} HTTP/1.1" 200 512 "-" "curl/8.5.0"\n'
)


def start_logpipe(log: Path, state: Path, output: Path | None) -> subprocess.Popen[bytes]:
    target = f"file:{output}" if output else "stdout"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logpipe",
            "--access",
            str(log),
            "--state-dir",
            str(state),
            "--output",
            target,
            "--start-at",
            "beginning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def latency(directory: Path, seconds: float, rate: int = 5000) -> list[float]:
    """Latencies (ms) from a line's write to its event in the output file."""
    log, output = directory / "access.log", directory / "events.ndjson"
    log.touch()
    process = start_logpipe(log, directory / "state", output)
    wait_for(output.exists, 10)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    latencies: list[float] = []
    burst, interval = rate // 200, 1 / 200
    started = time.monotonic()
    tick = started
    with open(output, "rb") as events:
        pending = b""
        while time.monotonic() - started < seconds:
            now_ns = time.time_ns()
            os.write(fd, "".join(LINE.format(stamp=now_ns) for _ in range(burst)).encode())
            tick += interval
            while time.monotonic() < tick:
                pending += events.read()
                *complete, pending = pending.split(b"\n")
                arrived = time.time_ns()
                for event in complete:
                    stamp = int(event.split(b"/t/", 1)[1].split(b" ", 1)[0])
                    latencies.append((arrived - stamp) / 1e6)
                time.sleep(0.0005)
    os.close(fd)
    process.terminate()
    process.wait(20)
    return latencies


def memory_after(directory: Path, gigabytes: float) -> tuple[int, float, float]:
    """Lines, seconds and RSS (MB) of logpipe after following ``gigabytes`` of log."""
    log = directory / "big.log"
    line = LINE.format(stamp=1795580579000000000).encode()
    lines = int(gigabytes * 1e9 / len(line))
    block = line * 10_000
    with open(log, "wb") as out:
        for _ in range(lines // 10_000):
            out.write(block)
    lines = lines // 10_000 * 10_000
    size = log.stat().st_size
    started = time.monotonic()
    process = start_logpipe(log, directory / "state-big", None)
    state = directory / "state-big" / "checkpoints.json"

    def caught_up() -> bool:
        return state.exists() and f'"offset":{size}'.encode() in state.read_bytes()

    wait_for(caught_up, 3600)
    elapsed = time.monotonic() - started
    with open(f"/proc/{process.pid}/status") as status:
        rss = next(int(row.split()[1]) for row in status if row.startswith("VmRSS"))
    process.terminate()
    process.wait(20)
    return lines, elapsed, rss / 1024


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--seconds", type=float, default=10)
    options.add_argument("--gigabytes", type=float, default=1.0)
    args = options.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as temporary:
        directory = Path(temporary)
        measured = sorted(latency(directory, args.seconds))
        lines, elapsed, rss = memory_after(directory, args.gigabytes)
    p50 = statistics.median(measured)
    p99 = measured[int(len(measured) * 0.99) - 1]
    report = "\n".join(
        [
            f"Write-to-emit latency, {len(measured):,} lines written at 5,000 lines/s in bursts "
            "of 25 every 5 ms, `--output file:` (from a line's write() to its event being "
            "readable in the output file): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {measured[-1]:.1f} ms.",
            "",
            f"Following {args.gigabytes:g} GB ({lines:,} lines, `--start-at beginning`, NDJSON to "
            f"stdout piped to /dev/null): caught up in {elapsed:.1f} s ({lines / elapsed:,.0f} "
            f"lines/s, checkpoint at the end of the file), RSS then {rss:.0f} MB.",
        ]
    )
    print(report)
    record(report, heading="## Follow mode (bench/follow_bench.py)")


if __name__ == "__main__":
    main()

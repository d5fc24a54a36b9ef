"""Replay throughput on one and two cores, plain and gzip input (`make bench`).

Each row is one `logpipe replay` process (start-up included) writing NDJSON to a file, with the
default derived metrics and no summary (`--quiet`); each is run `--runs` times, round robin, and
the best kept. Ratios are against `--jobs 1` on plain input (to the same output) in the same
run. Prints a table and records it in bench/RESULTS.md. Usage:
    python bench/replay_bench.py [--lines 1600000] [--runs 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "replay"
sys.path.insert(0, str(HERE))

from gen_logs import access_lines, write  # noqa: E402
from parse_bench import record  # noqa: E402

LOGPIPE = Path(sys.executable).with_name("logpipe")


def replay(source: Path, jobs: int, target: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KB of the main process) of one replay of ``source``."""
    state = OUT / "state"
    shutil.rmtree(state, ignore_errors=True)
    if target.is_file():
        target.unlink()
    command = [
        "/usr/bin/time", "-f", "%M", str(LOGPIPE), "replay", "--access", str(source),
        "--output", f"file:{target}", "--state-dir", str(state), "--quiet",
        "--jobs", str(jobs),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--lines", type=int, default=1_600_000)
    options.add_argument("--runs", type=int, default=2)
    args = options.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    plain = write(OUT / "access.log", access_lines(args.lines))
    packed = OUT / "access.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6))
    # The last input: the same plain file into /dev/null, to show the parsing alone scale.
    inputs = (("plain", plain), ("gzip", packed), ("plain, output to /dev/null", plain))
    cases = [(name, path, jobs) for name, path in inputs for jobs in (1, 2)]
    best: dict[tuple[str, int], tuple[float, int]] = {}
    for _ in range(args.runs):
        for name, path, jobs in cases:
            target = Path("/dev/null") if "null" in name else OUT / "events.ndjson"
            seconds, rss = replay(path, jobs, target)
            if (name, jobs) not in best or seconds < best[name, jobs][0]:
                best[name, jobs] = (seconds, rss)
    size = plain.stat().st_size / 1e6
    rows = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Data: {args.lines:,} default-format access "
        f"lines ({size:.1f} MB plain, "
        f"{packed.stat().st_size / 1e6:.1f} MB gzip). Best of {args.runs} runs.",
        "",
        "| input | `--jobs` | lines/s | MB/s in | vs `--jobs 1` | gzip vs plain | main RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, jobs in cases:
        seconds, rss = best[name, jobs]
        versus_plain = f"{best['plain', jobs][0] / seconds:.0%}" if name == "gzip" else "-"
        base = best["plain" if name == "gzip" else name, 1][0]
        rows.append(
            f"| {name} | {jobs} | {args.lines / seconds:,.0f} | {size / seconds:.1f} | "
            f"{base / seconds:.2f}x | {versus_plain} | {rss // 1024} MB |"
        )
    report = "\n".join(rows)
    print(report)
    record(report, "## Replay throughput (`make bench`: bench/replay_bench.py)")


if __name__ == "__main__":
    main()

"""Follow mode: write-to-emit latency at 5,000 lines/s, memory after following 1 GB, and
catch-up on a big file against `logpipe parse` of the same file in the same run.

Usage: python bench/follow_bench.py [--seconds 10] [--gigabytes 1.0] [--catch-up-lines 1000000]
    [--runs 3] [--parts latency,memory,catch-up] [--pythonpath /tmp/old] [--no-record]
Prints a report and, for the installed package with every part, records it in
bench/RESULTS.md (section "Follow mode").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import LineCounter, Measured, Tree, count_lines, run, wait_for
from parse_bench import HERE, record

PARTS = ("latency", "memory", "catch-up")

LINE = (
    '10.1.2.3 - - [25/Nov/2026:04:22:59 +0000] "GET /t/{stamp} HTTP/1.1" 200 512 "-" "curl/8.5.0"\n'
)


def start_logpipe(
    tree: Tree, log: Path, state: Path, output: Path | None
) -> subprocess.Popen[bytes]:
    target = f"file:{output}" if output else "stdout"
    return subprocess.Popen(
        tree.command(
            "--access",
            str(log),
            "--state-dir",
            str(state),
            "--output",
            target,
            "--start-at",
            "beginning",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=tree.env(),
        cwd=log.parent,
    )


def latency(tree: Tree, directory: Path, seconds: float, rate: int = 5000) -> list[float]:
    """Latencies (ms) from a line's write to its event in the output file."""
    log, output = directory / "access.log", directory / "events.ndjson"
    log.touch()
    process = start_logpipe(tree, log, directory / "state", output)
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


def memory_after(tree: Tree, directory: Path, gigabytes: float) -> tuple[int, float, float]:
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
    process = start_logpipe(tree, log, directory / "state-big", None)
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


def catch_up(tree: Tree, directory: Path, lines: int, runs: int) -> str:
    """Parse and follow catch-up of one big access log, taken in turn: a report paragraph."""
    log = directory / "catch-up.log"
    # Written by a child process, so that this one stays small.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from gen_logs import access_lines, write; "
            "write(Path(sys.argv[2]), access_lines(int(sys.argv[3])))",
            str(HERE),
            str(log),
            str(lines),
        ],
        check=True,
    )
    env = tree.env()
    # A first parse of a few lines fills the on-disk caches (the user-agent table) of this tree.
    head = directory / "head.log"
    with open(log, "rb") as source:
        head.write_bytes(b"".join(source.readline() for _ in range(100)))
    run(tree.command("parse", "--kind", "access", str(head)), env=env, cwd=directory)
    parsed, followed = directory / "parsed.ndjson", directory / "followed.ndjson"
    parse: list[tuple[float, int]] = []
    follow: list[tuple[float, int]] = []
    cpu: dict[str, list[float]] = {"parse": [], "follow": []}  # CPU seconds of each run
    for _ in range(runs):
        os.sync()
        process = Measured(
            tree.command("parse", "--kind", "access", str(log)), parsed, env, directory
        )
        parse.append(process.finish())
        cpu["parse"].append(process.cpu)
        if count_lines(parsed) != lines:
            raise SystemExit(f"parse wrote {count_lines(parsed)} events for {lines} lines")
        state = directory / "catch-up-state"
        shutil.rmtree(state, ignore_errors=True)
        followed.unlink(missing_ok=True)
        os.sync()
        command = tree.command(
            "--access", str(log), "--output", f"file:{followed}", "--state-dir", str(state),
            "--start-at", "beginning", "--exit-idle", "1", "--dogstatsd", "off",
            "--status-interval", "0",
        )  # fmt: skip
        process = Measured(command, env=env, cwd=directory, stderr=directory / "follow.err")
        counter = LineCounter(followed)
        # The clock stops when the output holds every line, not at the exit --exit-idle delays.
        wait_for(partial(counter.reached, lines), timeout=1200, interval=0.01)
        seconds = time.perf_counter() - process.started
        _, rss = process.finish(timeout=120)
        cpu["follow"].append(process.cpu)
        if counter.count() != lines:
            raise SystemExit(f"follow mode wrote {counter.count()} events for {lines} lines")
        follow.append((seconds, rss))
    megabytes = log.stat().st_size / 1e6

    def rates(results: list[tuple[float, int]]) -> tuple[float, float, float]:
        per_second = [lines / seconds for seconds, _ in results]
        median_rss = statistics.median(rss for _, rss in results) / 1024
        return max(per_second), statistics.median(per_second), median_rss

    parse_best, parse_median, parse_rss = rates(parse)
    follow_best, follow_median, follow_rss = rates(follow)
    runs_text = ", ".join(
        f"{lines / p:,.0f}/{lines / f:,.0f}" for (p, _), (f, _) in zip(parse, follow, strict=True)
    )
    return (
        f"Catch-up on one file, {lines:,} default-format access lines ({megabytes:.0f} MB), "
        f"best / median of {runs} runs taken in turn (start-up included): "
        f"`logpipe parse --kind access` to an NDJSON file {parse_best:,.0f} / "
        f"{parse_median:,.0f} lines/s, peak RSS {parse_rss:.0f} MB; follow mode "
        "(`--start-at beginning --output file: --dogstatsd off --exit-idle 1`, the clock "
        f"stopped when the output holds every line) {follow_best:,.0f} / {follow_median:,.0f} "
        f"lines/s, peak RSS {follow_rss:.0f} MB. Follow/parse: {follow_best / parse_best:.2f}x "
        f"best, {follow_median / parse_median:.2f}x median (targets: >= 1.0x, RSS < 40 MB). "
        f"Each run, parse/follow lines/s: {runs_text}. Lines per CPU-second (user + system, "
        f"less moved by other load), best: parse {lines / min(cpu['parse']):,.0f}, follow "
        f"{lines / min(cpu['follow']):,.0f} ({min(cpu['parse']) / min(cpu['follow']):.2f}x; "
        "follow's CPU includes the --exit-idle wait)."
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--seconds", type=float, default=10)
    options.add_argument("--gigabytes", type=float, default=1.0)
    options.add_argument("--catch-up-lines", type=int, default=1_000_000)
    options.add_argument("--runs", type=int, default=3, help="catch-up: runs of each, in turn")
    options.add_argument("--parts", default=",".join(PARTS), help="which of: " + ",".join(PARTS))
    options.add_argument("--pythonpath", help="run the logpipe of this tree (default: installed)")
    options.add_argument("--no-record", action="store_true", help="leave RESULTS.md as it is")
    args = options.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        options.error(f"unknown parts: {', '.join(sorted(unknown))}")
    tree = Tree(args.pythonpath)
    tree.compile()
    paragraphs = [f"Tree: {tree.describe()}."] if args.pythonpath else []
    with tempfile.TemporaryDirectory(dir=HERE) as temporary:
        directory = Path(temporary)
        if "latency" in parts:
            measured = sorted(latency(tree, directory, args.seconds))
            p50 = statistics.median(measured)
            p99 = measured[int(len(measured) * 0.99) - 1]
            paragraphs.append(
                f"Write-to-emit latency, {len(measured):,} lines written at 5,000 lines/s in "
                "bursts of 25 every 5 ms, `--output file:` (from a line's write() to its event "
                "being readable in the output file): "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {measured[-1]:.1f} ms."
            )
        if "memory" in parts:
            lines, elapsed, rss = memory_after(tree, directory, args.gigabytes)
            paragraphs.append(
                f"Following {args.gigabytes:g} GB ({lines:,} lines, `--start-at beginning`, "
                f"NDJSON to stdout piped to /dev/null): caught up in {elapsed:.1f} s "
                f"({lines / elapsed:,.0f} lines/s, checkpoint at the end of the file), RSS then "
                f"{rss:.0f} MB."
            )
        if "catch-up" in parts:
            paragraphs.append(catch_up(tree, directory, args.catch_up_lines, args.runs))
    report = "\n\n".join(paragraphs)
    print(report)
    if not args.no_record and not args.pythonpath and set(parts) == set(PARTS):
        record(report, heading="## Follow mode (bench/follow_bench.py)")


if __name__ == "__main__":
    main()

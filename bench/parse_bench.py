"""Parse throughput of logpipe next to baselines measured in the same run (`make bench`).

Prints a table and records it in bench/RESULTS.md. Usage:
    python bench/parse_bench.py [--lines 400000] [--records 400000]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import count_lines, run

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"
DURATIONS_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s'
)

# The baseline: one regex, a typed dict, orjson, an NDJSON file. It reads quoted
# fields as "[^"]*", so it skips the ~2% of lines where gunicorn escaped a quote (logpipe parses
# them); it is the speed of a bare loop, not a correct parser.
BASELINE = re.compile(
    r"^(?P<remote_addr>[^ ]*) (?P<ident>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"$'
)

# Lines that make naive regexes backtrack; each must parse or fail in linear time.
HOSTILE = {
    '200 kB-style run of \\" in the user agent': lambda n: (
        '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET / HTTP/1.1" 200 5 "-" "' + '\\"' * n + '"'
    ),
    'unterminated run of \\"': lambda n: (
        '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET / HTTP/1.1" 200 5 "-" "' + '\\"' * n
    ),
    "long URL": lambda n: (
        '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET /' + "a" * (2 * n) + ' HTTP/1.1" 200 5'
    ),
    'user name of \\" and spaces': lambda n: "1.2.3.4 - " + '\\" ' * n + " [x",
}


def baseline_regex_orjson(source: Path, target: Path) -> tuple[float, int]:
    started = time.perf_counter()
    match = BASELINE.match
    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE
    written = 0
    with open(source, encoding="utf-8") as lines, open(target, "wb", buffering=1 << 20) as out:
        for line in lines:
            found = match(line.rstrip("\n"))
            if found is None:
                continue
            record = found.groupdict()
            record["status"] = int(record["status"])
            size = record["size"]
            record["size"] = None if size == "-" else int(size)
            out.write(dumps(record, option=option))
            written += 1
    return time.perf_counter() - started, written


def logpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "logpipe", *args]


def in_process(lines: list[bytes], fast_path: bool) -> float:
    """Lines/s of AccessParser.parse + orjson.dumps, in this process (no file)."""
    from logpipe import AccessParser

    parser = AccessParser(fast_path=fast_path)
    for line in lines[:1000]:
        parser.parse(line)  # warm the user-agent and URL memos
    dumps = orjson.dumps
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for line in lines:
            dumps(parser.parse(line))
        best = min(best, time.perf_counter() - started)
    return len(lines) / best


def hostile_rows() -> list[str]:
    from logpipe import AccessParser

    parser = AccessParser(max_line_bytes=100_000_000)
    rows = []
    for name, make in HOSTILE.items():
        times = []
        for n in (100_000, 200_000, 400_000):
            line = make(n)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                parser.parse(line)
                best = min(best, time.perf_counter() - started)
            times.append((len(line), best))
        cells = " | ".join(f"{size / 1e6:.1f} MB: {secs * 1000:.0f} ms" for size, secs in times)
        growth = times[-1][1] / times[0][1]
        rows.append(f"| {name} | {cells} | {growth:.1f}x for 4x the size |")
    return rows


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--lines", type=int, default=400_000)
    options.add_argument("--records", type=int, default=400_000)
    options.add_argument("--runs", type=int, default=5, help="best of this many runs each")
    args = options.parse_args()

    OUT.mkdir(exist_ok=True)
    access, durations, errors = OUT / "access.log", OUT / "durations.log", OUT / "error.log"
    unique = OUT / "unique.log"
    # Generated in a child process so this one stays small (a forked child inherits its RSS).
    subprocess.run(
        [sys.executable, str(HERE / "gen_logs.py"), str(OUT), str(args.lines), str(args.records)],
        check=True,
    )
    megabytes = access.stat().st_size / 1e6

    # Round robin, best of --runs each (the VM is noisy); the disk is synced before every run so
    # that writing back an earlier run's output does not land in the next one's time.
    timings: dict[str, list[float]] = {
        "base": [],
        "access": [],
        "mixed": [],
        "unique": [],
        "error": [],
    }
    rss: dict[str, int] = {}
    for _ in range(args.runs):
        os.sync()
        seconds, base_written = baseline_regex_orjson(access, OUT / "baseline.ndjson")
        timings["base"].append(seconds)
        for name, command, target in (
            ("access", ("--kind", "access", str(access)), "access.ndjson"),
            (
                "mixed",
                ("--kind", "access", "--access-format", DURATIONS_FORMAT, str(durations)),
                "durations.ndjson",
            ),
            ("unique", ("--kind", "access", str(unique)), "unique.ndjson"),
            ("error", ("--kind", "error", str(errors)), "error.ndjson"),
        ):
            os.sync()
            seconds, rss[name] = run(logpipe("parse", *command), OUT / target)
            timings[name].append(seconds)
    base_seconds, access_seconds, mixed_seconds, unique_seconds, error_seconds = (
        min(timings[name]) for name in ("base", "access", "mixed", "unique", "error")
    )
    access_rss, error_rss = rss["access"], rss["error"]
    assert count_lines(OUT / "access.ndjson") == args.lines
    assert count_lines(OUT / "error.ndjson") == args.records
    sample = access.read_bytes().split(b"\n")[:20_000]
    fast_rate = in_process(sample, True)
    lark_rate = in_process(sample, False)
    tiny = OUT / "ten.log"
    tiny.write_bytes(b"\n".join(sample[:10]) + b"\n")
    python_start = min(run([sys.executable, "-c", "pass"])[0] for _ in range(3))
    tiny_start = min(run(logpipe("parse", "--kind", "access", str(tiny)))[0] for _ in range(3))

    base_rate = args.lines / base_seconds
    access_rate = args.lines / access_seconds
    unique_rate = args.lines / unique_seconds
    out_mb = (OUT / "access.ndjson").stat().st_size / 1e6
    base_mb = (OUT / "baseline.ndjson").stat().st_size / 1e6
    rows = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Data: {args.lines:,} default-format access lines "
        f"({megabytes:.1f} MB; 17 user agents, ~1% with escaped quotes or trailing backslashes, "
        f"mixed statuses and referers), the same lines in a format with every duration atom and "
        f"`%(p)s`, the same lines with an id added to each request target (path or query), and "
        f"{args.records:,} error records (5% with tracebacks). Every row is one "
        f"process, so start-up is included; best of {args.runs} runs, taken in turn.",
        "",
        "| what | items/s | MB/s in | output | vs baseline | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        f"| baseline: bare `re` + orjson + NDJSON file (skips {args.lines - base_written:,} "
        f"lines it cannot read) | {base_rate:,.0f} | {megabytes / base_seconds:.1f} | "
        f"{base_mb:.0f} MB | 1.00x | - |",
        f"| `logpipe parse --kind access` to an NDJSON file, all attributes | {access_rate:,.0f} "
        f"| {megabytes / access_seconds:.1f} | {out_mb:.0f} MB | {access_rate / base_rate:.2f}x "
        f"| {access_rss / 1024:.0f} MB |",
        f"| the same, durations format (`--access-format`) | {args.lines / mixed_seconds:,.0f} "
        f"| - | - | {args.lines / mixed_seconds / base_rate:.2f}x | - |",
        f"| the same lines, every request target unique (no URL cache hits) | "
        f"{unique_rate:,.0f} | - | - | {unique_rate / base_rate:.2f}x | - |",
        f"| `logpipe parse --kind error` to an NDJSON file (records) | "
        f"{args.records / error_seconds:,.0f} | - | - | - | {error_rss / 1024:.0f} MB |",
        f"| in process: `AccessParser.parse` + `orjson.dumps`, fast path | {fast_rate:,.0f} | - "
        "| - | - | - |",
        f"| in process: the same, Lark only (`fast_path=False`) | {lark_rate:,.0f} | - | - | - "
        "| - |",
        "",
        f"Start-up: `logpipe parse` of a 10-line file {tiny_start * 1000:.0f} ms; "
        f"`python -c pass` {python_start * 1000:.0f} ms.",
        "",
        "Hostile lines (one `AccessParser.parse` each, cap lifted; linear means ~4x for 4x):",
        "",
        "| line | 1x | 2x | 4x | growth |",
        "|---|---|---|---|---|",
        *hostile_rows(),
    ]
    report = "\n".join(rows)
    print(report)
    record(report)


def record(
    report: str, heading: str = "## Parse throughput (`make bench`: bench/parse_bench.py)"
) -> None:
    section = f"{heading}\n\nMeasured {time.strftime('%Y-%m-%d')}.\n\n{report}\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if heading in text:
        before, _, rest = text.partition(heading)
        after = rest.partition("\n## ")[2]
        text = before + section + ("\n## " + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

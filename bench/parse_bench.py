"""Parse throughput of `logpipe parse`, next to baselines measured in the same run.

Writes the table to stdout and into bench/RESULTS.md. Usage: python bench/parse_bench.py [--lines N]
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
from gen_logs import access_lines, error_records, write

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"

# performance.md's e4 baseline: one regex, typed dict, orjson, NDJSON file (quotes as "[^"]*").
BASELINE = re.compile(
    r"^(?P<remote_addr>[^ ]*) (?P<ident>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"$'
)


def baseline_regex_orjson(source: Path, target: Path) -> float:
    started = time.perf_counter()
    match = BASELINE.match
    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE
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
    return time.perf_counter() - started


def run_logpipe(args: list[str], target: Path) -> tuple[float, int]:
    """Wall time and peak RSS (kB) of one `logpipe` process writing NDJSON to ``target``."""
    with open(target, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "logpipe", *args], stdout=out)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"logpipe {' '.join(args)} failed with {process.returncode}")
    return elapsed, usage.ru_maxrss


def count_lines(path: Path) -> int:
    with open(path, "rb") as data:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: data.read(1 << 20), b""))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--lines", type=int, default=100_000)
    options.add_argument("--records", type=int, default=100_000)
    args = options.parse_args()

    access = write(OUT / "access.log", access_lines(args.lines))
    errors = write(OUT / "error.log", error_records(args.records))
    megabytes = access.stat().st_size / 1e6

    rows = []
    best = min(baseline_regex_orjson(access, OUT / "baseline.ndjson") for _ in range(2))
    rows.append(("bare `re` + orjson + NDJSON write (baseline)", args.lines, best, None))
    elapsed, rss = run_logpipe(["parse", "--kind", "access", str(access)], OUT / "access.ndjson")
    assert count_lines(OUT / "access.ndjson") == args.lines
    rows.append(("`logpipe parse --kind access` (Lark LALR) to NDJSON", args.lines, elapsed, rss))
    elapsed, rss = run_logpipe(["parse", "--kind", "error", str(errors)], OUT / "error.ndjson")
    assert count_lines(OUT / "error.ndjson") == args.records
    rows.append(("`logpipe parse --kind error` to NDJSON (records)", args.records, elapsed, rss))

    table = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}."
        f" Data: {args.lines:,} default-format access lines ({megabytes:.1f} MB, 17 user agents, "
        f"mixed statuses and referers), {args.records:,} error records (5% tracebacks).",
        "",
        "| what | items | seconds | items/s | MB/s | vs baseline | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_rate = rows[0][1] / rows[0][2]
    for name, items, seconds, rss in rows:
        rate = items / seconds
        mb = f"{megabytes / seconds:.1f}" if "access" in name or "baseline" in name else "-"
        ratio = f"{rate / base_rate:.3f}x" if "error" not in name else "-"
        memory = f"{rss / 1024:.0f} MB" if rss else "-"
        table.append(
            f"| {name} | {items:,} | {seconds:.2f} | {rate:,.0f} | {mb} | {ratio} | {memory} |"
        )
    report = "\n".join(table)
    print(report)
    _record(report)


def _record(report: str) -> None:
    heading = "## Parse throughput (`make bench`, bench/parse_bench.py)"
    stamp = time.strftime("%Y-%m-%d")
    section = f"{heading}\n\nMeasured {stamp}.\n\n{report}\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n\n"
    if heading in text:
        before, _, rest = text.partition(heading)
        after = rest.partition("\n## ")[2]
        text = before + section + ("\n## " + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""Memory over a long logs-intake outage: logpipe's RSS while the intake answers 503 for
--outage seconds and a writer goes on appending access lines at --rate (plus one error record
per 100), against its RSS over --baseline seconds with the intake taking everything, in the
same run. Then the intake recovers: how long until delivery resumes, and until every event
written is delivered. The intake is the local stand-in of the tests (tests/support/intake.py).
Prints a table and records it in bench/RESULTS.md. Usage:
    python bench/outage_bench.py [--rate 1000] [--baseline 60] [--outage 600] [--no-record]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from measure import Tree, wait_for
from parse_bench import HERE, record
from sidecar_bench import TICK, Writer, rss_bytes

from tests.support.intake import Intake, Status

KEY = "bench-key"
SAMPLE_SECONDS = 5.0
TARGET_MB = 60


@dataclass
class Phase:
    """RSS samples of one phase: (seconds into it, MB)."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.samples)

    def at(self, seconds: float) -> float:
        """The sample closest to ``seconds`` into the phase."""
        return min(self.samples, key=lambda sample: abs(sample[0] - seconds))[1]


def write_for(
    writer: Writer, process: psutil.Process, started: float, seconds: float, phase: Phase
) -> None:
    """Keep the writer on schedule for ``seconds`` more, sampling RSS every few seconds."""
    begin = time.monotonic()
    next_sample = begin
    while (now := time.monotonic()) - begin < seconds:
        writer.write_due(now - started)
        if now >= next_sample:
            phase.samples.append((now - begin, rss_bytes(process) / 2**20))
            next_sample += SAMPLE_SECONDS
        # Pacing, not synchronisation: sleep to the next 10 ms mark of the schedule.
        time.sleep(TICK)
    phase.samples.append((time.monotonic() - begin, rss_bytes(process) / 2**20))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--rate", type=int, default=1000, help="access lines/s")
    options.add_argument("--baseline", type=float, default=60, help="seconds, intake up")
    options.add_argument("--outage", type=float, default=600, help="seconds, intake answers 503")
    options.add_argument("--pythonpath", help="run the logpipe of this tree (default: installed)")
    options.add_argument("--no-record", action="store_true", help="leave RESULTS.md as it is")
    args = options.parse_args()
    tree = Tree(args.pythonpath)
    tree.compile()
    baseline, outage = Phase(), Phase()
    with tempfile.TemporaryDirectory(dir=HERE) as temporary, Intake(api_key=KEY) as intake:
        directory = Path(temporary)
        writer = Writer(directory, args.rate, args.baseline + args.outage)
        command = tree.command(
            "--access", str(directory / "access.log"), "--error", str(directory / "error.log"),
            "--output", "datadog", "--intake-url", intake.url, "--state-dir",
            str(directory / "state"), "--start-at", "beginning", "--dogstatsd", "off",
            "--status-interval", "60",
        )  # fmt: skip
        env = {**tree.env(), "DD_API_KEY": KEY}
        with open(directory / "logpipe.err", "wb") as errors:
            child = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=directory
            )
        process = psutil.Process(child.pid)
        try:
            started = time.monotonic()
            write_for(writer, process, started, args.baseline, baseline)
            intake.fail_for(args.outage + 3600, Status(503))
            write_for(writer, process, started, args.outage, outage)
            delivered_then = len(intake.events)
            intake.clear_faults()
            recovered = time.monotonic()
            wait_for(lambda: len(intake.events) > delivered_then, 120, interval=0.05)
            resumed = time.monotonic() - recovered
            expected = writer.written + writer.errors
            wait_for(lambda: len(intake.events) >= expected, 1800, interval=0.2)
            caught_up = time.monotonic() - recovered
            received = len(intake.events)
        finally:
            writer.close()
            child.terminate()
            child.wait(60)
    minutes = [1, 2, 5, 10]
    points = " / ".join(
        f"{outage.at(60 * m):.0f}" for m in minutes if 60 * m <= args.outage + SAMPLE_SECONDS
    )
    shown = " / ".join(f"{m} min" for m in minutes if 60 * m <= args.outage + SAMPLE_SECONDS)
    report = "\n".join(
        [
            f"logpipe follows an access and an error log into the local intake stand-in "
            f"(`--output datadog`, `--dogstatsd off`) while a writer appends {args.rate:,} "
            f"access lines/s (plus one error record per 100). Baseline: {args.baseline:g} s "
            f"with the intake taking everything; outage: {args.outage:g} s of HTTP 503 with "
            f"the writer going on; then the intake recovers. RSS of logpipe sampled every "
            f"{SAMPLE_SECONDS:g} s. Tree: {tree.describe()}.",
            "",
            "| RSS, intake up (peak) | RSS in the outage at " + shown + " | outage peak "
            "| peak ratio (outage / up) | target | resumed after recovery | every event "
            "delivered after |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {baseline.peak:.0f} MB | {points} MB | {outage.peak:.0f} MB "
            f"| {outage.peak / baseline.peak:.2f}x | < {TARGET_MB} MB | {resumed:.1f} s "
            f"| {caught_up:.0f} s ({received:,} of {expected:,} events) |",
        ]
    )
    print(report)
    if not args.no_record and not args.pythonpath:
        record(report, heading="## Memory over a logs-intake outage (bench/outage_bench.py)")


if __name__ == "__main__":
    main()

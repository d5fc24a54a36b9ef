"""``logpipe replay``: backfill archived logs, each file's content once."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from os.path import isfile
from pathlib import Path

from logpipe.backfill import dashboard, render
from logpipe.backfill.archives import expand, is_url, order_series
from logpipe.backfill.engines import default_jobs, open_engine
from logpipe.backfill.run import LEDGER, Replay, ReplayFile
from logpipe.backfill.summary import Summary
from logpipe.backfill.views import About
from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
from logpipe.cli.options import (
    ArgumentParser,
    access_parser,
    add_delivery_options,
    add_error_layout_options,
    add_log_format_option,
    add_log_options,
    add_parsing_options,
    add_rule_options,
    add_tag_options,
    error_layout,
    fixed_access_format,
    multiline_pattern,
    processing_rules,
    tags_from,
    timezone,
)
from logpipe.cli.outputs import open_sink, output_settings
from logpipe.cli.runtime import relax_gc, set_log_format, stop_on_signals, warn
from logpipe.metrics.client import dogstatsd
from logpipe.metrics.timestamped import Sums, TimestampedCounts
from logpipe.pipeline.outage import describe
from logpipe.problems import Failure, SetupError
from logpipe.service_tags import ServiceTags
from logpipe.sinks import Interrupted, Refused


def build_replay_parser() -> argparse.ArgumentParser:
    """``logpipe replay``'s options."""
    replay = ArgumentParser(
        prog="logpipe replay",
        description="Backfill archived logs: each rotated series oldest first, plain or gzip, "
        "each file's content once (a ledger in the state dir remembers what was delivered).",
    )
    add_log_options(replay, "replay", "FILE|GLOB")
    add_parsing_options(replay)
    add_rule_options(replay)
    add_error_layout_options(replay)
    add_delivery_options(
        replay,
        state="where the replay ledger is kept",
        metrics="derived metrics, sent with the logs' own times (count_with_timestamp, 10 s "
        "buckets; needs Agent 7.40+); default as in follow mode",
    )
    replay.add_argument(
        "--force", action="store_true", help="replay files the ledger says were delivered already"
    )
    replay.add_argument(
        "--max-age",
        metavar="DURATION|none",
        help="skip events older than this, e.g. 18h, 90m, 2d (default: 18h with --output "
        "datadog, the intake's window; none otherwise); skipped events count as handled in the "
        "ledger: re-run with --force to send them",
    )
    replay.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write the summary as a self-contained HTML dashboard (charts over time, "
        "tables; no network needed to view it)",
    )
    replay.add_argument(
        "--quiet", action="store_true", help="no summary table on stderr at the end"
    )
    add_log_format_option(replay)
    work = replay.add_argument_group("where the parsing runs")
    work.add_argument(
        "--jobs",
        metavar="N",
        type=int,
        help="parse on N cores (worker processes; each file's events still leave in order); "
        "1: in this process (default: all cores)",
    )
    work.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="dask: parse on an existing Dask cluster (--scheduler; needs logpipe[dask]) "
        "(default: %(default)s)",
    )
    work.add_argument(
        "--scheduler", metavar="ADDRESS", help="the Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )
    add_tag_options(replay)
    return replay


def run_replay(arguments: Sequence[str]) -> int:
    """``logpipe replay``: send archived files once, oldest first; exit 0 when delivered."""
    args = build_replay_parser().parse_args(arguments)
    set_log_format(args.log_format)
    unmatched: list[str] = []
    files = [ReplayFile(path, "access") for path in order_series(matches(args.access, unmatched))]
    files += [ReplayFile(path, "error") for path in order_series(matches(args.error, unmatched))]
    if not files and unmatched:
        raise SetupError(f"no file matches {' or '.join(map(repr, unmatched))}")
    if not files:
        raise SetupError("nothing to replay: give --access FILE|GLOB and/or --error FILE|GLOB")
    for pattern in unmatched:
        warn(f"no file matches {pattern!r}")
    for missing in [file.path for file in files if not is_url(file.path) and not isfile(file.path)]:
        raise SetupError(f"cannot read {missing}: no such file")
    if args.jobs is not None and args.jobs < 1:
        raise SetupError("--jobs must be at least 1")
    if args.report:
        check_report_folder(args.report)
    access_parser(args)  # the format is checked here, once
    pattern = multiline_pattern(args.multiline_pattern)
    rules = processing_rules(args)  # checked before anything is read
    ledger = CheckpointStore(Path(args.state_dir), file_name=LEDGER)
    try:
        ledger.check_writable()  # before anything is sent
    except OSError as error:
        raise SetupError(f"state dir {args.state_dir}: {error.strerror}") from None
    summary = Summary()
    service_tags = tags_from(args)
    counts, send_metrics, close_metrics = timestamped_metrics(
        args.dogstatsd, args.metrics_namespace, service_tags
    )
    output = output_settings(args)
    max_age = parse_duration(args.max_age or ("18h" if output.target == "datadog" else "none"))
    oldest_ms = None if max_age is None else int((time.time() - max_age) * 1000)
    stop, signals = stop_on_signals()
    progress = ProgressLine() if sys.stderr.isatty() else None
    say = progress.say if progress is not None else warn  # never on the progress line
    with ExitStack() as resources:
        sink = open_sink(output, stop, say, acknowledge_refused=False)
        resources.callback(sink.close)
        try:
            engine = resources.enter_context(
                open_engine(
                    args.engine,
                    jobs=args.jobs or default_jobs(),
                    scheduler=args.scheduler,
                    output_path=sink.parallel_append_path(),
                )
            )
        except (SetupError, ValueError, OSError) as error:
            raise SetupError(f"--engine {args.engine}: {error}") from None
        try:
            replay = Replay(
                files,
                sink,
                ledger,
                access_format=fixed_access_format(args),
                error_layout=error_layout(args),
                timezone=timezone(args),
                multiline_pattern=pattern,
                max_line_bytes=args.max_line_bytes,
                attributes=service_tags.attributes,
                oldest_ms=oldest_ms,
                force=args.force,
                engine=engine,
                summary=summary if args.report or not args.quiet else None,  # only if shown
                counts=counts,
                warn=say,
                progress=progress or (lambda replay: None),
                send_counts=send_metrics,
                stop=stop,
                rules=rules,
            )
        except CorruptCheckpoints as error:
            raise SetupError(f"{error} (use --force, or move the ledger aside)") from None
        relax_gc()
        refusal: str | None = None
        try:
            replay.run()
        except Refused as refused:
            refusal = str(refused)  # the ledger stays behind the refused events
        except Interrupted:
            replay.interrupted = True  # while the intake was failing: the ledger has the rest
        except OSError as error:
            raise Failure(
                f"{describe(error)}; replay stopped: the ledger keeps what was delivered "
                "before, and a re-run goes on from there"
            ) from None
        finally:
            close_metrics()
            if progress is not None:
                progress.clear()
    outcome = f"{replay.accepted} accepted, {replay.refused} refused, {replay.pending} pending"
    if replay.interrupted:
        warn(
            f"stopped by {signals[-1].name}: {replay.events} events read: {outcome}; the ledger "
            "keeps where each file got to, and a re-run goes on from there"
        )
        return 128 + signals[-1]
    older = f", {replay.too_old} older than --max-age not sent" if replay.too_old else ""
    ruled = ""
    if rules is not None:
        ruled = f"; processing rules: excluded={replay.excluded} masked={replay.masked}"
    sent_nothing = not replay.events and replay.already_files and not replay.unreadable
    if refusal is not None:
        warn(
            f"{refusal}; replay stopped: {replay.events} events read: {outcome}{older}; the "
            "ledger stays behind the refused events: a re-run sends them once the intake "
            "takes them (DD_API_KEY, --intake-url)"
        )
    elif sent_nothing:
        warn(
            f"already delivered: {replay.already_files} files, {replay.already_bytes:,} bytes "
            f"(ledger in {args.state_dir}); --force to send again"
        )
    else:
        warn(
            f"replayed {len(files)} files: {replay.events} events{older}{ruled}; output: {outcome}"
        )
    summary.skipped_old = replay.too_old
    summary.accepted, summary.refused, summary.pending = (
        replay.accepted,
        replay.refused,
        replay.pending,
    )
    about = report_about(files, service_tags)
    if not args.quiet and not sent_nothing:
        render.show(summary, sys.stderr, about)
    if args.report:
        try:
            Path(args.report).write_text(dashboard.html(summary, about), encoding="utf-8")
        except OSError as error:
            raise SetupError(f"--report {args.report}: {error.strerror}") from None
    if replay.unreadable:
        warn(f"not read to the end (damaged): {', '.join(replay.unreadable)}")
        return 1
    return 0 if refusal is None else 1


def matches(patterns: list[str], unmatched: list[str]) -> list[str]:
    """The paths ``patterns`` name (``expand``); the globs that match nothing are added to
    ``unmatched``."""
    paths: list[str] = []
    for pattern in patterns:
        found = expand([pattern])
        if not found:
            unmatched.append(pattern)
        paths += found
    return paths


def check_report_folder(report: str) -> None:
    """``--report``'s folder must exist and be writable before anything is replayed."""
    folder = Path(report).parent
    if not folder.is_dir():
        raise SetupError(f"--report {report}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SetupError(f"--report {report}: cannot write in {folder}")


def timestamped_metrics(
    target: str | None, namespace: str, service_tags: ServiceTags
) -> tuple[TimestampedCounts | None, Callable[[Sums], None], Callable[[], None]]:
    """(counts, send, close) for replay metrics at the logs' own times, sent to ``target``
    (``--dogstatsd``; no-ops with off): ``send`` sends the sums a checkpoint took, ``close``
    all the rest."""
    try:
        client = dogstatsd(
            target,
            namespace=namespace,
            tags=service_tags.metric_tags,
            flush_thread=False,
            report=warn,
        )
    except ValueError as error:
        raise SetupError(f"--dogstatsd: {error}") from None
    if client is None:
        return None, lambda sums: None, lambda: None
    counts = TimestampedCounts(client)

    def send(sums: Sums) -> None:
        counts.send(sums)
        counts.flush()

    return counts, send, counts.close


class ProgressLine:
    """A progress line on a terminal, redrawn at most 4 times a second: files, events, events/s
    and an ETA by bytes of input taken, as stored (compressed bytes for gzip). Messages go
    through ``say``, which clears the line first, so none is printed on it."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.drawn = 0.0
        self.shown = False  # a progress line is on the terminal now
        self.first: tuple[float, int] | None = None  # (when, bytes taken) at the first draw

    def clear(self) -> None:
        """Erase the progress line, if one is shown (the next draw puts it back)."""
        if self.shown:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
            self.shown = False

    def say(self, message: str) -> None:
        """``warn`` on a line of its own."""
        self.clear()
        warn(message)

    def __call__(self, replay: Replay) -> None:
        now = time.monotonic()
        finished = replay.files_done == len(replay.files)
        if now - self.drawn < 0.25 and not finished:
            return
        self.drawn = now
        elapsed = max(now - self.started, 1e-6)
        rate = replay.events / elapsed
        eta = ""
        read = replay.bytes_read
        if self.first is None:
            self.first = (now, read)  # the rate is measured from here: start-up left out
        since, read_then = self.first
        if read > read_then and not finished:
            remaining = (now - since) * (replay.bytes_total - read) / (read - read_then)
            eta = f", ETA {remaining:,.0f} s"
        self.shown = not finished
        print(
            f"\r\x1b[Klogpipe: file {replay.files_done}/{len(replay.files)}, "
            f"{replay.events:,} events, {rate:,.0f}/s{eta}",
            end="\n" if finished else "",
            file=sys.stderr,
            flush=True,
        )


def report_about(files: Sequence[ReplayFile], service_tags: ServiceTags) -> About:
    """The summary's header: the inputs, host, service, now, and logpipe's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        logpipe_version = version("logpipe")
    except PackageNotFoundError:
        logpipe_version = ""
    return About(
        inputs=tuple(file.path for file in files),
        host=service_tags.hostname,
        service=service_tags.service,
        version=logpipe_version,
        generated_ms=int(time.time() * 1000),
    )


def parse_duration(text: str) -> float | None:
    """``18h`` / ``90m`` / ``2d`` / ``45s`` to seconds; ``none`` to None."""
    if text.strip().lower() == "none":
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.replace(".", "", 1).isdigit():
        raise SetupError(f"--max-age: {text!r} is not a duration like 18h, 90m, 2d or none")
    return float(number) * units[unit]

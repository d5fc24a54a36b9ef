"""The ``logpipe`` command line."""

from __future__ import annotations

import argparse
import gc
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from logpipe.cli.config import ConfigError, apply_config, config_path
from logpipe.event import Event
from logpipe.lines import MAX_LINE_BYTES
from logpipe.parsing.access.format import FormatError
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_events, error_events
from logpipe.service_tags import ServiceTags, split_tags
from logpipe.sinks.ndjson import NdjsonWriter
from logpipe.sources.multiline import DEFAULT_START, Multiline

if TYPE_CHECKING:
    from logpipe.backfill.run import Replay
    from logpipe.metrics.derive import Sums, TimestampedCounts

USAGE_ERROR = 2


class UsageError(Exception):
    """A user mistake: reported in one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """``logpipe`` (follow mode) and ``logpipe parse``."""
    parser = _ArgumentParser(
        prog="logpipe",
        description="Follow gunicorn access and error logs through rotation and ship them as "
        "structured events. Runs until SIGTERM/SIGINT.",
        epilog="Other commands: logpipe parse --help (a whole file to NDJSON), logpipe replay "
        "--help (backfill archives), logpipe check --help (gunicorn's processes, once).",
    )
    add_log_options(parser, "follow", "PATH")
    add_parsing_options(parser)
    add_delivery_options(
        parser,
        state="where checkpoints are kept",
        metrics="where derived metrics go (default: DD_AGENT_HOST:DD_DOGSTATSD_PORT, else "
        "localhost:8125)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with any of these options as keys (the command line wins)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="info: also what happens to followed files (opened, rotated...); "
        "warning: problems only (default: %(default)s)",
    )
    parser.add_argument(
        "--exit-idle",
        metavar="SECONDS",
        type=float,
        default=0,
        help="drain and exit once nothing new was read for this long (demos, tests, one-shot "
        "catch-up); 0: run until SIGTERM/SIGINT (default)",
    )
    parser.add_argument(
        "--status-interval",
        metavar="SECONDS",
        type=int,
        default=60,
        help="print a one-line status on stderr this often; 0: never (default: %(default)s)",
    )
    parser.add_argument(
        "--start-at",
        choices=("end", "beginning"),
        default="end",
        help="where to start in files that have no checkpoint; files that "
        "appear later are read from the beginning (default: %(default)s)",
    )
    add_tag_options(parser)
    add_process_options(parser)
    return parser


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """Follow mode's process check (Datadog's gunicorn check: gunicorn.workers, is_running)."""
    group = parser.add_argument_group(
        "process check",
        "gunicorn.workers (tagged app:NAME, state:idle|working) and the service check "
        "gunicorn.is_running through DogStatsD, as Datadog's gunicorn check sends them; needs "
        "setproctitle in gunicorn's environment",
    )
    group.add_argument(
        "--proc-name",
        action="append",
        default=[],
        metavar="NAME",
        help="gunicorn's proc_name (--name), whose master is titled 'gunicorn: master [NAME]' "
        "(repeatable)",
    )
    group.add_argument(
        "--process-interval",
        metavar="SECONDS",
        type=float,
        default=15.0,
        help="how often to check (default: %(default)s)",
    )


def build_check_parser() -> argparse.ArgumentParser:
    check = _ArgumentParser(
        prog="logpipe check",
        description="Datadog's gunicorn process check, once: print each master's idle and "
        "working workers; exit 0 when all are OK, 2 when any is CRITICAL (no master, or no "
        "workers).",
    )
    check.add_argument(
        "--proc-name",
        action="append",
        required=True,
        metavar="NAME",
        help="gunicorn's proc_name (--name) (repeatable)",
    )
    check.add_argument(
        "--dogstatsd",
        metavar="HOST:PORT|off",
        default="off",
        help="also send gunicorn.workers and gunicorn.is_running there (default: %(default)s)",
    )
    add_tag_options(check)
    return check


def build_replay_parser() -> argparse.ArgumentParser:
    replay = _ArgumentParser(
        prog="logpipe replay",
        description="Backfill archived logs: each rotated series oldest first, plain or gzip, "
        "each file's content once (a ledger in the state dir remembers what was delivered).",
    )
    add_log_options(replay, "replay", "FILE|GLOB")
    add_parsing_options(replay)
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
        help="also write the summary as a self-contained HTML page with a chart",
    )
    replay.add_argument(
        "--quiet", action="store_true", help="no summary table on stderr at the end"
    )
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


def add_log_options(parser: argparse.ArgumentParser, verb: str, metavar: str) -> None:
    """``--access`` and ``--error``, repeatable."""
    for kind in ("access", "error"):
        parser.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar=metavar,
            help=f"gunicorn {kind} log to {verb} (repeatable)",
        )


def add_delivery_options(parser: argparse.ArgumentParser, *, state: str, metrics: str) -> None:
    """Where events and metrics go, and where state is kept (follow and replay)."""
    parser.add_argument(
        "--output",
        metavar="stdout|file:PATH|datadog",
        help="where events go: NDJSON on stdout or in a file, or Datadog's logs intake "
        "(default: datadog when DD_API_KEY is set, else stdout)",
    )
    parser.add_argument(
        "--intake-url",
        metavar="URL",
        help="full URL to post logs to (default: the v2 intake for DD_SITE)",
    )
    parser.add_argument("--dogstatsd", metavar="HOST:PORT|off", help=metrics)
    parser.add_argument(
        "--metrics-namespace",
        metavar="NS",
        default="gunicorn.logs",
        help="prefix of the derived metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default_state_dir(),
        help=f"{state} (default: %(default)s)",
    )


def build_parse_parser() -> argparse.ArgumentParser:
    parse = _ArgumentParser(
        prog="logpipe parse",
        description="Parse a gunicorn access or error log to one NDJSON event per line/record.",
    )
    parse.add_argument(
        "--kind",
        choices=("access", "error"),
        required=True,
        help="access: one event per line; error: one per (multi-line) record",
    )
    add_parsing_options(parse)
    add_tag_options(parse)
    parse.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="log file to read; - or nothing for stdin",
    )
    return parse


def add_parsing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--access-format",
        metavar="FMT",
        help="gunicorn's access_log_format (default: gunicorn's default, plus the "
        "common log format and a trailing quoted X-Forwarded-For)",
    )
    parser.add_argument(
        "--multiline-pattern",
        metavar="REGEX",
        default=DEFAULT_START,
        help="start of an error-log record (default: %(default)s)",
    )
    parser.add_argument(
        "--max-line-bytes",
        metavar="N",
        type=int,
        default=MAX_LINE_BYTES,
        help="cut longer lines and records, flagging them (default: %(default)s)",
    )


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "logpipe")


def add_tag_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("event identity")
    group.add_argument("--service", help="service attribute (default: DD_SERVICE, else gunicorn)")
    group.add_argument("--env", help="adds env:ENV to ddtags (default: DD_ENV)")
    group.add_argument(
        "--tags",
        metavar="K:V,...",
        default="",
        help="extra ddtags, comma-separated (added to DD_TAGS)",
    )
    group.add_argument(
        "--hostname", help="hostname attribute (default: DD_HOSTNAME, else this host)"
    )


def tags_from(args: argparse.Namespace) -> ServiceTags:
    return ServiceTags.resolve(
        service=args.service, env=args.env, tags=split_tags(args.tags), hostname=args.hostname
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        if arguments[:1] == ["parse"]:
            return run_parse(build_parse_parser().parse_args(arguments[1:]))
        if arguments[:1] == ["replay"]:
            return run_replay(build_replay_parser().parse_args(arguments[1:]))
        if arguments[:1] == ["check"]:
            return run_check(build_check_parser().parse_args(arguments[1:]))
        parser = build_parser()
        config = config_path(arguments)
        if config:
            try:
                apply_config(parser, config)
            except ConfigError as error:
                raise UsageError(str(error)) from None
        return run_follow(parser.parse_args(arguments))
    except UsageError as error:
        print(f"logpipe: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`); nothing left to say
        return 0
    except KeyboardInterrupt:
        return 130


def access_parser(
    args: argparse.Namespace, service_tags: ServiceTags | None = None
) -> AccessParser:
    """The access parser the options ask for (its events carry ``service_tags``'s attributes)."""
    if args.max_line_bytes < 1:
        raise UsageError("--max-line-bytes must be positive")
    try:
        return AccessParser(
            args.access_format,
            max_line_bytes=args.max_line_bytes,
            attributes=service_tags.attributes if service_tags else None,
        )
    except FormatError as error:
        raise UsageError(f"--access-format: {error}") from None


def run_follow(args: argparse.Namespace) -> int:
    """``logpipe --access PATH --error PATH``: follow until SIGTERM/SIGINT, then drain."""
    from logpipe.cli.follow import follow

    if not args.access and not args.error:
        raise UsageError("nothing to follow: give --access PATH and/or --error PATH")
    service_tags = tags_from(args)
    access = access_parser(args, service_tags)
    pattern = _pattern(args.multiline_pattern)
    return follow(args, access, pattern, service_tags)


def run_check(args: argparse.Namespace) -> int:
    """``logpipe check``: one process check per --proc-name on stdout; 0 all OK, 2 any not."""
    from logpipe.checks.gunicorn_processes import OK, check, send, valid_names
    from logpipe.metrics.derive import dogstatsd, shutdown

    try:
        names = valid_names(args.proc_name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    service_tags = tags_from(args)
    try:
        client = dogstatsd(
            args.dogstatsd,
            namespace="",
            tags=service_tags.metric_tags,
            flush_thread=False,
        )
    except ValueError as error:
        raise UsageError(f"--dogstatsd: {error}") from None
    results = check(names)
    for result in results:
        print(result.describe(), flush=True)
        if client is not None:
            send(result, client)
    if client is not None:
        shutdown(client)
    return 0 if all(result.status == OK for result in results) else 2


def run_replay(args: argparse.Namespace) -> int:
    """``logpipe replay``: send archived files once, oldest first; exit 0 when delivered."""
    from contextlib import ExitStack
    from os.path import isfile
    from pathlib import Path

    from logpipe.backfill.archives import expand, is_url, order_series
    from logpipe.backfill.engines import default_jobs, open_engine
    from logpipe.backfill.report import Summary
    from logpipe.backfill.run import Replay, ReplayFile
    from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
    from logpipe.cli.outputs import open_sink
    from logpipe.sinks.datadog_logs import Interrupted
    from logpipe.sinks.ndjson import NdjsonSink

    files = [ReplayFile(path, "access") for path in order_series(expand(args.access))]
    files += [ReplayFile(path, "error") for path in order_series(expand(args.error))]
    if not files:
        raise UsageError("nothing to replay: give --access FILE|GLOB and/or --error FILE|GLOB")
    for missing in [file.path for file in files if not is_url(file.path) and not isfile(file.path)]:
        raise UsageError(f"cannot read {missing}: no such file")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    access_parser(args)  # the format is checked here, once
    pattern = _pattern(args.multiline_pattern)
    ledger = CheckpointStore(Path(args.state_dir), file_name="replay-ledger.json")
    summary = Summary()
    service_tags = tags_from(args)
    counts, send_metrics, close_metrics = timestamped_metrics(args, service_tags)
    output = args.output or ("datadog" if os.environ.get("DD_API_KEY") else "stdout")
    max_age = parse_duration(args.max_age or ("18h" if output == "datadog" else "none"))
    oldest_ms = None if max_age is None else int((time.time() - max_age) * 1000)
    stop, signals = stop_on_signals()
    with ExitStack() as resources:
        sink = open_sink(args, stop, resources, _stderr)
        resources.callback(sink.close)
        try:
            engine = resources.enter_context(
                open_engine(
                    args.engine,
                    jobs=args.jobs or default_jobs(),
                    scheduler=args.scheduler,
                    output_path=sink.path if isinstance(sink, NdjsonSink) else None,
                )
            )
        except (ValueError, OSError) as error:
            raise UsageError(f"--engine {args.engine}: {error}") from None
        try:
            replay = Replay(
                files,
                sink,
                ledger,
                access_format=args.access_format,
                multiline_pattern=pattern,
                max_line_bytes=args.max_line_bytes,
                attributes=service_tags.attributes,
                oldest_ms=oldest_ms,
                force=args.force,
                engine=engine,
                summary=summary if args.report or not args.quiet else None,  # only if shown
                counts=counts,
                warn=_stderr,
                progress=ProgressLine() if sys.stderr.isatty() else lambda replay: None,
                send_counts=send_metrics,
                stop=stop,
            )
        except CorruptCheckpoints as error:
            raise UsageError(f"{error} (use --force, or move the ledger aside)") from None
        relax_gc()
        try:
            replay.run()
        except Interrupted:
            replay.interrupted = True  # while the intake was failing: the ledger has the rest
        finally:
            close_metrics()
    if replay.interrupted:
        _stderr(
            f"stopped by {signals[-1].name}: {replay.events} events sent; the ledger keeps "
            "where each file got to, and a re-run goes on from there"
        )
        return 128 + signals[-1]
    older = f", {replay.too_old} older than --max-age not sent" if replay.too_old else ""
    _stderr(f"replayed {len(files)} files: {replay.events} events{older}")
    summary.skipped_old = replay.too_old
    if not args.quiet:
        print(summary.text(), file=sys.stderr)
    if args.report:
        try:
            Path(args.report).write_text(summary.html(), encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--report {args.report}: {error.strerror}") from None
    if replay.unreadable:
        _stderr(f"not read to the end (damaged): {', '.join(replay.unreadable)}")
        return 1
    return 0


def stop_on_signals() -> tuple[threading.Event, list[signal.Signals]]:
    """An event set by SIGINT or SIGTERM, and the signals received (replay finishes what is in
    flight, then stops)."""
    stop = threading.Event()
    received: list[signal.Signals] = []

    def request_stop(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum))
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop, received


def timestamped_metrics(
    args: argparse.Namespace, service_tags: ServiceTags
) -> tuple[TimestampedCounts | None, Callable[[Sums], None], Callable[[], None]]:
    """(counts, send, close) for replay metrics at the logs' own times (no-ops with off):
    ``send`` sends the sums a checkpoint took, ``close`` all the rest."""
    from logpipe.metrics.derive import TimestampedCounts, dogstatsd

    try:
        client = dogstatsd(
            args.dogstatsd,
            namespace=args.metrics_namespace,
            tags=service_tags.metric_tags,
            flush_thread=False,
        )
    except ValueError as error:
        raise UsageError(f"--dogstatsd: {error}") from None
    if client is None:
        return None, lambda sums: None, lambda: None
    counts = TimestampedCounts(client)

    def send(sums: Sums) -> None:
        counts.send(sums)
        counts.flush()

    return counts, send, counts.close


class ProgressLine:
    """A progress line on a terminal, redrawn at most 4 times a second: files, events, events/s
    and an ETA by bytes."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.drawn = 0.0

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
        if read:
            remaining = elapsed * (replay.bytes_total - read) / read
            eta = f", ETA {remaining:.0f} s"
        print(
            f"\rlogpipe: file {replay.files_done}/{len(replay.files)}, {replay.events:,} events, "
            f"{rate:,.0f}/s{eta}   ",
            end="\n" if finished else "",
            file=sys.stderr,
            flush=True,
        )


def parse_duration(text: str) -> float | None:
    """``18h`` / ``90m`` / ``2d`` / ``45s`` to seconds; ``none`` to None."""
    if text.strip().lower() == "none":
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.replace(".", "", 1).isdigit():
        raise UsageError(f"--max-age: {text!r} is not a duration like 18h, 90m, 2d or none")
    return float(number) * units[unit]


def _stderr(message: str) -> None:
    print(f"logpipe: {message}", file=sys.stderr, flush=True)


def run_parse(args: argparse.Namespace) -> int:
    """``logpipe parse``: events of a whole file to NDJSON on stdout."""
    path = None if args.file == "-" else args.file
    service_tags = tags_from(args)
    if args.kind == "access":
        access = access_parser(args, service_tags)

        def events(stream: BinaryIO) -> Iterator[Event]:
            return access_events(stream, access, path=path)
    else:
        multiline: Multiline[bytes] = Multiline(
            _pattern(args.multiline_pattern), max_bytes=args.max_line_bytes
        )
        errors = ErrorParser(
            max_record_bytes=args.max_line_bytes, attributes=service_tags.attributes
        )

        def events(stream: BinaryIO) -> Iterator[Event]:
            return error_events(
                stream, errors, multiline, path=path, max_line_bytes=args.max_line_bytes
            )

    relax_gc()
    with _open_input(args.file) as stream:
        writer = NdjsonWriter(sys.stdout.buffer)
        writer.write_all(events(stream))
        writer.flush()
    return 0


def relax_gc() -> None:
    """Run the cycle collector rarely: events are acyclic dicts, freed as soon as written, and
    with the default threshold the collector would walk the young objects every ~90 events.
    Objects alive now (grammars, caches) are moved out of its sight for good."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise UsageError(f"--multiline-pattern: {error}") from None
    return pattern


@contextmanager
def _open_input(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise UsageError(f"cannot read {name}: {error.strerror}") from None
    with stream:
        yield stream

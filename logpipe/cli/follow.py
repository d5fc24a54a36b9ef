"""``logpipe --access ... --error ...`` (follow mode): wire the follower, the parsers and the
sink, and run."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
from logpipe.checks.gunicorn_processes import (
    ProcessMonitor,
    check,
    check_tags,
    proc_tags,
    valid_names,
)
from logpipe.cli.check import add_proc_tags_option, given_hostname
from logpipe.cli.config import apply_config, config_path
from logpipe.cli.http_endpoint import add_http_options, open_endpoint
from logpipe.cli.options import (
    ArgumentParser,
    access_parser,
    add_delivery_options,
    add_error_layout_options,
    add_log_format_option,
    add_log_options,
    add_metrics_mode_options,
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
from logpipe.cli.runtime import INFO, WARNING, relax_gc, set_log_format, warn
from logpipe.metrics.address import DogStatsdAddress
from logpipe.metrics.client import dogstatsd, dogstatsd_address, shutdown
from logpipe.metrics.derive import EventMetrics
from logpipe.metrics.gunicorn import GunicornMetrics, dogstatsd_tags, own_statsd, refusal
from logpipe.parsing.error.layouts import ErrorLayout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.follow_loop import FollowPipeline
from logpipe.pipeline.formats import AccessFormats, ErrorLayouts, error_multiline
from logpipe.problems import SetupError
from logpipe.service_tags import ServiceTags
from logpipe.sinks import Interrupted
from logpipe.sources.follower import ROTATE_WAIT, Follower, FollowSpec
from logpipe.sources.multiline import Multiline
from logpipe.sources.wake import Waker

COUNTED_FILE = "counted.json"  # each file's position in the metrics (beside the checkpoints)
QUIET_EVENTS = frozenset(
    {"opened", "rotated", "closed", "truncated", "recovering", "recovered", "readable"}
)


def build_parser() -> argparse.ArgumentParser:
    """``logpipe``'s options (follow mode)."""
    parser = ArgumentParser(
        prog="logpipe",
        description="Follow gunicorn access and error logs through rotation and ship them as "
        "structured events. Runs until SIGTERM/SIGINT.",
        epilog="Other commands: logpipe parse --help (a whole file to NDJSON), logpipe replay "
        "--help (backfill archives), logpipe check --help (gunicorn's processes, once), "
        "logpipe resend --help (the intake's refusals, again).",
    )
    add_log_options(parser, "follow", "PATH")
    add_parsing_options(parser)
    add_rule_options(parser)
    add_error_layout_options(parser)
    add_delivery_options(
        parser,
        state="where checkpoints are kept",
        metrics="where derived metrics go (default: DD_AGENT_HOST:DD_DOGSTATSD_PORT, else "
        "localhost:8125)",
    )
    add_metrics_mode_options(parser)
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
    add_log_format_option(parser)
    parser.add_argument(
        "--exit-idle",
        metavar="SECONDS",
        type=float,
        default=0,
        help="drain and exit once nothing new was read for this long (demos, tests, one-shot "
        "catch-up); 0: run until SIGTERM/SIGINT (default)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        type=float,
        default=20.0,
        help="at SIGTERM/SIGINT, deliver for at most this long, then exit with the checkpoints "
        "behind what was not delivered; keep it below systemd's TimeoutStopSec "
        "(default: %(default)s)",
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
    parser.add_argument(
        "--rotate-wait",
        metavar="SECONDS",
        type=float,
        default=ROTATE_WAIT,
        help="keep reading a rotated (renamed) file until nothing was added to it for this long "
        "after the rename: gunicorn writes to it until its workers reopen their logs "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files a wildcard --access/--error matches whose path or name matches "
        "GLOB (repeatable; compressed files are always left out)",
    )
    add_tag_options(parser)
    add_process_options(parser)
    add_http_options(parser)
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
    add_proc_tags_option(group)
    group.add_argument(
        "--process-interval",
        metavar="SECONDS",
        type=float,
        default=15.0,
        help="how often to check (default: %(default)s)",
    )


def run_follow(arguments: Sequence[str]) -> int:
    """``logpipe --access PATH --error PATH``: follow until SIGTERM/SIGINT, then drain; the
    ``--config`` file's values are the defaults."""
    parser = build_parser()
    config = config_path(arguments)
    if config:
        apply_config(parser, config)
    args = parser.parse_args(arguments)
    set_log_format(args.log_format)
    if not args.access and not args.error:
        raise SetupError("nothing to follow: give --access PATH and/or --error PATH")
    service_tags = tags_from(args)
    access = access_parser(args, service_tags)  # checks the options, whatever the format
    if fixed_access_format(args) is None:  # auto: each file's own, detected
        formats = AccessFormats(  # (the parser just made serves gunicorn's defaults)
            make=lambda found: (
                access if found == access.formats else access_parser(args, service_tags, found)
            ),
            report=warn,
        )
    else:
        formats = AccessFormats(access)
    multiline_pattern(args.multiline_pattern)  # checked
    processing_rules(args)  # checked before anything starts
    return follow(args, formats, error_layouts(args, service_tags), service_tags)


def error_layouts(args: argparse.Namespace, service_tags: ServiceTags) -> ErrorLayouts:
    """The error parsers the options ask for: one layout, or each file's, detected."""
    layout, zone = error_layout(args), timezone(args)

    def make(layout: ErrorLayout) -> ErrorParser:
        return ErrorParser(
            max_record_bytes=args.max_line_bytes,
            attributes=service_tags.attributes,
            layout=layout,
            timezone=zone,
        )

    return ErrorLayouts(make(layout)) if layout else ErrorLayouts(make=make, report=warn)


def error_aggregator(args: argparse.Namespace) -> Callable[[bytes], Multiline[bytes]]:
    """An error log's aggregator from its first bytes: records start as its layout says
    (``--multiline-pattern``, when given, says instead)."""
    layout = error_layout(args)

    def make(head: bytes) -> Multiline[bytes]:
        return error_multiline(
            head, fixed=layout, given=args.multiline_pattern, max_bytes=args.max_line_bytes
        )

    return make


class StderrObserver:
    """One line on stderr for each thing that happens to a followed file (with ``quiet``,
    only for problems: a missing file, lost bytes, the open-files limit)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def notice(self, event: str, path: str, **details: int | str) -> None:
        if self.quiet and event in QUIET_EVENTS:
            return
        if event == "missing":
            message = f"{path} does not exist yet; waiting for it to appear"
        elif event == "no-match":
            message = f"no file matches {path} yet; waiting for one to appear"
        elif event == "unreadable":
            message = f"cannot follow {path}: {details['reason']}; trying again at each rescan"
        elif event == "readable":
            message = f"{path} can be read again; following it"
        else:
            extra = " ".join(f"{key}={value}" for key, value in details.items())
            message = f"{event} {path} {extra}".rstrip()
        warn(message, level=INFO if event in QUIET_EVENTS else WARNING)


def follow(
    args: argparse.Namespace,
    access: AccessFormats,
    errors: ErrorLayouts,
    service_tags: ServiceTags,
) -> int:
    """Run follow mode until SIGTERM/SIGINT; exit status 0 after a clean drain."""
    try:
        proc_names = valid_names(args.proc_name)
        per_name = proc_tags(args.proc_tags, proc_names)
    except ValueError as error:
        raise SetupError(str(error)) from None
    if proc_names and not args.process_interval > 0:
        raise SetupError("--process-interval must be positive")
    if not args.shutdown_timeout > 0:
        raise SetupError("--shutdown-timeout must be positive")
    specs = [FollowSpec(path, "access") for path in args.access]
    specs += [FollowSpec(path, "error") for path in args.error]
    lock = _lock_state_dir(Path(args.state_dir))
    store = CheckpointStore(Path(args.state_dir), on_problem=warn)

    def make_follower(start_at: str) -> Follower:
        return Follower(
            specs,
            store,
            start_at=start_at,
            multiline=error_aggregator(args),
            max_line_bytes=args.max_line_bytes,
            observer=StderrObserver(quiet=args.log_level in ("warning", "error")),
            rotate_wait=args.rotate_wait,
            exclude=args.exclude,
        )

    counted = CheckpointStore(Path(args.state_dir), on_problem=warn, file_name=COUNTED_FILE)
    try:
        follower = make_follower(args.start_at)
        counted.load()
    except CorruptCheckpoints as error:
        raise SetupError(f"{error} (move the state dir aside to start over)") from None
    except OSError as error:
        raise SetupError(f"state dir {args.state_dir}: {error.strerror}") from None
    stop = threading.Event()
    waker = Waker(spec.path for spec in specs)
    if waker.problem:
        warn(waker.problem)

    reopen = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        waker.wake()

    def request_reopen(signum: int, frame: object) -> None:
        reopen.set()  # done on the loop's thread
        waker.wake()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reopen)
    with ExitStack() as resources:
        endpoint = open_endpoint(args)  # listening now: a port in use is said before anything
        if endpoint is not None:
            resources.callback(endpoint.close)
        sink = open_sink(
            output_settings(args),
            stop,
            warn,
            shutdown_timeout=args.shutdown_timeout,
            on_attempt=[endpoint.metrics.observe_attempt] if endpoint else [],
        )
        resources.callback(sink.close)
        address = _statsd_address(args)
        if address is not None:
            resources.callback(address.stop)  # after the clients' close: callbacks run last first
        metrics = _metrics(args, service_tags, address)
        if metrics is not None:
            resources.callback(metrics.close)
        if proc_names:
            # its own client: the integration's tags (no service unless one is given)
            check_statsd = (
                dogstatsd(address, namespace="", tags=check_tags(args.service, service_tags.tags))
                if address is not None
                else None
            )
            if check_statsd is not None:
                resources.callback(shutdown, check_statsd)
            monitor = ProcessMonitor(
                proc_names,
                args.process_interval,
                statsd=check_statsd,
                report=warn,
                quiet=args.log_level in ("warning", "error"),
                tags=per_name,
                hostname=given_hostname(args),
            )
            resources.callback(monitor.stop)  # before metrics.close: callbacks run last first
            monitor.start()
        pipeline = FollowPipeline(
            follower,
            sink,
            access=access,
            errors=errors,
            waker=waker,
            status_interval=args.status_interval,
            report=warn,
            observers=[metrics.observe] if metrics else [],
            telemetry=_telemetry(metrics) if metrics else None,
            exit_idle=args.exit_idle,
            reopen=reopen,
            rules=processing_rules(args),
            # after a logs outage: every file the follower had is in its checkpoints, so a
            # file they do not know is new since, and read from its beginning
            refollow=lambda: make_follower("beginning"),
            counted=counted if metrics is not None else None,
        )
        if endpoint is not None:
            endpoint.serve(lambda: pipeline.latest)
            if args.log_level in ("debug", "info"):
                warn(f"serving /health, /metrics and /status on http://{endpoint.address}")
        relax_gc()
        try:
            pipeline.run(stop)
        except Interrupted as interrupted:
            warn(f"{interrupted}: undelivered events will be sent after a restart")
        finally:
            waker.stop()
            lock.close()
    return 0


def _lock_state_dir(state_dir: Path) -> TextIO:
    """Hold the state dir for this process: two followers must not share checkpoints. The
    lock file is open for reading only, so that it does not keep the state dir's file system
    from being remounted read-only (the checkpoints then wait until it is writable again)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(state_dir / "lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        lock = os.fdopen(fd)  # held until exit
    except OSError as error:
        raise SetupError(f"state dir {state_dir}: {error.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise SetupError(f"state dir {state_dir} is in use by another logpipe") from None
    return lock


def _statsd_address(args: argparse.Namespace) -> DogStatsdAddress | None:
    """Where ``--dogstatsd`` sends (None with ``off``), looked up off the pipeline's thread;
    what the lookups find wrong is one line on stderr."""
    try:
        return dogstatsd_address(args.dogstatsd, report=warn)
    except ValueError as error:
        raise SetupError(f"--dogstatsd: {error}") from None


def _metrics(
    args: argparse.Namespace, service_tags: ServiceTags, address: DogStatsdAddress | None
) -> EventMetrics | None:
    """Derived metrics to DogStatsD at ``address``, tagged service/env/user tags (None with
    ``off``); with ``--metrics-mode gunicorn``, gunicorn's own statsd metrics, names and tags
    instead (refused when a watched master already sends them)."""
    gunicorn_mode = args.metrics_mode == "gunicorn"
    if gunicorn_mode and args.proc_name:
        for status in check(valid_names(args.proc_name), pause=lambda seconds: None):
            for pid in status.masters:
                if (why := own_statsd(pid)) is not None:
                    raise SetupError(refusal(status.proc_name, pid, why))
    if address is None:
        return None
    if gunicorn_mode:
        client = dogstatsd(
            address,
            namespace="",
            tags=dogstatsd_tags(args.dogstatsd_tags),
            env_tags=False,
            telemetry=False,
        )
        own = dogstatsd(address, namespace="", tags=service_tags.metric_tags)
        assert client is not None and own is not None
        return GunicornMetrics(client, own, prefix=args.statsd_prefix, report=warn)
    client = dogstatsd(address, namespace=args.metrics_namespace, tags=service_tags.metric_tags)
    assert client is not None
    return EventMetrics(client)


def _telemetry(metrics: EventMetrics) -> Callable[[FollowPipeline], None]:
    """Self-telemetry (``logpipe.*``) as increments since the last checkpoint, then a flush."""
    previous: dict[str, int] = {}

    def report(pipeline: FollowPipeline) -> None:
        stats = pipeline.sink.stats()
        totals = {"lines_read": pipeline.lines, "events_sent": pipeline.sink.delivered}
        totals.update(retries=stats.get("retries", 0), dead_lettered=stats.get("refused", 0))
        for name, total in totals.items():
            if total > previous.get(name, 0):
                metrics.count_self(name, total - previous.get(name, 0))
                previous[name] = total
        metrics.gauge_self("bytes_behind", pipeline.follower.behind())
        metrics.flush()

    return report

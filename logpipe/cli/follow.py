"""``logpipe --access ... --error ...``: wire the follower, the parsers and the sink, and run."""

from __future__ import annotations

import argparse
import fcntl
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
from logpipe.checks.gunicorn_processes import ProcessMonitor, valid_names
from logpipe.cli.outputs import open_sink
from logpipe.metrics.derive import EventMetrics, dogstatsd
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.follow_loop import FollowPipeline
from logpipe.service_tags import ServiceTags
from logpipe.sinks.datadog_logs import Interrupted
from logpipe.sources.follower import Follower, FollowSpec
from logpipe.sources.multiline import Multiline
from logpipe.sources.wake import Waker

QUIET_EVENTS = frozenset({"opened", "rotated", "closed", "truncated", "recovered"})


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
        else:
            extra = " ".join(f"{key}={value}" for key, value in details.items())
            message = f"{event} {path} {extra}".rstrip()
        print(f"logpipe: {message}", file=sys.stderr, flush=True)


def follow(
    args: argparse.Namespace, access: AccessParser, pattern: str, service_tags: ServiceTags
) -> int:
    """Run follow mode until SIGTERM/SIGINT; exit status 0 after a clean drain."""
    from logpipe.cli.main import UsageError, relax_gc

    try:
        proc_names = valid_names(args.proc_name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if proc_names and not args.process_interval > 0:
        raise UsageError("--process-interval must be positive")
    specs = [FollowSpec(path, "access") for path in args.access]
    specs += [FollowSpec(path, "error") for path in args.error]
    lock = _lock_state_dir(Path(args.state_dir))
    store = CheckpointStore(Path(args.state_dir), on_problem=_warn)
    try:
        follower = Follower(
            specs,
            store,
            start_at=args.start_at,
            multiline=lambda: Multiline(pattern, max_bytes=args.max_line_bytes),
            max_line_bytes=args.max_line_bytes,
            observer=StderrObserver(quiet=args.log_level in ("warning", "error")),
        )
    except CorruptCheckpoints as error:
        raise UsageError(f"{error} (move the state dir aside to start over)") from None
    except OSError as error:
        raise UsageError(f"state dir {args.state_dir}: {error.strerror}") from None
    stop = threading.Event()
    waker = Waker(spec.path for spec in specs)
    if waker.problem:
        _warn(waker.problem)

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        waker.wake()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with ExitStack() as resources:
        sink = open_sink(args, stop, resources, _warn)
        resources.callback(sink.close)
        metrics = _metrics(args, service_tags)
        if metrics is not None:
            resources.callback(metrics.close)
        if proc_names:
            monitor = ProcessMonitor(
                proc_names,
                args.process_interval,
                statsd=metrics.self_statsd if metrics is not None else None,
                report=_warn,
                quiet=args.log_level in ("warning", "error"),
            )
            resources.callback(monitor.stop)  # before metrics.close: callbacks run last first
            monitor.start()
        pipeline = FollowPipeline(
            follower,
            sink,
            access=access,
            errors=ErrorParser(
                max_record_bytes=args.max_line_bytes, attributes=service_tags.attributes
            ),
            waker=waker,
            status_interval=args.status_interval,
            report=_warn,
            observers=[metrics.observe] if metrics else [],
            telemetry=_telemetry(metrics) if metrics else None,
            exit_idle=args.exit_idle,
        )
        relax_gc()
        try:
            pipeline.run(stop)
        except Interrupted as interrupted:
            _warn(f"{interrupted}: undelivered events will be sent after a restart")
        finally:
            waker.stop()
            lock.close()
    return 0


def _lock_state_dir(state_dir: Path) -> TextIO:
    """Hold the state dir for this process: two followers must not share checkpoints."""
    from logpipe.cli.main import UsageError

    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = open(state_dir / "lock", "w")  # noqa: SIM115 - held until exit
    except OSError as error:
        raise UsageError(f"state dir {state_dir}: {error.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise UsageError(f"state dir {state_dir} is in use by another logpipe") from None
    return lock


def _metrics(args: argparse.Namespace, service_tags: ServiceTags) -> EventMetrics | None:
    """Derived metrics to DogStatsD, tagged service/env/user tags (None with ``off``)."""
    from logpipe.cli.main import UsageError

    try:
        client = dogstatsd(
            args.dogstatsd, namespace=args.metrics_namespace, tags=service_tags.metric_tags
        )
    except ValueError as error:
        raise UsageError(f"--dogstatsd: {error}") from None
    return EventMetrics(client) if client is not None else None


def _telemetry(metrics: EventMetrics) -> Callable[[FollowPipeline], None]:
    """Self-telemetry (``logpipe.*``) as increments since the last checkpoint, then a flush."""
    previous: dict[str, int] = {}

    def report(pipeline: FollowPipeline) -> None:
        totals = {"lines_read": pipeline.lines, "events_sent": pipeline.delivered}
        totals.update(pipeline.sink.stats())
        for name, total in totals.items():
            if name != "queued" and total > previous.get(name, 0):
                metrics.count_self(name, total - previous.get(name, 0))
                previous[name] = total
        metrics.gauge_self("bytes_behind", pipeline.follower.behind())
        metrics.flush()

    return report


def _warn(message: str) -> None:
    print(f"logpipe: {message}", file=sys.stderr, flush=True)

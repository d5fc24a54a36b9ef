"""Follow mode: what the follower read becomes events, goes to the log sink, and acks come back.

One thread, one direction: ``Follower.poll`` -> parse (``pipeline.batch``, the route ``parse``
and replay take too) -> observers (metrics) -> log sink. The sink returns the tokens ``(file
key, end offset)`` of what it has delivered, and only those are acknowledged; about once a second
the sink makes them durable and the checkpoints are stored. While the sink sends (or retries),
nothing is read: a slow sink slows reading, and the files on disk are the buffer.

Checkpointing waits on the disk twice (the output's fsync, then the checkpoint file's), so it
runs on a thread of its own (``Checkpointing``): reading and parsing go on meanwhile.

A write that fails for a reason that can pass (a full disk, a read-only state dir) starts an
``Outage``: reading pauses, and the writes and the checkpoint are retried on this thread with
backoff until they work; the checkpoints stay behind what was not written meanwhile.

The Datadog sink delivers on a thread of its own. When the intake fails and batches pile up
(``sink.congested``), logs are paused, not reading: lines are still read and parsed for the
metrics (and the status, the snapshot and self-telemetry keep their pace), but no event goes to
the sink, so the checkpoints stay at the last delivered event and the files keep the logs. Once
the sink has delivered all it held, the follower is made again from its checkpoints
(``refollow``, as at a restart: rotated files are found again) and the logs are read again from
there; their metrics are not counted twice, since each file's counted position (``counted``,
stored beside the checkpoints) says which events the metrics have seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from logpipe.about import VERSION
from logpipe.checkpoints import Checkpoint, CheckpointStore, CorruptCheckpoints
from logpipe.event import Event, Token
from logpipe.parsing.access.format import DEFAULT_FORMATS
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_batch_pairs, record_pairs
from logpipe.pipeline.formats import AccessFormats, ErrorLayouts
from logpipe.pipeline.outage import Outage, passing
from logpipe.pipeline.rules import Rules, Skips
from logpipe.pipeline.snapshot import FileState, Snapshot
from logpipe.sinks import Interrupted, LogSink
from logpipe.sources.follower import Batch, Follower
from logpipe.sources.wake import Waker

CHECKPOINT_INTERVAL = 1.0
# The rescan, the source of truth: appended lines are read at the next one (file notifications
# hasten it for renames only). Each poll that finds nothing doubles the wait, up to
# IDLE_POLL_INTERVAL: an idle follower wakes once a second.
POLL_INTERVAL = 0.25
IDLE_POLL_INTERVAL = 1.0


class FollowPipeline:
    """Run the follow loop until ``stop`` is set, then drain and store the last checkpoint."""

    def __init__(
        self,
        follower: Follower,
        sink: LogSink,
        *,
        access: AccessParser | AccessFormats,
        errors: ErrorParser | ErrorLayouts,
        observers: Sequence[Callable[[Event], object]] = (),
        waker: Waker | None = None,
        clock: Callable[[], float] = time.monotonic,
        status_interval: float = 0,
        report: Callable[[str], None] = lambda line: None,
        telemetry: Callable[[FollowPipeline], None] | None = None,
        exit_idle: float = 0,
        reopen: threading.Event | None = None,
        outage: Outage | None = None,
        rules: Rules | None = None,
        refollow: Callable[[], Follower] | None = None,
        counted: CheckpointStore | None = None,
    ) -> None:
        self.follower = follower
        self.sink = sink
        # each file's access parser: the one given, or one per file's detected format
        self._access = access if isinstance(access, AccessFormats) else AccessFormats(access)
        self._errors = errors if isinstance(errors, ErrorLayouts) else ErrorLayouts(errors)
        self._observers = tuple(observers)
        self._waker = waker
        self._clock = clock
        self._status_interval = status_interval
        self._report = report
        self._telemetry = telemetry  # called at each checkpoint (self-telemetry, metric flushes)
        self._exit_idle = exit_idle
        self.lines = 0  # lines or records read
        self.parse_errors = 0  # access lines that did not parse
        self._parse_errors: dict[str, int] = {}  # by file
        self._durable = -1  # the sink's ``delivered`` when its last sync job was made
        self._checkpointing = Checkpointing()
        self._next_checkpoint = 0.0
        self._reopen = reopen  # set (SIGHUP) to reopen the output file
        self._outage = outage or Outage(report)
        self.rules = rules  # processing rules (exclude, include, mask), if any
        self._skips = Skips() if rules is not None else None  # batches the rules dropped whole
        self._kept = 0  # events the rules kept in the batch being sent
        # Logs paused while the sink is congested (needs ``refollow``: how to make the follower
        # again from its checkpoints); the metrics' position per file key, stored in ``counted``.
        self._refollow = refollow
        self.logs_paused = False
        self._paused_since: float | None = None  # Unix time
        self._resume_failure: str | None = None  # why resuming the logs failed, as said last
        self._outage_since: float | None = None  # Unix time a write outage was first seen
        self._counted_store = counted
        self._counted: dict[str, int] = {}
        if counted is not None:
            self._counted = {key: entry.offset for key, entry in counted.load().items()}
        self._counted_saved: list[Checkpoint] | None = None
        self.latest: Snapshot | None = None  # published about once a second (``_publish``)
        self._started_at = time.time()
        self._checkpoint_at: float | None = None

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop``; then deliver what is left and store the checkpoints, also when
        the sink gives up at shutdown (it raises ``Interrupted``: the undelivered events stay
        behind the checkpoints and are sent after a restart). In an outage nothing more is
        read or sent."""
        try:
            self._loop(stop)
            if not self._outage.active:
                self._send(self.follower.poll())
            closing = self.follower.close()
            if not self._outage.active:
                self._send(closing)
                self._acknowledge(self.sink.drain())
        except Interrupted as interrupted:
            self._acknowledge(interrupted.delivered)
            raise
        finally:
            self._last_checkpoint()

    def _loop(self, stop: threading.Event) -> None:
        self._publish()
        self._next_checkpoint = next_snapshot = self._clock() + CHECKPOINT_INTERVAL
        last_status, lines_then = self._clock(), 0
        last_item = self._clock()
        interval = POLL_INTERVAL
        while not stop.is_set():
            reading = not self._outage.active
            batches = self.follower.poll() if reading else []
            if batches or not reading:  # a paused follower is not idle
                last_item = self._clock()
                interval = POLL_INTERVAL
            elif self._exit_idle and self._clock() - last_item >= self._exit_idle:
                break
            else:
                interval = min(interval * 2, IDLE_POLL_INTERVAL)
            self._send(batches)
            now = self._clock()
            self._write(now)
            if now >= next_snapshot:  # in a write outage too
                self._publish()
                next_snapshot = now + CHECKPOINT_INTERVAL
            if self._status_interval and now - last_status >= self._status_interval:
                rate = (self.lines - lines_then) / (now - last_status)
                self._report(self.status(rate))
                last_status, lines_then = now, self.lines
            if self._outage.active:
                interval = self._outage.wait(now)
            elif self.follower.more:
                continue  # a file is still at its read budget: catching up
            if self._waker is not None:
                self._waker.wait(interval)
            else:
                stop.wait(interval)

    def _write(self, now: float) -> None:
        """Write out what was sent, reopen the output when asked, and checkpoint when due; in
        an outage, ``_retry`` when a retry is due. A write that fails starts or prolongs the
        outage."""
        if not self._outage.due(now):
            return
        try:
            if self._outage.active:
                self._retry()
                return
            self._reopen_when_asked()
            self._acknowledge(self.sink.tick())
            if self.logs_paused:
                self._resume_logs_when_delivered()
            due = now >= self._next_checkpoint or self.follower.unsaved_files  # new files at once
            if due and self._checkpointing.idle():
                self._checkpoint()
                self._next_checkpoint = now + CHECKPOINT_INTERVAL
        except OSError as error:
            self._durable = -1  # the next checkpoint syncs the output again
            self._outage.failed(error, self._clock())

    def _retry(self) -> None:
        """In an outage: once the checkpoint under way is done, write out what is held and
        checkpoint, on this thread (nothing is read meanwhile); then the outage is over."""
        self._checkpointing.wait()
        self._reopen_when_asked()
        self._acknowledge(self.sink.tick())
        self._checkpoint(here=True)
        self._outage.ended(self._clock())

    def _reopen_when_asked(self) -> None:
        """SIGHUP: reopen the output file, once no checkpoint uses it."""
        if self._reopen is None or not self._reopen.is_set() or not self._checkpointing.idle():
            return
        self._reopen.clear()
        try:
            path = self.sink.reopen()
        except OSError:
            self._reopen.set()  # tried again when writing works
            raise
        if path is None:
            self._report("SIGHUP: the output is not a file; nothing to reopen")
        else:
            self._report(f"SIGHUP: reopened {path}")

    def _last_checkpoint(self) -> None:
        """The last checkpoint, on this thread, after the one under way. When a write fails
        now, the checkpoints stay behind what was not written (said in one line)."""
        try:
            self._checkpointing.finish()
        except OSError as error:
            if not passing(error):
                raise
            self._durable = -1  # synced again below
        try:
            self._checkpoint()
        except OSError as error:
            self._outage.gave_up(error)

    def _send(self, batches: list[Batch]) -> None:
        """Hand each batch's events to the sink as they are made: each is serialised while
        still in the CPU's cache, and few are alive at once. While logs are paused, only the
        observers see them."""
        for batch in batches:
            if not self.logs_paused and self._refollow is not None and self.sink.congested:
                self._pause_logs()
            floor = self._counted.get(batch.key, -1)
            if batch.end > floor:
                self.lines += _past(batch, floor)
            if self.logs_paused:
                self._count_only(batch, floor)
                continue
            rules = self.rules.for_input(batch.kind, batch.path) if self.rules else None
            if batch.lines is not None:
                parser = self._access.parser_for(batch.path, batch.lines)
                failures = parser.failures
                pairs = access_batch_pairs((batch.lines,), parser, path=batch.path, rules=rules)
            else:
                errors = self._errors.parser_for(batch.path, batch.records)
                pairs = record_pairs(batch.records, errors, path=batch.path, rules=rules)
            if self._observers and batch.end > floor:
                pairs = self._observed(pairs, floor)
                self._counted[batch.key] = batch.end
            if rules is not None:
                pairs = self._kept_count(pairs)
            self._acknowledge(self.sink.send(pairs, batch.key, batch.end))
            if rules is not None and self._skips is not None:
                self._ruled(batch, self._skips)
            if batch.lines is not None and parser.failures != failures:
                self._parse_failed(batch.path, parser.failures - failures, parser.last_failure)

    def _count_only(self, batch: Batch, floor: int) -> None:
        """Logs paused: show the batch's events past ``floor`` to the observers, send none."""
        if not self._observers or batch.end <= floor:
            return
        rules = self.rules.for_input(batch.kind, batch.path) if self.rules else None
        if batch.lines is not None:
            parser = self._access.parser_for(batch.path, batch.lines)
            pairs = access_batch_pairs((batch.lines,), parser, path=batch.path, rules=rules)
        else:
            errors = self._errors.parser_for(batch.path, batch.records)
            pairs = record_pairs(batch.records, errors, path=batch.path, rules=rules)
        for _ in self._observed(pairs, floor):
            pass
        self._counted[batch.key] = batch.end

    def _pause_logs(self) -> None:
        """The sink is congested: read for the metrics only until it delivered what it holds."""
        self.logs_paused = True
        self._paused_since = time.time()
        why = self.sink.state()["last_error"] or "delivery is failing"
        self._report(
            f"logs paused ({why}): lines are read for metrics only; the logs stay in the files "
            "and are read again from the last delivered event once the intake takes them"
        )

    def _resume_logs_when_delivered(self) -> None:
        """Once the sink delivered everything it held, store the checkpoints, make the
        follower again from them and read the logs again from there."""
        state = self.sink.state()
        if state["pending"] or state["failing_since"] is not None or self._refollow is None:
            return
        self._checkpointing.wait()
        self._checkpoint(here=True)
        try:
            follower = self._refollow()
        except CorruptCheckpoints as error:  # the logs stay paused: tried again next time
            said = f"logs stay paused: cannot read the checkpoints again: {error}"
            if said != self._resume_failure:
                self._resume_failure = said
                self._report(said)
            return
        behind = sum(max(0, file.size - file.acknowledged) for file in self.follower.files())
        self.follower.close()  # what it read since the pause is read again by the new one
        self.follower = follower
        self.logs_paused = False
        self._paused_since = None
        if self._skips is not None:
            self._skips = Skips()
        self._report(
            f"logs intake {self.sink.state()['target']} takes logs again: reading the logs "
            f"again from the last delivered event (about {behind:,} bytes)"
        )

    def _kept_count(self, pairs: Iterator[tuple[Event, int]]) -> Iterator[tuple[Event, int]]:
        """Each pair, counted in ``_kept``."""
        self._kept = 0
        for pair in pairs:
            self._kept += 1
            yield pair

    def _ruled(self, batch: Batch, skips: Skips) -> None:
        """After a batch the rules ran on: one they dropped whole sent nothing, so no sink
        token covers it; its end is acknowledged once what was sent before it is."""
        if self._kept:
            skips.sent(batch.key, batch.end)
        else:
            self._acknowledge(skips.skipped(batch.key, batch.end))

    def _parse_failed(self, path: str, count: int, last: tuple[str, str] | None) -> None:
        """Count lines that did not parse; say so for a file at its 1st, 10th, 100th...,
        with the last reason and line."""
        before = self._parse_errors.get(path, 0)
        self._parse_errors[path] = total = before + count
        self.parse_errors += count
        if last is not None and len(str(total)) > len(str(before)):
            reason, line = last
            self._report(
                f"{path}: {total} line{'s' if total > 1 else ''} did not parse so far (they "
                f"are sent with logpipe.parse_error); the last: {reason}: {line[:200]!r}"
            )

    def _observed(
        self, pairs: Iterator[tuple[Event, int]], floor: int
    ) -> Iterator[tuple[Event, int]]:
        """Each pair, its event shown to the observers first unless it ends at or before
        ``floor`` (counted before the logs were read again)."""
        observers = self._observers
        for pair in pairs:
            if pair[1] > floor:
                for observe in observers:
                    observe(pair[0])
            yield pair

    def status(self, rate: float) -> str:
        """One line: throughput, delivery (accepted, refused for good, not yet either), backlog,
        unreadable files, the sink's other counters."""
        stats = dict(self.sink.stats())
        refused, pending = stats.pop("refused", 0), stats.pop("pending", 0)
        extra = " ".join(f"{key}={value}" for key, value in stats.items())
        return (
            f"status: lines/s={rate:.0f} read={self.lines} delivered={self.sink.delivered} "
            f"refused={refused} pending={pending} "
            f"behind_bytes={self.follower.behind()} unreadable={self.follower.problems} "
            f"parse_errors={self.parse_errors}{self._rule_counts()} {extra}"
        ).rstrip()

    def _rule_counts(self) -> str:
        """`` excluded=N masked=N`` when there are processing rules."""
        if self.rules is None:
            return ""
        counts = self.rules.counts
        return f" excluded={counts.excluded} masked={counts.masked}"

    def _acknowledge(self, tokens: list[Token]) -> None:
        """Tokens come in file order: the last one of each file covers the others."""
        if self._skips is not None and tokens:
            tokens = [*tokens, *self._skips.acked(tokens)]
        for key, end in dict(tokens).items():
            self.follower.ack(key, end)

    def _checkpoint(self, *, here: bool = False) -> None:
        """Store the checkpoints, after making what they cover durable (when anything new was
        delivered: an idle follower syncs nothing); ``here``: on this thread."""
        sync = None
        if self.sink.delivered != self._durable:
            sync = self.sink.sync_job()
            self._durable = self.sink.delivered
        store = _both(self.follower.checkpoint_job(), self._counted_job())
        if store is None:
            self._checkpoint_at = time.time()  # what is stored is current
        else:
            store = _both(store, self._stored_now)
        if here:
            _sync_then_store(sync, store)
        elif sync is not None or store is not None:
            self._checkpointing.run(sync, store)
        if self._telemetry is not None:
            self._telemetry(self)

    def _counted_job(self) -> Callable[[], None] | None:
        """A job storing the counted positions that are past the files' delivered ones (the
        others tell nothing a checkpoint does not), or None when they did not change."""
        if self._counted_store is None:
            return None
        acknowledged = self.follower.acknowledged
        self._counted = {key: end for key, end in self._counted.items() if end > acknowledged(key)}
        entries = [Checkpoint(key, "", end, 0) for key, end in self._counted.items()]
        if entries == self._counted_saved:
            return None
        return partial(self._save_counted, self._counted_store, entries)

    def _save_counted(self, store: CheckpointStore, entries: list[Checkpoint]) -> None:
        store.save(entries)
        self._counted_saved = entries  # only once stored: a failed save is tried again

    def _stored_now(self) -> None:
        self._checkpoint_at = time.time()

    def _publish(self) -> None:
        """Replace ``latest`` with a new snapshot (read by other threads, never changed)."""
        if not self._outage.active:
            self._outage_since = None
        elif self._outage_since is None:
            self._outage_since = time.time()
        self.latest = Snapshot(
            version=VERSION,
            started_at=self._started_at,
            taken_at=time.time(),
            lines_read=self.lines,
            parse_errors=self.parse_errors,
            logs_paused=self.logs_paused,
            logs_paused_since=self._paused_since,
            write_outage=self._outage.cause or None,
            write_outage_since=self._outage_since,
            checkpoint_at=self._checkpoint_at,
            unreadable=self.follower.problems,
            files=[
                FileState(
                    path=file.path,
                    kind=file.kind,
                    identity=file.key,
                    offset=file.offset,
                    acknowledged=file.acknowledged,
                    size=file.size,
                    behind=max(0, file.size - file.offset),
                    format=self._format_of(file.kind, file.path),
                    rotated=file.rotated,
                )
                for file in self.follower.files()
            ],
            sink=self.sink.state(),
        )

    def _format_of(self, kind: str, path: str) -> str | None:
        """The access format or error layout ``path`` is read in, once known."""
        if kind == "access":
            formats = self._access.chosen(path)
            if formats == DEFAULT_FORMATS:
                return "gunicorn default"
            return formats[0] if formats else None
        layout = self._errors.chosen(path)
        return layout.name if layout else None


def _past(batch: Batch, floor: int) -> int:
    """The lines or records of ``batch`` that end past ``floor``: all of them, but in the
    batch that reads across it again after a logs pause."""
    if batch.lines is None:
        return sum(1 for record in batch.records if record.end > floor)
    if batch.lines.offset >= floor:
        return len(batch)
    return sum(1 for line in batch.lines if line.end > floor)


class Checkpointing:
    """Runs each checkpoint's jobs (sync the output, then store the offsets) on a thread of its
    own, one checkpoint at a time; a failure is raised on the follow loop's thread, at its next
    ``idle()``. After ``finish()``, checkpoints run on the caller's thread."""

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix="logpipe-checkpoint"
        )
        self._running: Future[None] | None = None

    def idle(self) -> bool:
        """Whether the last checkpoint is done (raising its error, if it failed)."""
        if self._running is None:
            return True
        if not self._running.done():
            return False
        running, self._running = self._running, None
        running.result()
        return True

    def run(self, sync: Callable[[], None] | None, store: Callable[[], None] | None) -> None:
        if self._thread is None:
            _sync_then_store(sync, store)
        else:
            self._running = self._thread.submit(_sync_then_store, sync, store)

    def wait(self) -> None:
        """Wait for the checkpoint under way (raising its error, if it failed)."""
        if self._running is not None:
            running, self._running = self._running, None
            running.result()

    def finish(self) -> None:
        """Wait for the checkpoint under way; later ones run on the caller's thread."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        self.wait()


def _both(
    first: Callable[[], None] | None, second: Callable[[], None] | None
) -> Callable[[], None] | None:
    """One job running ``first`` then ``second`` (either may be None)."""
    if first is None or second is None:
        return first or second
    return partial(_sync_then_store, first, second)


def _sync_then_store(sync: Callable[[], None] | None, store: Callable[[], None] | None) -> None:
    if sync is not None:
        sync()
    if store is not None:
        store()

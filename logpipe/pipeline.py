"""Follow mode: items from the follower become events, go to the sink, and acks come back.

One thread, one direction: ``Follower.poll`` -> parse -> ``ddsource/service/hostname/ddtags``
-> sink; once the sink has the events, their offsets are acknowledged, and about once a second
(after the sink made them durable) the checkpoints are stored. While the sink writes, nothing is
read: a slow sink slows reading, and the files on disk are the buffer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from logpipe.enrich import Event
from logpipe.file_events import stamp
from logpipe.ndjson import NdjsonWriter
from logpipe.parsing.access import AccessParser
from logpipe.parsing.error import ErrorParser
from logpipe.sources.follow import Follower, Item
from logpipe.sources.wake import Waker

CHECKPOINT_INTERVAL = 1.0
POLL_INTERVAL = 0.25


class NdjsonSink:
    """NDJSON to a stream (stdout) or a file; ``flush(durable=True)`` also fsyncs a file."""

    def __init__(self, stream: BinaryIO, *, fsync: bool) -> None:
        self._writer = NdjsonWriter(stream)
        self._stream = stream
        self._fsync = fsync

    def write(self, events: Iterable[Event], extra: dict[str, Any]) -> None:
        self._writer.write_all(events, extra=extra)
        self._writer.flush()

    def flush(self, *, durable: bool) -> None:
        self._writer.flush()
        if durable and self._fsync:
            os.fsync(self._stream.fileno())

    @property
    def events(self) -> int:
        return self._writer.events


class FollowPipeline:
    """Run the follow loop until ``stop`` is set, then drain and store the last checkpoint."""

    def __init__(
        self,
        follower: Follower,
        sink: NdjsonSink,
        *,
        access: AccessParser,
        errors: ErrorParser,
        attributes: dict[str, Any],
        waker: Waker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.follower = follower
        self.sink = sink
        self._parse = {"access": access.parse, "error": errors.parse}
        self._attributes = attributes
        self._waker = waker
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        next_checkpoint = self._clock() + CHECKPOINT_INTERVAL
        while not stop.is_set():
            items = self.follower.poll()
            self._deliver(items)
            if self._clock() >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = self._clock() + CHECKPOINT_INTERVAL
            if not items:
                if self._waker is not None:
                    self._waker.wait(POLL_INTERVAL)
                else:
                    stop.wait(POLL_INTERVAL)
        self._deliver([*self.follower.poll(), *self.follower.close()])
        self._checkpoint()

    def _deliver(self, items: list[Item]) -> None:
        if not items:
            return
        self.sink.write(
            (
                stamp(
                    self._parse[item.kind](item.data, truncated=item.truncated),
                    item.path,
                    item.offset,
                )
                for item in items
            ),
            self._attributes,
        )
        for item in items:
            self.follower.ack(item.key, item.end)

    def _checkpoint(self) -> None:
        self.sink.flush(durable=True)
        self.follower.checkpoint()

"""A ``datadog`` DogStatsd client that never waits on DNS and sends from its own thread.

The stock client resolves its host in ``get_socket``, again after each failed send, while it
holds its socket lock, and its flushes hold the datagram buffer's lock meanwhile: with a name
that gets no answer, every flush took ~40 s, on whichever thread flushed, and the event path
waited on the buffer's lock. Here:

- ``get_socket`` connects to the address a ``DogStatsdAddress`` found on its own thread (an IP
  literal, which ``getaddrinfo`` answers at once), and raises EAGAIN while there is none, which
  the client takes as "drop this datagram" without a word and without closing anything;
- counts, gauges, distributions and timers are all aggregated (``SAMPLES_PER_CONTEXT`` values
  of a distribution per flush, then sampled at a rate that keeps its statistics), so counting
  never touches the buffer or a socket;
- flushes run on this client's thread, every ``FLUSH_SECONDS`` or when ``flush_soon`` wakes it,
  and only once ``sendable``: until a first address, metrics stay counted.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

from datadog.dogstatsd.base import DogStatsd

from logpipe.metrics.address import PATIENCE_SECONDS, DogStatsdAddress

FLUSH_SECONDS = 0.3  # how often the client's thread sends (datadog's default)
SAMPLES_PER_CONTEXT = 10_000  # distribution/timer values kept per flush, per name and tags


class ResolvedDogStatsd(DogStatsd):
    """DogStatsd sending to ``address`` (see the module doc). ``owns_address``: ``close``
    stops its lookups too. Without ``flush_thread``, only ``flush_soon`` (then on the caller's
    thread) and ``close`` send."""

    def __init__(
        self,
        address: DogStatsdAddress,
        *,
        flush_thread: bool,
        owns_address: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            host=address.current or address.host,
            port=address.port,
            disable_aggregation=False,
            disable_buffering=False,
            flush_interval=0,  # no thread of the client's own: ours below
            max_metric_samples_per_context=SAMPLES_PER_CONTEXT,
            **options,
        )
        self.address = address
        self._owns_address = owns_address
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_thread:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="dogstatsd-flush", daemon=True
            )
            self._flusher.start()

    def get_socket(self, telemetry: bool = False) -> socket.socket:
        """The socket to the current address; EAGAIN (datagram dropped) while there is none."""
        with self._socket_lock:
            current = self.address.current
            if current is None:
                raise BlockingIOError(errno.EAGAIN, f"no address for {self.address.host} yet")
            if current != self.host:
                self.close_socket()
                self.host = current
            sock: socket.socket = super().get_socket(telemetry)
            return sock

    def flush_soon(self) -> None:
        """Have the aggregated and buffered metrics sent: wake the client's thread (never
        waits), or send them now on this thread when it has none."""
        if self._flusher is not None:
            self._wake.set()
        else:
            self._send_now()

    def close(self, *, patience: float = PATIENCE_SECONDS) -> None:
        """Send what is left (waiting up to ``patience`` for a first lookup that has not
        answered yet), stop the client's thread and close its socket."""
        self._closing.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()
        self.address.answered.wait(patience)
        self.disable_aggregation()
        self.disable_buffering = True
        if self.address.sendable():
            self.flush_aggregated_metrics()  # now straight to the socket
            self.flush()  # what was still in the datagram buffer
        else:
            self.address.unsent()
        self.close_socket()
        if self._owns_address:
            self.address.stop()

    def _flush_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            if not self._closing.is_set():
                self._send_now()

    def _send_now(self) -> None:
        if self.address.sendable():
            self.flush_aggregated_metrics()
            self.flush_buffered_metrics()

"""Where replay work runs: in this process, in worker processes, or on a Dask cluster.

An ``Engine`` is a ``concurrent.futures.Executor`` and what its workers can do (read plain
files, append to the output file in turn: ``logpipe.sinks.parallel_append``); ``in_order``
keeps a bounded window of work in flight on it and hands the results back in the order the work
was given, so each file's events leave in file order however the work was spread.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from logpipe.problems import SetupError
from logpipe.sinks import parallel_append
from logpipe.sinks.parallel_append import OutputFile, OutputTurns

Tag = TypeVar("Tag")
Work = TypeVar("Work")
Result = TypeVar("Result")


class InlineExecutor(Executor):
    """Runs each piece of work at once, in the calling thread (``--jobs 1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Engine:
    """Where replay work runs: ``executor``, with ``window`` pieces of work in flight at most;
    ``turns``: its workers append to the NDJSON output file themselves when their turn has come
    (``parallel_append.OutputTurns``); ``reads_files``: they read plain local files themselves."""

    executor: Executor
    window: int
    turns: OutputTurns | None = None
    reads_files: bool = True  # its workers see this machine's files (plain ones are read there)


INLINE = Engine(InlineExecutor(), 1)  # in the calling thread


@contextmanager
def open_engine(
    engine: str, *, jobs: int, scheduler: str | None, output_path: str | None = None
) -> Iterator[Engine]:
    """The engine ``--engine``/``--jobs`` name. Local worker processes append the events to
    ``output_path`` themselves when they can (a sink's ``parallel_append_path``), so that most
    events never travel back to this process."""
    if engine == "dask":
        with _dask(scheduler) as cluster:
            yield cluster
    elif jobs <= 1:
        yield INLINE
    else:
        # forkserver: workers start clean (no copies of this process's threads or sockets).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["logpipe.backfill.work", "logpipe.backfill.engines"])
        turns: OutputTurns | None = None
        output: OutputFile | None = None
        if output_path is not None:
            turns, output = parallel_append.share(context, output_path)
        # Workers read end-of-file from this pipe once this process is gone, and leave.
        alive_r, alive_w = context.Pipe(duplex=False)
        with (
            alive_w,
            ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_start_worker, initargs=(alive_r, output)
            ) as pool,
        ):
            for _ in range(jobs):  # the pool starts a worker per task given while none is idle:
                pool.submit(int)  # start them all now, to boot while this process gets ready
            yield Engine(pool, 2 * jobs, turns)


def _start_worker(parent: Connection, output: OutputFile | None) -> None:
    """Process-pool initializer. The main process decides when work stops (it finishes what is
    in flight, then ends the pool), so SIGINT and SIGTERM, which a terminal or systemd send to
    the whole group, are ignored here; and a worker leaves by itself once the main process is
    gone (``parent``, the read end of a pipe only it writes to, then reads end-of-file), so a
    killed replay leaves no workers behind. With ``output``, this worker appends its chunks'
    events to that file in turn."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_leave_with, args=(parent,), name="watch-parent", daemon=True).start()
    if output is not None:
        parallel_append.open_in_worker(output)


def _leave_with(parent: Connection) -> None:
    with suppress(EOFError, OSError):
        parent.recv_bytes()
    os._exit(1)


@contextmanager
def _dask(scheduler: str | None) -> Iterator[Engine]:
    try:
        from distributed import Client
    except ImportError:
        raise SetupError("the dask engine needs `pip install 'logpipe[dask]'`") from None
    if not scheduler:
        raise SetupError("the dask engine needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    client: Any = Client(scheduler, set_as_default=False, timeout=30)  # type: ignore[no-untyped-call]
    with client:
        workers = sum(client.nthreads().values()) or 1
        yield Engine(client.get_executor(pure=False), 2 * workers, reads_files=False)


def in_order(
    executor: Executor,
    function: Callable[[Work], Result],
    work: Iterable[tuple[Tag, Work | None]],
    *,
    window: int,
) -> Iterator[tuple[Tag, Result | None]]:
    """``(tag, function(item))`` for each ``(tag, item)`` of ``work``, in order, with at most
    ``window`` items in flight; an item of None passes through as ``(tag, None)``."""
    flight: deque[tuple[Tag, Future[Result] | None]] = deque()
    for tag, item in work:
        flight.append((tag, None if item is None else executor.submit(function, item)))
        while len(flight) > window or (flight and flight[0][1] is None):
            done, future = flight.popleft()
            yield done, None if future is None else future.result()
    while flight:
        done, future = flight.popleft()
        yield done, None if future is None else future.result()

"""Where replay work runs: in this process, in worker processes, or on a Dask cluster.

Each engine is a ``concurrent.futures.Executor``; ``in_order`` keeps a bounded window of work in
flight on it and hands the results back in the order the work was given, so each file's events
leave in file order however the work was spread.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

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


@contextmanager
def open_engine(engine: str, *, jobs: int, scheduler: str | None) -> Iterator[tuple[Executor, int]]:
    """(executor, how many pieces of work to keep in flight) for ``--engine``/``--jobs``."""
    if engine == "dask":
        with _dask(scheduler) as pool:
            yield pool
    elif jobs <= 1:
        yield InlineExecutor(), 1
    else:
        # forkserver: workers start clean (no copies of this process's threads or sockets).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["logpipe.replay_work"])
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            yield pool, 2 * jobs


@contextmanager
def _dask(scheduler: str | None) -> Iterator[tuple[Executor, int]]:
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("the dask engine needs `pip install 'logpipe[dask]'`") from None
    if not scheduler:
        raise ValueError("the dask engine needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    client: Any = Client(scheduler, set_as_default=False, timeout=30)  # type: ignore[no-untyped-call]
    with client:
        workers = sum(client.nthreads().values()) or 1
        yield client.get_executor(pure=False), 2 * workers


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

"""The process check of Datadog's gunicorn integration: ``gunicorn.workers`` and
``gunicorn.is_running``.

As in the integration, a gunicorn master is a process whose title (``cmdline[0]``) is
``gunicorn: master [<proc_name>]``, which gunicorn sets only when ``setproctitle`` is importable in
its environment. The master's children are its workers; a worker whose CPU time (the sum of
``psutil``'s ``cpu_times``) changed over 0.1 s is ``working``, otherwise ``idle``. Sent through
DogStatsD, with the names, tags and messages the integration uses::

    gunicorn.workers:<n>|g|#app:<proc_name>,state:working,<constant tags>
    gunicorn.workers:<n>|g|#app:<proc_name>,state:idle,<constant tags>
    _sc|gunicorn.is_running|0|#app:<proc_name>,<constant tags>
    _sc|gunicorn.is_running|2|#app:<proc_name>,...|m:0 working and 0 idle workers for <proc_name>
    _sc|gunicorn.is_running|2|#app:<proc_name>,...|m:No gunicorn process with name <proc_name>
        found, skipping worker metrics                      (no gauges then)

As the integration's: no ``service`` tag unless one is configured (:func:`check_tags`), the
tags of the process name's instance (``--proc-tags NAME:TAG,...``, :func:`proc_tags`), and
with a hostname given, ``h:<hostname>`` on the service check and ``host:<hostname>`` on the
gauges (DogStatsD's way to set a metric's host).

When no master is found, :attr:`ProcessStatus.why` says why in one line: no process has that
title (naming the masters that do run), its workers run on without it (the master exited), or
gunicorn runs without a title (``setproctitle`` missing in its environment, as the
integration's docs warn).

:class:`ProcessMonitor` runs the check every ``interval`` seconds on its own thread for follow
mode; :func:`check` runs it once (``logpipe check``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # the client is made where metrics are on; importing datadog costs 20 MB
    from datadog.dogstatsd.base import DogStatsd

WORKERS_METRIC = "gunicorn.workers"
SERVICE_CHECK = "gunicorn.is_running"
OK = 0  # DogStatsD service check statuses
CRITICAL = 2
STATUS_NAMES = {OK: "OK", CRITICAL: "CRITICAL"}
CPU_SLEEP_S = 0.1  # the integration's CPU_SLEEP_SECS
MASTER_TITLE = "gunicorn: master [{}]"
WORKER_TITLE = "gunicorn: worker [{}]"

# What the integration sends when no master is found, and when a master has no workers.
NO_MASTER_MESSAGE = "No gunicorn process with name {} found, skipping worker metrics"
NO_WORKERS_MESSAGE = "{working} working and {idle} idle workers for {name}"


@dataclass(frozen=True)
class ProcessStatus:
    """The check's result for one ``proc_name``.

    ``masters``: pids of the processes titled ``gunicorn: master [<proc_name>]`` (several
    masters with one name are counted together, as in the integration); ``working`` and
    ``idle``: their children by CPU use; ``why``: for a CRITICAL status, the reason in one line;
    ``untitled``: no master, but a gunicorn that could be it runs without a title.
    """

    proc_name: str
    masters: tuple[int, ...] = ()
    working: int = 0
    idle: int = 0
    why: str = ""
    untitled: bool = False

    @property
    def title(self) -> str:
        return MASTER_TITLE.format(self.proc_name)

    @property
    def status(self) -> int:
        """``OK`` (0), or ``CRITICAL`` (2) with no master or no workers."""
        return OK if self.masters and self.working + self.idle else CRITICAL

    @property
    def state(self) -> str:
        """``running``, ``no workers``, ``no master`` or ``no title`` (setproctitle missing):
        what changes between two checks that is worth a line on stderr."""
        if self.masters:
            return "running" if self.status == OK else "no workers"
        return "no title" if self.untitled else "no master"

    @property
    def message(self) -> str | None:
        """The service check's message, as the integration words it (None when OK)."""
        if not self.masters:
            return NO_MASTER_MESSAGE.format(self.proc_name)
        if self.status == OK:
            return None
        return NO_WORKERS_MESSAGE.format(working=0, idle=0, name=self.proc_name)

    @property
    def tags(self) -> list[str]:
        return [f"app:{self.proc_name}"]

    def describe(self) -> str:
        """One line for people: ``gunicorn [web]: OK: 1 working, 1 idle (master pid 42)``."""
        if self.status == OK:
            pids = ", ".join(map(str, self.masters))
            master = "masters" if len(self.masters) > 1 else "master"
            detail = f"{self.working} working, {self.idle} idle ({master} pid {pids})"
        else:
            detail = self.why
        return f"gunicorn [{self.proc_name}]: {STATUS_NAMES[self.status]}: {detail}"


@dataclass
class _Untitled:
    """A gunicorn master running without a title: its pid and its ``--name``, if given."""

    pid: int
    name: str | None


@dataclass
class _Scan:
    """One pass over the process table."""

    masters: dict[str, list[psutil.Process]]  # name in the title -> titled masters
    workers: dict[str, list[int]]  # name in the title -> pids of titled workers
    untitled: list[_Untitled]


def check(
    names: Sequence[str], *, pause: Callable[[float], object] = time.sleep
) -> list[ProcessStatus]:
    """Check every name in ``names`` once: one pass over the processes, one CPU-time sample
    ``CPU_SLEEP_S`` apart for all the workers (``pause`` waits it out; follow mode passes its
    stop event's ``wait`` so that a shutdown is not held up)."""
    scan = _scan()
    workers: dict[str, list[psutil.Process]] = {}
    found: dict[str, tuple[int, ...]] = {}
    for name in names:
        masters, children = [], []
        for master in scan.masters.get(name, []):
            try:
                children.extend(master.children())
            except psutil.Error:  # exited since the scan
                continue
            masters.append(master.pid)
        found[name], workers[name] = tuple(masters), children
    before = _cpu_times(worker for children in workers.values() for worker in children)
    if before:
        pause(CPU_SLEEP_S)
    after = _cpu_times(worker for children in workers.values() for worker in children)
    results = []
    for name in names:
        if not found[name]:
            untitled, why = _why_missing(name, scan)
            results.append(ProcessStatus(name, why=why, untitled=untitled))
            continue
        sampled = [w.pid for w in workers[name] if w.pid in before and w.pid in after]
        working = sum(1 for pid in sampled if after[pid] != before[pid])
        idle = len(sampled) - working
        title = MASTER_TITLE.format(name)
        why = "" if sampled else f"'{title}' (pid {found[name][0]}) has no workers"
        results.append(ProcessStatus(name, found[name], working, idle, why))
    return results


def send(
    status: ProcessStatus,
    statsd: DogStatsd,
    *,
    tags: Sequence[str] = (),
    hostname: str | None = None,
) -> None:
    """Send ``status`` as the integration does: the service check, then (when a master was
    found) the two gauges, with ``tags`` (its name's ``--proc-tags``) and the ``hostname``, if
    any, on each. ``statsd`` must have no namespace: these names are fixed."""
    if statsd.namespace:
        raise ValueError(f"{WORKERS_METRIC} must be sent without a namespace")
    common = [*status.tags, *tags]
    statsd.service_check(
        SERVICE_CHECK, status.status, tags=common, hostname=hostname, message=status.message
    )
    if status.masters:
        if hostname:
            common.append(f"host:{hostname}")
        statsd.gauge(WORKERS_METRIC, status.working, [*common, "state:working"])
        statsd.gauge(WORKERS_METRIC, status.idle, [*common, "state:idle"])


def check_tags(
    service: str | None, tags: Sequence[str], environ: Mapping[str, str] = os.environ
) -> list[str]:
    """The constant tags of the check's metrics: ``service:`` only when one is given (the
    option, else ``DD_SERVICE``; the integration sends none otherwise), then ``tags`` (env and
    the user's)."""
    service = service or environ.get("DD_SERVICE") or None
    return [f"service:{service}", *tags] if service else list(tags)


def proc_tags(values: Iterable[str], names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``--proc-tags NAME:TAG,TAG...`` (repeatable; a name's tags add up) to name -> tags.

    ValueError for a name that no ``--proc-name`` gives or a value without tags."""
    found: dict[str, list[str]] = {}
    for value in values:
        name, _, text = value.partition(":")
        tags = [tag for tag in text.replace(",", " ").split() if tag]
        if not name or not tags:
            raise ValueError(f"--proc-tags {value!r}: not NAME:TAG,... (e.g. web:team:shop)")
        if name not in names:
            raise ValueError(f"--proc-tags {value!r}: {name!r} is not a --proc-name")
        mine = found.setdefault(name, [])
        mine.extend(tag for tag in dict.fromkeys(tags) if tag not in mine)
    return {name: tuple(tags) for name, tags in found.items()}


_VERSION = re.compile(r"\(version ([^)\s]+)\)")


def gunicorn_version(binary: str = "gunicorn", *, timeout: float = 10.0) -> tuple[str, str]:
    """``(version, path)`` from ``<binary> --version`` (``gunicorn (version 23.0.0)``);
    ``binary`` is a path or a name looked up on ``PATH``. ValueError, in one line, when it
    cannot be run or says no version."""
    path = shutil.which(binary)
    if path is None:
        where = "on PATH" if os.sep not in binary else "executable"
        raise ValueError(f"no {binary!r} {where} (--gunicorn PATH chooses the binary)")
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(f"{path} --version: {error}") from None
    found = _VERSION.search(done.stdout + done.stderr)
    if found is None:
        said = (done.stdout + done.stderr).strip().splitlines()[:1] or ["nothing"]
        raise ValueError(f"{path} --version said {said[0]!r}, not gunicorn's version")
    return found[1], path


def valid_names(names: Iterable[str]) -> list[str]:
    """The ``--proc-name`` values, each once; ValueError for one that no title can match."""
    unique = list(dict.fromkeys(names))
    for name in unique:
        if not name.strip() or "]" in name or "\n" in name:
            raise ValueError(f"--proc-name {name!r}: not a gunicorn proc_name")
    return unique


class ProcessMonitor:
    """Follow mode's process check: every ``interval`` seconds on a daemon thread of its own.

    A thread rather than the follow pipeline's tick: a check scans the whole process table and
    waits 0.1 s between two CPU-time samples, which would stall reading and delivery in the
    pipeline's loop; here it costs the log loop nothing. Results go to ``statsd`` (None: not
    sent) and, once per change of state for each name, a line to ``report`` (problems always;
    the OK ones unless ``quiet``). :meth:`stop` ends the thread promptly, mid-check too.
    """

    def __init__(
        self,
        names: Sequence[str],
        interval: float,
        *,
        statsd: DogStatsd | None,
        report: Callable[[str], None],
        quiet: bool = False,
        tags: Mapping[str, Sequence[str]] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.names = list(names)
        self.tags = dict(tags or {})
        self.hostname = hostname
        self.interval = interval
        self.statsd = statsd
        self.report = report
        self.quiet = quiet
        self.checks = 0
        self._states: dict[str, str] = {}
        self._failure = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-check", daemon=True)

    def start(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (waits for it up to ``timeout``; idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._once()
            due = max(due + self.interval, time.monotonic())
            if self._stop.wait(due - time.monotonic()):
                return

    def _once(self) -> None:
        try:
            results = check(self.names, pause=self._stop.wait)
        except Exception as error:  # a surprise from the process table must not end the loop
            text = f"process check failed: {error!r}"
            if text != self._failure:
                self._failure = text
                self.report(text)
            return
        self._failure = ""
        if self._stop.is_set():
            return  # interrupted mid-sample: the counts are not to be trusted
        self.checks += 1
        for result in results:
            if self.statsd is not None:
                send(
                    result,
                    self.statsd,
                    tags=self.tags.get(result.proc_name, ()),
                    hostname=self.hostname,
                )
            if self._states.get(result.proc_name) != result.state:
                self._states[result.proc_name] = result.state
                if result.status != OK or not self.quiet:
                    self.report(result.describe())


def _scan() -> _Scan:
    """Titled masters by name, and untitled gunicorn masters (gunicorn without setproctitle)."""
    masters: dict[str, list[psutil.Process]] = {}
    workers: dict[str, list[int]] = {}
    gunicorns: dict[int, tuple[int, list[str]]] = {}  # pid -> (ppid, cmdline), untitled
    me = os.getpid()
    for process in psutil.process_iter(["ppid", "cmdline"]):
        cmdline = process.info.get("cmdline")
        if not cmdline or process.pid == me:
            continue
        if (name := _title_name(cmdline[0], MASTER_TITLE)) is not None:
            masters.setdefault(name, []).append(process)
        elif (name := _title_name(cmdline[0], WORKER_TITLE)) is not None:
            workers.setdefault(name, []).append(process.pid)
        elif _runs_gunicorn(cmdline):
            gunicorns[process.pid] = (process.info.get("ppid") or 0, cmdline)
    untitled = [  # the untitled workers are the untitled masters' children: left out
        _Untitled(pid, _name_option(cmdline))
        for pid, (ppid, cmdline) in sorted(gunicorns.items())
        if ppid not in gunicorns
    ]
    return _Scan(masters, workers, untitled)


def _title_name(title: str, pattern: str) -> str | None:
    """``web`` for ``gunicorn: master [web]`` and the pattern ``gunicorn: master [{}]``."""
    prefix, suffix = pattern.split("{}")
    if title.startswith(prefix) and title.endswith(suffix):
        return title[len(prefix) : -len(suffix)]
    return None


def _runs_gunicorn(cmdline: Sequence[str]) -> bool:
    """``gunicorn ...``, ``python /venv/bin/gunicorn ...`` or ``python -m gunicorn ...``."""
    return any(os.path.basename(arg) == "gunicorn" for arg in cmdline[:4])


def _name_option(cmdline: Sequence[str]) -> str | None:
    """The value of gunicorn's ``--name``/``-n`` in ``cmdline``, if there."""
    for index, arg in enumerate(cmdline):
        if arg in ("--name", "-n") and index + 1 < len(cmdline):
            return cmdline[index + 1]
        if arg.startswith("--name="):
            return arg.partition("=")[2]
    return None


def _cpu_times(processes: Iterable[psutil.Process]) -> dict[int, float]:
    """pid -> CPU time so far (the sum of ``cpu_times``, as the integration takes it); a
    process that exited is left out."""
    times: dict[int, float] = {}
    for process in processes:
        try:
            times[process.pid] = sum(process.cpu_times())
        except psutil.Error:
            continue
    return times


def _why_missing(name: str, scan: _Scan) -> tuple[bool, str]:
    """Why no master is titled for ``name``, in one line; and whether an untitled gunicorn
    could be it (``--name`` is ``name`` or not on its command line)."""
    title = MASTER_TITLE.format(name)
    orphans = scan.workers.get(name)
    if orphans:
        pids = ", ".join(map(str, sorted(orphans)))
        return False, (
            f"no process is titled '{title}', but its workers still run (pid {pids}): the "
            "master has exited"
        )
    candidates = [process for process in scan.untitled if process.name in (name, None)]
    if candidates:
        process = candidates[0]
        runs = f"gunicorn --name {name}" if process.name == name else "gunicorn"
        cause = (
            "gunicorn sets no process title on macOS"
            if sys.platform == "darwin"
            else "setproctitle is missing in gunicorn's environment (install it there and "
            "restart gunicorn)"
        )
        return True, f"no process is titled '{title}', but pid {process.pid} runs {runs} " + (
            f"without a title: {cause}"
        )
    others = [f"[{other}]" for other in sorted(scan.masters)]
    others += [f"untitled --name {p.name} (pid {p.pid})" for p in scan.untitled]
    if others:
        return False, f"no process is titled '{title}' (gunicorn masters here: {', '.join(others)})"
    return False, f"no process is titled '{title}' (no gunicorn master is running here)"

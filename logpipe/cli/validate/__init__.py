"""``logpipe validate [--config FILE] [follow's options]``: check, before starting, what follow
mode would use: the config file and options, each input and its format, the output (for
Datadog: the key, the intake, through the proxy), DogStatsD and the state dir. One line per
check on stdout (``ok``, ``warn``, ``FAIL``), then a line summing up; exit status 0 when
nothing failed, else 2. Nothing is sent but the key check's request and an empty datagram."""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
from logpipe.checks.gunicorn_processes import proc_tags, valid_names
from logpipe.cli.config import apply_config, config_path
from logpipe.cli.follow import build_parser
from logpipe.cli.options import (
    access_parser,
    error_layout,
    fixed_access_format,
    multiline_pattern,
    processing_rules,
    tags_from,
)
from logpipe.cli.validate.inputs import Parsers, check_input
from logpipe.cli.validate.network import check_dogstatsd, check_output
from logpipe.cli.validate.report import Report, lower_first
from logpipe.parsing.error.layouts import ErrorLayout
from logpipe.problems import SetupError

SETUP_ERROR = 2
T = TypeVar("T")


def build_validate_parser() -> argparse.ArgumentParser:
    """Follow mode's parser, every option accepted, under ``logpipe validate``'s name."""
    parser = build_parser()
    parser.prog = "logpipe validate"
    parser.description = (
        "Check what follow mode would use, without starting it: the config file and options, "
        "each --access/--error input and its format, the output (for Datadog: DD_API_KEY, the "
        "intake, the proxy), DogStatsD and the state dir. Exit status 0 when no check failed, "
        "else 2."
    )
    parser.epilog = None
    return parser


def run_validate(arguments: Sequence[str], out: TextIO | None = None) -> int:
    """Run every check; 0 when none failed, else 2."""
    report = Report(out or sys.stdout)
    parser = build_validate_parser()
    _check_config(parser, arguments, report)
    try:
        args = parser.parse_args(arguments)
    except SetupError as error:
        report.fail("options", str(error))
    else:
        _check_all(args, report)
    return SETUP_ERROR if report.finish() else 0


def _check_config(
    parser: argparse.ArgumentParser, arguments: Sequence[str], report: Report
) -> None:
    path = config_path(arguments)
    if path is None:
        return
    try:
        apply_config(parser, path)
    except SetupError as error:
        report.fail(f"config {path}", str(error).removeprefix(f"--config {path}: "))
        return
    import tomllib

    with open(path, "rb") as file:
        keys = len(tomllib.load(file))
    report.ok(f"config {path}", f"{keys} key{'' if keys == 1 else 's'}")


def _check_all(args: argparse.Namespace, report: Report) -> None:
    parsers = _check_options(args, report)
    if not args.access and not args.error:
        report.fail("inputs", "nothing to follow: give --access PATH and/or --error PATH")
    for path in args.access:
        check_input(report, path, "access", args, parsers)
    for path in args.error:
        check_input(report, path, "error", args, parsers)
    check_output(report, args)
    check_dogstatsd(report, args.dogstatsd)
    _check_state_dir(report, Path(args.state_dir))


def _check_options(args: argparse.Namespace, report: Report) -> Parsers:
    """What follow mode checks before it starts, each failure a line; what the inputs are
    to be tried with."""
    failures: list[str] = []

    def attempt(check: Callable[[], T]) -> T | None:
        try:
            return check()
        except (SetupError, ValueError) as error:
            failures.append(str(error))
            return None

    tags = attempt(lambda: tags_from(args))
    access = attempt(lambda: access_parser(args, tags))
    layout: ErrorLayout | None = None
    layout_usable = True
    try:
        layout = error_layout(args)
    except SetupError as error:
        failures.append(str(error))
        layout_usable = False
    attempt(lambda: multiline_pattern(args.multiline_pattern))
    rules = attempt(lambda: processing_rules(args))
    names = attempt(lambda: valid_names(args.proc_name))
    if names is not None:
        attempt(lambda: proc_tags(args.proc_tags, names))
    if not args.shutdown_timeout > 0:
        failures.append("--shutdown-timeout must be positive")
    if args.proc_name and not args.process_interval > 0:
        failures.append("--process-interval must be positive")
    for failure in failures:
        report.fail("options", failure)
    fixed = fixed_access_format(args)
    if not failures:
        count = len(rules.specs) if rules else 0
        described = [
            f"access format {fixed!r}" if fixed else "access formats detected per file",
            f"error layout {layout.describe() if layout else 'detected per file'}",
            f"{count} processing rule{'' if count == 1 else 's'}",
        ]
        if tags is not None:
            described.append(f"service {tags.service}, host {tags.hostname}")
        report.ok("options", "; ".join(described))
    return Parsers(tags, access if fixed else None, layout, layout_usable)


def _check_state_dir(report: Report, state_dir: Path) -> None:
    """The state dir exists (or can be made), takes a synced file, holds usable checkpoints;
    whether a running logpipe holds it (its lock, tried shared and let go at once)."""
    subject = f"state dir {state_dir}"
    if not state_dir.exists():
        parent = next(p for p in state_dir.parents if p.exists())
        if not parent.is_dir():
            report.fail(subject, f"cannot be created: {parent} is not a directory")
        elif not os.access(parent, os.W_OK | os.X_OK):
            report.fail(subject, f"cannot be created: {parent} is not writable")
        else:
            report.ok(subject, f"does not exist yet; will be created in {parent}")
        return
    if not state_dir.is_dir():
        report.fail(subject, "not a directory")
        return
    problems: list[str] = []
    store = CheckpointStore(state_dir, on_problem=problems.append)
    try:
        store.check_writable()
    except OSError as error:
        report.fail(subject, f"not writable: {lower_first(error.strerror or str(error))}")
        return
    try:
        count = len(store.load())
    except (CorruptCheckpoints, OSError) as error:
        report.fail(subject, f"writable, but {error}")
        return
    held = " (in use by a running logpipe)" if _locked(state_dir / "lock") else ""
    kept = f"{count} checkpoint{'' if count == 1 else 's'}" if count else "no checkpoints yet"
    if problems:
        report.warn(subject, f"writable, {kept}{held}; {'; '.join(problems)}")
    else:
        report.ok(subject, f"writable, {kept}{held}")


def _locked(lock: Path) -> bool:
    """Whether a process holds ``lock`` (follow mode's exclusive flock)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no logpipe ever ran here (or it cannot be read)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # lets go of the shared lock, if it was taken
    return False

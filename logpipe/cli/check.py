"""``logpipe check``: Datadog's gunicorn process check, once."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from logpipe.checks.gunicorn_processes import (
    OK,
    check,
    check_tags,
    gunicorn_version,
    proc_tags,
    send,
    valid_names,
)
from logpipe.cli.options import ArgumentParser, add_tag_options, tags_from
from logpipe.cli.runtime import warn
from logpipe.metrics.client import dogstatsd, shutdown
from logpipe.problems import SetupError


def build_check_parser() -> argparse.ArgumentParser:
    """``logpipe check``'s options."""
    parser = ArgumentParser(
        prog="logpipe check",
        description="Datadog's gunicorn process check, once: print gunicorn's version, then "
        "each master's idle and working workers; exit 0 when all are OK, 2 when any is "
        "CRITICAL (no master, or no workers).",
    )
    parser.add_argument(
        "--proc-name",
        action="append",
        required=True,
        metavar="NAME",
        help="gunicorn's proc_name (--name) (repeatable)",
    )
    add_proc_tags_option(parser)
    parser.add_argument(
        "--gunicorn",
        metavar="PATH",
        help="the gunicorn whose version to print (default: gunicorn on PATH)",
    )
    parser.add_argument(
        "--dogstatsd",
        metavar="HOST:PORT|off",
        default="off",
        help="also send gunicorn.workers and gunicorn.is_running there (default: %(default)s)",
    )
    add_tag_options(parser)
    return parser


def add_proc_tags_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--proc-tags NAME:TAG,...``: the tags of one --proc-name's metrics and service check."""
    parser.add_argument(
        "--proc-tags",
        action="append",
        default=[],
        metavar="NAME:TAG,...",
        help="tags for one --proc-name's gunicorn.workers and gunicorn.is_running, as the "
        "integration's instance tags, e.g. web:team:shop,tier:front (repeatable)",
    )


def given_hostname(args: argparse.Namespace) -> str | None:
    """``--hostname``, else ``DD_HOSTNAME``: the host the check's metrics name (None: the
    Agent's own)."""
    return args.hostname or os.environ.get("DD_HOSTNAME") or None


def run_check(arguments: Sequence[str]) -> int:
    """``logpipe check``: gunicorn's version, then one process check per --proc-name on stdout;
    0 all OK, 2 any not."""
    args = build_check_parser().parse_args(arguments)
    try:
        names = valid_names(args.proc_name)
        per_name = proc_tags(args.proc_tags, names)
    except ValueError as error:
        raise SetupError(str(error)) from None
    try:
        version, path = gunicorn_version(args.gunicorn or "gunicorn")
    except ValueError as error:
        if args.gunicorn:  # asked for: it must answer
            raise SetupError(f"--gunicorn: {error}") from None
        print(f"gunicorn version: unknown: {error}", flush=True)
    else:
        print(f"gunicorn version: {version} ({path})", flush=True)
    tags = check_tags(args.service, tags_from(args).tags)
    hostname = given_hostname(args)
    try:
        client = dogstatsd(args.dogstatsd, namespace="", tags=tags, flush_thread=False, report=warn)
    except ValueError as error:
        raise SetupError(f"--dogstatsd: {error}") from None
    results = check(names)
    for result in results:
        print(result.describe(), flush=True)
        if client is not None:
            send(result, client, tags=per_name.get(result.proc_name, ()), hostname=hostname)
    if client is not None:
        shutdown(client)
    return 0 if all(result.status == OK for result in results) else 2

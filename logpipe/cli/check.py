"""``logpipe check``: Datadog's gunicorn process check, once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from logpipe.checks.gunicorn_processes import OK, check, send, valid_names
from logpipe.cli.options import ArgumentParser, add_tag_options, tags_from
from logpipe.metrics.client import dogstatsd, shutdown
from logpipe.problems import SetupError


def build_check_parser() -> argparse.ArgumentParser:
    """``logpipe check``'s options."""
    parser = ArgumentParser(
        prog="logpipe check",
        description="Datadog's gunicorn process check, once: print each master's idle and "
        "working workers; exit 0 when all are OK, 2 when any is CRITICAL (no master, or no "
        "workers).",
    )
    parser.add_argument(
        "--proc-name",
        action="append",
        required=True,
        metavar="NAME",
        help="gunicorn's proc_name (--name) (repeatable)",
    )
    parser.add_argument(
        "--dogstatsd",
        metavar="HOST:PORT|off",
        default="off",
        help="also send gunicorn.workers and gunicorn.is_running there (default: %(default)s)",
    )
    add_tag_options(parser)
    return parser


def run_check(arguments: Sequence[str]) -> int:
    """``logpipe check``: one process check per --proc-name on stdout; 0 all OK, 2 any not."""
    args = build_check_parser().parse_args(arguments)
    try:
        names = valid_names(args.proc_name)
    except ValueError as error:
        raise SetupError(str(error)) from None
    service_tags = tags_from(args)
    try:
        client = dogstatsd(
            args.dogstatsd,
            namespace="",
            tags=service_tags.metric_tags,
            flush_thread=False,
        )
    except ValueError as error:
        raise SetupError(f"--dogstatsd: {error}") from None
    results = check(names)
    for result in results:
        print(result.describe(), flush=True)
        if client is not None:
            send(result, client)
    if client is not None:
        shutdown(client)
    return 0 if all(result.status == OK for result in results) else 2

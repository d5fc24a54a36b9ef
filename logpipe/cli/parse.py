"""``logpipe parse``: the events of a whole file, as NDJSON on stdout."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from logpipe.cli.options import (
    ArgumentParser,
    access_parser,
    add_parsing_options,
    add_tag_options,
    multiline_pattern,
    tags_from,
)
from logpipe.cli.runtime import relax_gc
from logpipe.event import Event
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_events, error_events
from logpipe.problems import Failure, SetupError
from logpipe.sinks.append import AppendFile
from logpipe.sinks.ndjson import NdjsonWriter
from logpipe.sources.multiline import Multiline

STDOUT = "<stdout>"  # the name AppendFile gives stdout in its errors


def build_parse_parser() -> argparse.ArgumentParser:
    """``logpipe parse``'s options."""
    parse = ArgumentParser(
        prog="logpipe parse",
        description="Parse a gunicorn access or error log to one NDJSON event per line/record.",
    )
    parse.add_argument(
        "--kind",
        choices=("access", "error"),
        required=True,
        help="access: one event per line; error: one per (multi-line) record",
    )
    add_parsing_options(parse)
    add_tag_options(parse)
    parse.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="log file to read; - or nothing for stdin",
    )
    return parse


def run_parse(arguments: Sequence[str]) -> int:
    """``logpipe parse``: events of a whole file to NDJSON on stdout."""
    args = build_parse_parser().parse_args(arguments)
    path = None if args.file == "-" else args.file
    service_tags = tags_from(args)
    if args.kind == "access":
        access = access_parser(args, service_tags)

        def events(stream: BinaryIO) -> Iterator[Event]:
            return access_events(stream, access, path=path)
    else:
        multiline: Multiline[bytes] = Multiline(
            multiline_pattern(args.multiline_pattern), max_bytes=args.max_line_bytes
        )
        errors = ErrorParser(
            max_record_bytes=args.max_line_bytes, attributes=service_tags.attributes
        )

        def events(stream: BinaryIO) -> Iterator[Event]:
            return error_events(
                stream, errors, multiline, path=path, max_line_bytes=args.max_line_bytes
            )

    relax_gc()
    with _open_input(args.file) as stream:
        # whole events only: stdout redirected to a file that fills up keeps no half event
        writer = NdjsonWriter(AppendFile(sys.stdout.fileno(), STDOUT))
        try:
            writer.write_all(events(stream))
            writer.flush()
        except OSError as error:
            if error.filename != STDOUT or error.errno == errno.EPIPE:
                raise  # a read error, or the reader went away (`| head`)
            raise Failure(f"cannot write output: {error.strerror}") from None
    return 0


@contextmanager
def _open_input(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise SetupError(f"cannot read {name}: {error.strerror}") from None
    with stream:
        yield stream

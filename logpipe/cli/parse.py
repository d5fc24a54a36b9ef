"""``logpipe parse``: the events of a whole file, as NDJSON on stdout."""

from __future__ import annotations

import argparse
import errno
import gzip
import sys
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from logpipe.cli.options import (
    ArgumentParser,
    access_parser,
    add_error_layout_options,
    add_log_format_option,
    add_parsing_options,
    add_rule_options,
    add_tag_options,
    error_layout,
    error_records,
    fixed_access_format,
    multiline_pattern,
    processing_rules,
    tags_from,
)
from logpipe.cli.runtime import relax_gc, set_log_format, warn
from logpipe.event import Event
from logpipe.lines import Prefixed, head_lines
from logpipe.parsing.access.detect import detect, unfit
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout, detect_error_layout
from logpipe.pipeline.batch import access_events, error_events
from logpipe.problems import Failure, SetupError
from logpipe.sinks.append import AppendFile
from logpipe.sinks.ndjson import NdjsonWriter

STDOUT = "<stdout>"  # the name AppendFile gives stdout in its errors
GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 65_536  # what format detection looks at


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
    add_rule_options(parse)
    add_error_layout_options(parse)
    add_tag_options(parse)
    add_log_format_option(parse)
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
    set_log_format(args.log_format)
    path = None if args.file == "-" else args.file
    service_tags = tags_from(args)
    rules = processing_rules(args)
    ruleset = rules.for_input(args.kind, path) if rules is not None else None
    if args.kind == "access":

        def events(stream: BinaryIO) -> Iterator[Event]:
            formats = None
            if fixed_access_format(args) is None:  # auto: from the first lines
                head = stream.read(HEAD_BYTES)
                formats = _detected(head, args.file)
                stream = Prefixed(head, stream)  # type: ignore[assignment]
            access = access_parser(args, service_tags, formats)
            return access_events(stream, access, path=path, rules=ruleset)
    else:
        layout = error_layout(args)
        multiline_pattern(args.multiline_pattern)  # checked before anything is read

        def events(stream: BinaryIO) -> Iterator[Event]:
            chosen = layout
            if chosen is None:  # auto: from the first lines
                head = stream.read(HEAD_BYTES)
                chosen = _detected_error_layout(head)
                stream = Prefixed(head, stream)  # type: ignore[assignment]
            multiline, errors = error_records(args, chosen, service_tags)
            return error_events(
                stream,
                errors,
                multiline,
                path=path,
                max_line_bytes=args.max_line_bytes,
                rules=ruleset,
            )

    relax_gc()
    with open_input(args.file) as stream:
        # whole events only: stdout redirected to a file that fills up keeps no half event
        writer = NdjsonWriter(AppendFile(sys.stdout.fileno(), STDOUT))
        try:
            try:
                writer.write_all(events(stream))
            finally:  # (also what came before a damaged archive's damage)
                writer.flush()
        except OSError as error:
            if error.filename != STDOUT or error.errno == errno.EPIPE:
                raise  # a read error, or the reader went away (`| head`)
            raise Failure(f"cannot write output: {error.strerror}") from None
    return 0


def _detected(head: bytes, name: str) -> tuple[str, ...] | None:
    """The formats detected from the first lines (None: gunicorn's defaults), said once
    unless they are gunicorn's defaults."""
    lines = head_lines(head)
    if not lines:
        return None  # nothing to detect from: gunicorn's default
    detection = detect(lines)
    if detection is None or detection.parsed * 2 < detection.sample:
        warn(f"{name}: {unfit(lines, detection)}")
        return None if detection is None or detection.default else detection.formats
    if detection.default:
        return None  # what a user expects: nothing to say
    warn(f"{name}: access format {detection.describe()}")
    return detection.formats


def _detected_error_layout(head: bytes) -> ErrorLayout:
    """The error-log layout detected from the first lines (gunicorn's default when none
    fits), said once."""
    lines = head_lines(head)
    if not lines:
        return DEFAULT_LAYOUT  # nothing to detect from (and nothing to say)
    detected = detect_error_layout(lines)
    layout = detected or DEFAULT_LAYOUT
    unknown = " (no known layout fits its first lines: give --error-format FMT)"
    warn(f"error log layout: {layout.describe()}{unknown if detected is None else ''}")
    return layout


@contextmanager
def open_input(name: str) -> Iterator[BinaryIO]:
    """The file (or stdin) to read, decompressed when it is gzip (by its magic bytes); a
    damaged archive ends the run with one line (``Failure``), after what came before it."""
    if name == "-":
        stdin = sys.stdin.buffer
        if stdin.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[union-attr]
            yield _Archive(gzip.GzipFile(fileobj=stdin), "stdin")  # type: ignore[misc]
        else:
            yield stdin
        return
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise SetupError(f"cannot read {name}: {error.strerror}") from None
    with stream:
        if stream.read(2) == GZIP_MAGIC:
            stream.seek(0)
            with gzip.GzipFile(fileobj=stream) as archive:
                yield _Archive(archive, name)  # type: ignore[misc]
            return
        stream.seek(0)
        yield stream


class _Archive:
    """A gzip stream whose damage (a bad header, a cut end) is one line for the user."""

    def __init__(self, archive: gzip.GzipFile, name: str) -> None:
        self._archive = archive
        self._name = name

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._archive.read(size)
        except (OSError, EOFError, zlib.error) as error:
            raise Failure(
                f"cannot read {self._name} past its damage ({error or type(error).__name__}); "
                "what came before it was parsed"
            ) from None

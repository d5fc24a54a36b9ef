"""``logpipe detect FILE...``: which format each log file was written with (an access log's
format, or an error log's layout), as logpipe would detect it, with how much of the file's
start it parses and one event it gives."""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence

import orjson

from logpipe.cli.options import ArgumentParser
from logpipe.cli.parse import HEAD_BYTES, open_input
from logpipe.lines import head_lines
from logpipe.parsing.access.detect import Detection, detect
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.layouts import ErrorLayout, detect_error_layout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import error_events
from logpipe.sources.multiline import Multiline


def build_detect_parser() -> argparse.ArgumentParser:
    detect_parser = ArgumentParser(
        prog="logpipe detect",
        description="Say which access log format or error log layout each file holds (detected "
        "from its first lines, as follow, parse and replay do when given no format).",
    )
    detect_parser.add_argument("files", nargs="+", metavar="FILE", help="log files (or .gz)")
    return detect_parser


def run_detect(arguments: Sequence[str]) -> int:
    """Exit status 0 when a format was found for every file, else 1."""
    args = build_detect_parser().parse_args(arguments)
    found_all = True
    for name in args.files:
        with open_input(name) as stream:
            head = stream.read(HEAD_BYTES)
        lines = head_lines(head)
        print(f"{name}:")
        detection = detect(lines)
        if detection is not None and detection.parsed * 2 >= detection.sample:
            _access(detection, lines)
            continue
        layout = detect_error_layout(lines)
        if layout is not None:
            _error(layout, head)
            continue
        found_all = False
        print(f"  no access format or error log layout fits its first {len(lines)} lines")
    return 0 if found_all else 1


def _access(detection: Detection, lines: list[str]) -> None:
    print(f"  access log: {detection.name}")
    print(f"  access_log_format = {detection.formats[0]!r}")
    print(f"  parses {detection.parsed} of its first {detection.sample} lines")
    sample = next(line for line in lines if line.strip())
    event = AccessParser(detection.formats).parse(sample)
    print(f"  first event: {orjson.dumps(event).decode()}")


def _error(layout: ErrorLayout, head: bytes) -> None:
    complete = head[: head.rfind(b"\n") + 1]
    multiline = Multiline[bytes](layout.start_pattern)
    parser = ErrorParser(layout=layout)
    events = list(error_events(io.BytesIO(complete), parser, multiline))
    failed = sum(1 for event in events if "parse_error" in event.get("logpipe", {}))
    print(f"  error log: {layout.describe()}")
    print(f"  {len(events) - failed} of its first {len(events)} records parse")
    if events:
        print(f"  first event: {orjson.dumps(events[0]).decode()}")

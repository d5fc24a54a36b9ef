"""``logpipe detect FILE...``: which format each log file was written with, as logpipe would
detect it, with how many of its first lines that format parses and one event it gives."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import orjson

from logpipe.cli.options import ArgumentParser
from logpipe.cli.parse import HEAD_BYTES, open_input
from logpipe.lines import head_lines
from logpipe.parsing.access.detect import detect
from logpipe.parsing.access.parser import AccessParser


def build_detect_parser() -> argparse.ArgumentParser:
    detect_parser = ArgumentParser(
        prog="logpipe detect",
        description="Say which access log format each file holds (detected from its first "
        "lines, as follow, parse and replay do when no --access-format is given).",
    )
    detect_parser.add_argument("files", nargs="+", metavar="FILE", help="log files (or .gz)")
    return detect_parser


def run_detect(arguments: Sequence[str]) -> int:
    """Exit status 0 when a format was found for every file, else 1."""
    args = build_detect_parser().parse_args(arguments)
    found_all = True
    for name in args.files:
        with open_input(name) as stream:
            lines = head_lines(stream.read(HEAD_BYTES))
        print(f"{name}:")
        detection = detect(lines)
        if detection is None:
            found_all = False
            print(f"  no access format fits its first {len(lines)} lines")
            continue
        fmt = detection.formats[0]
        print(f"  {detection.name}")
        print(f"  access_log_format = {fmt!r}")
        print(f"  parses {detection.parsed} of its first {detection.sample} lines")
        sample = next(line for line in lines if line.strip())
        event = AccessParser(detection.formats).parse(sample)
        print(f"  first event: {orjson.dumps(event).decode()}")
    return 0 if found_all else 1

"""``logpipe validate``'s input checks: what each ``--access``/``--error`` path names (a wildcard
expanded as follow mode does), whether each file can be read, and how well its format (given,
or detected as follow mode would) parses its first lines or records."""

from __future__ import annotations

import argparse
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from logpipe.cli.options import access_parser
from logpipe.cli.validate.report import Report, lower_first
from logpipe.event import Event
from logpipe.lines import head_lines
from logpipe.parsing.access.detect import detect
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout, detect_error_layout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import error_events
from logpipe.problems import SetupError
from logpipe.service_tags import ServiceTags
from logpipe.sources.multiline import Multiline
from logpipe.sources.paths import is_pattern, matches, not_followable

SAMPLE = 200  # first lines (access) or records (error) each file is tried on
HEAD_BYTES = 1 << 20  # at most this much of a file is read for them


@dataclass(frozen=True)
class Parsers:
    """What the inputs are tried with: the events' service tags, the parser of a given
    ``--access-format`` (None: detected per file), the given error layout (None: detected per
    file); with ``layout_usable`` False the error options are wrong, and no record is tried."""

    tags: ServiceTags | None
    access: AccessParser | None
    layout: ErrorLayout | None
    layout_usable: bool = True


def check_input(
    report: Report, path: str, kind: str, args: argparse.Namespace, parsers: Parsers
) -> None:
    """One line per file ``path`` names (``kind``: access or error): readable, and how well
    its format parses its first lines or records."""
    if is_pattern(path):
        found = matches(path, args.exclude)
        if not found:
            report.warn(
                f"input {path}", "no file matches yet (follow mode waits for one to appear)"
            )
        for name in found:
            _check_file(report, name, kind, args, parsers)
        return
    _check_file(report, path, kind, args, parsers)


def _check_file(
    report: Report, path: str, kind: str, args: argparse.Namespace, parsers: Parsers
) -> None:
    subject = f"input {path}"
    try:
        mode = os.stat(path).st_mode
        why = not_followable(mode)
        if why is not None:
            report.fail(subject, why)
            return
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except FileNotFoundError:
        report.fail(subject, "does not exist (follow mode would wait for it to appear)")
        return
    except OSError as error:
        report.fail(subject, lower_first(error.strerror or str(error)))
        return
    if not head.strip():
        report.ok(subject, f"{kind} log, empty (its format is detected once lines arrive)")
        return
    if kind == "access":
        _access_fit(report, subject, head, args, parsers.tags, parsers.access)
    elif parsers.layout_usable:
        _error_fit(report, subject, head, args, parsers.layout)


def _access_fit(
    report: Report,
    subject: str,
    head: bytes,
    args: argparse.Namespace,
    tags: ServiceTags | None,
    access: AccessParser | None,
) -> None:
    lines = [line for line in head_lines(head) if line.strip()][:SAMPLE]
    if access is not None:
        described, parser = f"--access-format {args.access_format!r}", access
    else:
        detection = detect(lines)
        if detection is None:
            report.fail(
                subject,
                f"no access format parses any of its first {len(lines)} lines "
                "(logpipe detect FILE shows what was tried; give --access-format FMT)",
            )
            return
        inferred = detection.name == "inferred"
        described = (
            f"inferred format {detection.formats[0]!r}" if inferred else f"{detection.name} format"
        )
        try:
            parser = access_parser(args, tags, detection.formats)
        except SetupError as error:
            report.fail(subject, str(error))
            return
    events = [parser.parse(line) for line in lines]
    _verdict(report, subject, f"access log, {described}", events, "lines")


def _error_fit(
    report: Report,
    subject: str,
    head: bytes,
    args: argparse.Namespace,
    layout: ErrorLayout | None,
) -> None:
    described = f"--error-format {args.error_format!r}"
    if layout is None:
        layout = detect_error_layout(head_lines(head))
        described = f"{layout.name} layout" if layout is not None else ""
    if layout is None:
        layout = DEFAULT_LAYOUT
        described = f"no known error log layout (read as {DEFAULT_LAYOUT.name})"
    complete = head[: head.rfind(b"\n") + 1] or head
    multiline = Multiline[bytes](
        layout.record_start(args.multiline_pattern), max_bytes=args.max_line_bytes
    )
    parser = ErrorParser(
        max_record_bytes=args.max_line_bytes, layout=layout, timezone=args.timezone
    )
    events: list[Event] = []
    for event in error_events(io.BytesIO(complete), parser, multiline):
        events.append(event)
        if len(events) == SAMPLE:
            break
    _verdict(report, subject, f"error log, {described}", events, "records")


def _verdict(
    report: Report, subject: str, described: str, events: Sequence[Event], unit: str
) -> None:
    """ok when all of ``events`` parsed, warn when most did, FAIL otherwise; the count and the
    commonest reason a line or record failed."""
    failures = Counter(
        str(event["logpipe"]["parse_error"])
        for event in events
        if "parse_error" in event.get("logpipe", {})
    )
    parsed = len(events) - sum(failures.values())
    detail = f"{described}, {parsed} of {len(events)} {unit} parse"
    if failures:
        reason, count = failures.most_common(1)[0]
        detail += (
            f" (commonest failure, {count} {unit if count > 1 else unit[:-1]}: {_cut(reason)})"
        )
    if not failures:
        report.ok(subject, detail)
    elif parsed * 2 >= len(events):
        report.warn(subject, detail)
    else:
        report.fail(subject, detail)


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The options several commands share, and what they turn into (tags, parsers)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from logpipe.about import VERSION
from logpipe.lines import MAX_LINE_BYTES
from logpipe.metrics.client import DEFAULT_NAMESPACE
from logpipe.parsing.access.format import FormatError
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.assembly import LayoutError
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.parsing.timestamps import zone_named
from logpipe.pipeline.rules import Rules
from logpipe.problems import SetupError
from logpipe.service_tags import ServiceTags, split_tags
from logpipe.sources.multiline import DEFAULT_START, Multiline

AUTO = "auto"  # --access-format, --error-format: detect each file's format


class UsageError(SetupError):
    """A command line argparse refuses (an unknown option, a missing or malformed value)."""


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises ``UsageError`` instead of printing usage and exiting,
    with ``--version`` (every command has it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action=_Version, help=argparse.SUPPRESS)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_log_options(parser: argparse.ArgumentParser, verb: str, metavar: str) -> None:
    """``--access`` and ``--error``, repeatable."""
    for kind in ("access", "error"):
        parser.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar=metavar,
            help=f"gunicorn {kind} log to {verb} (repeatable)",
        )


class _Version(argparse.Action):
    """``--version``: ``logpipe 0.1.0`` on stdout, exit status 0 (``logpipe.about``)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"logpipe {VERSION}")
        parser.exit(0)


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    """``--log-format``: how logpipe says things on stderr (see ``runtime.set_log_format``)."""
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="logpipe's own messages on stderr: text ('logpipe: ...') or json (one object per "
        "line: timestamp, level, logger, message) (default: %(default)s)",
    )


def add_delivery_options(parser: argparse.ArgumentParser, *, state: str, metrics: str) -> None:
    """Where events and metrics go, and where state is kept (follow and replay)."""
    parser.add_argument(
        "--output",
        metavar="stdout|file:PATH|datadog",
        help="where events go: NDJSON on stdout or in a file, or Datadog's logs intake "
        "(default: datadog when DD_API_KEY is set, else stdout)",
    )
    add_intake_options(parser)
    parser.add_argument("--dogstatsd", metavar="HOST:PORT|off", help=metrics)
    parser.add_argument(
        "--metrics-namespace",
        metavar="NS",
        default=DEFAULT_NAMESPACE,
        help="prefix of the derived metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default_state_dir(),
        help=f"{state} (default: %(default)s)",
    )


def add_intake_options(parser: argparse.ArgumentParser) -> None:
    """Which Datadog logs intake events go to, and where DD_API_KEY is checked."""
    parser.add_argument(
        "--intake-url",
        metavar="URL",
        help="full URL to post logs to (default: the v2 intake for DD_SITE)",
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        help="where DD_API_KEY is checked at start (GET /api/v1/validate; default: the API of "
        "DD_SITE, or of the --intake-url's site; none for another intake)",
    )


def add_metrics_mode_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics-mode`` and, for its ``gunicorn`` mode, gunicorn's own statsd options."""
    group = parser.add_argument_group(
        "metrics mode",
        "gunicorn: derive from the logs what gunicorn's --statsd-host instrumentation sends "
        "(gunicorn.requests, gunicorn.request.status.<code>, gunicorn.request.duration, "
        "gunicorn.log.*), for Datadog's stock Gunicorn dashboard",
    )
    group.add_argument(
        "--metrics-mode",
        choices=("logpipe", "gunicorn"),
        default="logpipe",
        help="logpipe: <namespace>.* metrics tagged service/env; gunicorn: gunicorn's own "
        "statsd metrics, names and tags (default: %(default)s)",
    )
    group.add_argument(
        "--statsd-prefix",
        metavar="PREFIX",
        default="",
        help="gunicorn mode: gunicorn's --statsd-prefix, put in front of gunicorn.* "
        "(default: none)",
    )
    group.add_argument(
        "--dogstatsd-tags",
        metavar="K:V,...",
        default="",
        help="gunicorn mode: gunicorn's --dogstatsd-tags, the only tags its metrics carry "
        "(default: none)",
    )


def add_parsing_options(parser: argparse.ArgumentParser) -> None:
    """``--access-format``, ``--multiline-pattern`` and ``--max-line-bytes``."""
    parser.add_argument(
        "--access-format",
        metavar="FMT|auto",
        default=AUTO,
        help="gunicorn's access_log_format; auto (the default): detected from each file's "
        "first lines (gunicorn's default, uvicorn's line, or a format inferred from them), and "
        "said on stderr",
    )
    parser.add_argument(
        "--multiline-pattern",
        metavar="REGEX",
        default=DEFAULT_START,
        help="start of an error-log record (default: %(default)s)",
    )
    parser.add_argument(
        "--max-line-bytes",
        metavar="N",
        type=int,
        default=MAX_LINE_BYTES,
        help="cut longer lines and records, flagging them (default: %(default)s)",
    )


def default_state_dir() -> str:
    """``$XDG_STATE_HOME/logpipe``, else ``~/.local/state/logpipe``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "logpipe")


def add_tag_options(parser: argparse.ArgumentParser) -> None:
    """``--service``, ``--env``, ``--tags`` and ``--hostname`` (see ``tags_from``)."""
    group = parser.add_argument_group("event identity")
    group.add_argument("--service", help="service attribute (default: DD_SERVICE, else gunicorn)")
    group.add_argument("--env", help="adds env:ENV to ddtags (default: DD_ENV)")
    group.add_argument(
        "--tags",
        metavar="K:V,...",
        default="",
        help="extra ddtags, comma-separated (added to DD_TAGS)",
    )
    group.add_argument(
        "--hostname", help="hostname attribute (default: DD_HOSTNAME, else this host)"
    )


def tags_from(args: argparse.Namespace) -> ServiceTags:
    """The service tags the options (then the DD_* variables) give."""
    return ServiceTags.resolve(
        service=args.service, env=args.env, tags=split_tags(args.tags), hostname=args.hostname
    )


def access_parser(
    args: argparse.Namespace,
    service_tags: ServiceTags | None = None,
    formats: Sequence[str] | None = None,
) -> AccessParser:
    """The access parser the options ask for, or for ``formats`` (a detection's), its events
    carrying ``service_tags``'s attributes."""
    if args.max_line_bytes < 1:
        raise SetupError("--max-line-bytes must be positive")
    fmt = formats if formats is not None else fixed_access_format(args)
    try:
        return AccessParser(
            fmt,
            max_line_bytes=args.max_line_bytes,
            attributes=service_tags.attributes if service_tags else None,
        )
    except FormatError as error:
        raise SetupError(f"--access-format: {error}") from None


def fixed_access_format(args: argparse.Namespace) -> str | None:
    """The ``--access-format`` given, or None for ``auto`` (detected per file)."""
    fmt: str | None = args.access_format
    return None if fmt in (None, AUTO) else fmt


def multiline_pattern(pattern: str) -> str:
    """``--multiline-pattern``, checked."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise SetupError(f"--multiline-pattern: {error}") from None
    return pattern


def add_error_layout_options(parser: argparse.ArgumentParser) -> None:
    """``--error-format``, ``--error-datefmt`` and ``--timezone`` (error-log layouts)."""
    parser.add_argument(
        "--error-format",
        metavar="FMT|json|auto",
        default=AUTO,
        help="the layout of error logs: a Python logging format (%%(asctime)s [%%(process)d] "
        "...), json (one object per line), or auto (the default): detected from each file's "
        "first lines (gunicorn's default, logging.conf, basicConfig, JSON...)",
    )
    parser.add_argument(
        "--error-datefmt",
        metavar="FMT",
        help="the logging datefmt of --error-format (default: logging's, "
        "%%Y-%%m-%%d %%H:%%M:%%S,mmm)",
    )
    parser.add_argument(
        "--timezone",
        metavar="TZ",
        help="the zone of error-log times written without an offset, e.g. Europe/Paris "
        "(default: this machine's local zone, as logging wrote them)",
    )


def error_layout(args: argparse.Namespace) -> ErrorLayout | None:
    """The layout ``--error-format`` and ``--error-datefmt`` name; None for auto (detected per
    file). The time zone is checked too."""
    timezone(args)
    fmt: str | None = args.error_format
    if fmt in (None, AUTO):
        if args.error_datefmt is not None:
            raise SetupError("--error-datefmt needs --error-format FMT")
        return None
    try:
        return ErrorLayout.of(fmt, args.error_datefmt)
    except LayoutError as error:
        raise SetupError(f"--error-format: {error}") from None


def timezone(args: argparse.Namespace) -> str | None:
    """``--timezone``, checked."""
    name: str | None = args.timezone
    try:
        zone_named(name)
    except ValueError as error:
        raise SetupError(f"--timezone: {error}") from None
    return name


def error_records(
    args: argparse.Namespace, layout: ErrorLayout | None, service_tags: ServiceTags | None = None
) -> tuple[Multiline[bytes], ErrorParser]:
    """The aggregator and parser for error records of ``layout`` (None: gunicorn's default);
    ``--multiline-pattern``, when given, starts records instead of the layout's pattern."""
    chosen = layout or DEFAULT_LAYOUT
    pattern = chosen.record_start(args.multiline_pattern)
    multiline: Multiline[bytes] = Multiline(
        multiline_pattern(pattern), max_bytes=args.max_line_bytes
    )
    parser = ErrorParser(
        max_record_bytes=args.max_line_bytes,
        attributes=service_tags.attributes if service_tags else None,
        layout=chosen,
        timezone=timezone(args),
    )
    return multiline, parser


class _RuleAction(argparse._AppendAction):
    """``--exclude-at-match``, ``--include-at-match``, ``--mask``: appended, and their order
    across the three noted (rules run in the order given)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        order = list(getattr(namespace, "rule_order", None) or [])
        namespace.rule_order = [*order, (self.dest, values)]


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    """Processing rules, as the Datadog Agent's ``log_processing_rules``: ``--exclude-at-match``,
    ``--include-at-match`` and ``--mask`` (repeatable, for access and error logs alike), and the
    config file's ``[[log_processing_rules]]`` tables (``processing_rules``)."""
    group = parser.add_argument_group("processing rules (before parsing, in the order given)")
    group.add_argument(
        "--exclude-at-match",
        action=_RuleAction,
        default=[],
        metavar="REGEX",
        help="drop access lines and error records REGEX matches (repeatable)",
    )
    group.add_argument(
        "--include-at-match",
        action=_RuleAction,
        default=[],
        metavar="REGEX",
        help="keep only access lines and error records REGEX matches (repeatable)",
    )
    group.add_argument(
        "--mask",
        action=_RuleAction,
        default=[],
        metavar="REGEX=PLACEHOLDER",
        help="replace what REGEX matches with PLACEHOLDER ($1, ${name}: its groups; split at "
        "the last =) in lines and records (repeatable)",
    )
    parser.set_defaults(log_processing_rules=[], rule_order=[])


def processing_rules(args: argparse.Namespace) -> Rules | None:
    """The rules: the config file's ``[[log_processing_rules]]`` in their order, then the
    options (those from the config file first), each pattern checked; None when there are
    none."""
    from logpipe.pipeline.rules import EXCLUDE, INCLUDE, RuleSpec, build_rules, mask_spec

    kinds = {"exclude_at_match": EXCLUDE, "include_at_match": INCLUDE}
    given: list[tuple[str, str]] = list(getattr(args, "rule_order", None) or [])
    ordered: list[tuple[str, str]] = []
    for dest in ("exclude_at_match", "include_at_match", "mask"):
        values: list[str] = getattr(args, dest, None) or []
        on_line = sum(1 for name, _ in given if name == dest)
        ordered += [(dest, value) for value in values[: len(values) - on_line]]  # config's
    specs = list(getattr(args, "log_processing_rules", None) or [])
    for dest, value in [*ordered, *given]:
        option = "--" + dest.replace("_", "-")
        if dest == "mask":
            specs.append(mask_spec(value))
        else:
            specs.append(RuleSpec(kinds[dest], value, name=option))
    return build_rules(specs)

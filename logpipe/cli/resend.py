"""``logpipe resend``: send the state dir's dead letters to the intake again, once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from logpipe.cli.options import ArgumentParser, add_intake_options, default_state_dir
from logpipe.cli.outputs import OutputSettings, open_sink
from logpipe.cli.runtime import stop_on_signals, warn
from logpipe.problems import SetupError
from logpipe.sinks.resend import has_dead_letters, resend

GRACE = 5.0  # once stopped (a signal, --timeout), how long a request under way may still take


def build_resend_parser() -> argparse.ArgumentParser:
    """``logpipe resend``'s options."""
    parser = ArgumentParser(
        prog="logpipe resend",
        description="Send the events the intake refused (dead-letters.ndjson in the state "
        "dir) again, once the cause is fixed (DD_API_KEY, --intake-url): each event once; "
        "what is refused again is kept in dead-letters.ndjson. Proxies as for follow mode.",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default_state_dir(),
        help="the state dir holding dead-letters.ndjson (default: %(default)s)",
    )
    add_intake_options(parser)
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="give up when the intake has not taken a batch for this long (retries of 408, "
        "429, 5xx and network errors); a re-run goes on from there (default: %(default)s)",
    )
    return parser


def run_resend(arguments: Sequence[str]) -> int:
    """``logpipe resend``: 0 when every event was accepted (or there were none), 1 when some
    were refused again or are still pending, 128 + the signal when stopped by one."""
    args = build_resend_parser().parse_args(arguments)
    if not args.timeout > 0:
        raise SetupError("--timeout must be positive")
    state_dir = Path(args.state_dir)
    if not state_dir.is_dir():
        raise SetupError(f"state dir {state_dir}: no such directory")
    if not has_dead_letters(state_dir):
        warn(f"no dead letters in {state_dir}")
        return 0
    settings = OutputSettings("datadog", args.intake_url, state_dir, api_url=args.api_url)
    stop, signals = stop_on_signals()
    sink = open_sink(settings, stop, warn, shutdown_timeout=GRACE)
    try:
        result = resend(state_dir, sink, stop=stop, warn=warn, batch_timeout=args.timeout)
    finally:
        sink.close()
    if result is None or (result.events == 0 and not result.resumed_at):
        warn(f"no dead letters in {state_dir}")
        return 0
    kept = f" (kept in {result.kept_in})" if result.refused else ""
    warn(
        f"resent {result.events} events: {result.accepted} accepted, {result.refused} refused "
        f"again{kept}, {result.pending} pending"
    )
    if result.pending:
        why = f"stopped by {signals[-1].name}" if signals else "the intake did not take them"
        if result.timed_out and not signals:
            why += f" within --timeout {args.timeout:g} s"
        warn(f"{why}: they stay in {state_dir}; logpipe resend goes on from there")
        if signals:
            return 128 + signals[-1]
    return 0 if result.accepted == result.events else 1

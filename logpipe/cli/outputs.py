"""The log sink ``--output`` names, for follow and replay."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from logpipe.sinks import LogSink
from logpipe.sinks.datadog_logs import DatadogLogsSink, intake_url
from logpipe.sinks.ndjson import NdjsonSink


def open_sink(
    args: argparse.Namespace,
    stop: threading.Event,
    resources: ExitStack,
    warn: Callable[[str], None],
) -> LogSink:
    """The log sink ``--output`` names (datadog by default when DD_API_KEY is set)."""
    from logpipe.cli.main import UsageError

    target = args.output or ("datadog" if os.environ.get("DD_API_KEY") else "stdout")
    if target == "stdout":
        return NdjsonSink(sys.stdout.buffer, fsync=False)
    if target.startswith("file:") and len(target) > 5:
        try:
            stream: BinaryIO = resources.enter_context(open(target[5:], "ab"))  # noqa: SIM115
        except OSError as error:
            raise UsageError(f"--output {target}: {error.strerror}") from None
        return NdjsonSink(stream, fsync=True, path=target[5:])
    if target == "datadog":
        api_key = os.environ.get("DD_API_KEY", "")
        if not api_key:
            raise UsageError("--output datadog needs the API key in DD_API_KEY")
        url = args.intake_url or intake_url(os.environ.get("DD_SITE"))
        try:
            return DatadogLogsSink(
                url,
                api_key,
                dead_letters=Path(args.state_dir) / "dead-letters.ndjson",
                stop=stop,
                warn=warn,
            )
        except ValueError as error:
            raise UsageError(f"--intake-url: {error}") from None
    raise UsageError(f"--output must be stdout, file:PATH or datadog, not {target!r}")

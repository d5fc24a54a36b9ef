"""The log sink ``--output`` names, for follow and replay."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logpipe.problems import SetupError
from logpipe.sinks import LogSink
from logpipe.sinks.ndjson import NdjsonSink


@dataclass(frozen=True)
class OutputSettings:
    """Where events go: ``target`` is ``stdout``, ``file:PATH`` or ``datadog`` as given (not
    checked yet); ``intake_url`` None means DD_SITE's intake; dead letters go in
    ``state_dir``."""

    target: str
    intake_url: str | None
    state_dir: Path


def output_settings(args: argparse.Namespace) -> OutputSettings:
    """``--output`` (default: datadog when DD_API_KEY is set, else stdout), ``--intake-url``
    and ``--state-dir``."""
    target = args.output or ("datadog" if os.environ.get("DD_API_KEY") else "stdout")
    return OutputSettings(target, args.intake_url, Path(args.state_dir))


def open_sink(
    settings: OutputSettings,
    stop: threading.Event,
    warn: Callable[[str], None],
    *,
    shutdown_timeout: float | None = None,
) -> LogSink:
    """The log sink ``settings`` name (the caller closes it). A file is cut back to its last
    whole line first. Once ``stop`` is set, the Datadog sink delivers for at most
    ``shutdown_timeout`` seconds (None: it sends what it holds, but retries nothing)."""
    target = settings.target
    if target == "stdout":
        return NdjsonSink(sys.stdout.buffer, fsync=False)
    if target.startswith("file:") and len(target) > 5:
        try:
            sink = NdjsonSink.to_file(target[5:], warn)
        except OSError as error:
            raise SetupError(f"--output {target}: {error.strerror}") from None
        return sink
    if target == "datadog":
        api_key = os.environ.get("DD_API_KEY", "")
        if not api_key:
            raise SetupError("--output datadog needs the API key in DD_API_KEY")
        # imported here: its HTTP and TLS modules cost every other output ~5 MB at start
        from logpipe.sinks.datadog_logs import DatadogLogsSink, intake_url

        url = settings.intake_url or intake_url(os.environ.get("DD_SITE"))
        try:
            return DatadogLogsSink(
                url,
                api_key,
                dead_letters=settings.state_dir / "dead-letters.ndjson",
                stop=stop,
                warn=warn,
                shutdown_timeout=shutdown_timeout,
            )
        except SetupError as error:
            raise SetupError(f"--intake-url: {error}") from None
    raise SetupError(f"--output must be stdout, file:PATH or datadog, not {target!r}")

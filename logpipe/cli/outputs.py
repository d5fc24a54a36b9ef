"""The log sink ``--output`` names, for follow and replay."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from logpipe.problems import SetupError
from logpipe.sinks import Attempt, LogSink
from logpipe.sinks.ndjson import NdjsonSink


@dataclass(frozen=True)
class OutputSettings:
    """Where events go: ``target`` is ``stdout``, ``file:PATH`` or ``datadog`` as given (not
    checked yet); ``intake_url`` None means DD_SITE's intake; dead letters go in
    ``state_dir``. ``api_url`` is where DD_API_KEY is checked (None: see ``key_check_url``);
    ``debug`` says whether debug-level notes are shown."""

    target: str
    intake_url: str | None
    state_dir: Path
    api_url: str | None = None
    debug: bool = False


def output_settings(args: argparse.Namespace) -> OutputSettings:
    """``--output`` (default: datadog when DD_API_KEY is set, else stdout), ``--intake-url``,
    ``--state-dir``, and where the API key is checked (``--api-url`` where a command has it,
    else ``$LOGPIPE_API_URL``)."""
    target = args.output or ("datadog" if os.environ.get("DD_API_KEY") else "stdout")
    return OutputSettings(
        target,
        args.intake_url,
        Path(args.state_dir),
        api_url=args.api_url or os.environ.get(API_URL_ENV) or None,
        debug=getattr(args, "log_level", None) == "debug",
    )


API_URL_ENV = "LOGPIPE_API_URL"


def key_check_url(settings: OutputSettings) -> str | None:
    """Where DD_API_KEY is checked: ``api_url`` if given; else the API of DD_SITE when the
    intake is DD_SITE's, or of the site whose intake ``--intake-url`` names
    (``http-intake.logs.SITE``); else None (another intake: its API is not known)."""
    from logpipe.sinks.datadog_logs import api_url, site_of_intake

    if settings.api_url:
        return settings.api_url
    if settings.intake_url is None:
        return api_url(os.environ.get("DD_SITE"))
    site = site_of_intake(settings.intake_url)
    return api_url(site) if site else None


def check_key(settings: OutputSettings, api_key: str, warn: Callable[[str], None]) -> None:
    """Ask the Datadog API whether it takes ``api_key`` (through the proxy the environment
    names for it): refused (401, 403) is a ``SetupError``; no answer, or any other answer,
    is a warning, and logpipe goes on (the intake decides in the end)."""
    from logpipe.sinks.datadog_logs import check_api_key
    from logpipe.sinks.proxy import proxy_for

    api = key_check_url(settings)
    if api is None:
        if settings.debug:
            warn(
                "debug: DD_API_KEY not checked: --intake-url is not a Datadog intake "
                f"(set {API_URL_ENV} to the API to check it with)"
            )
        return
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(f"{API_URL_ENV}: not an http(s) URL")
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    status, reason = check_api_key(api, api_key, proxy_for(parts, os.environ))
    if status in (401, 403):
        raise SetupError(f"DD_API_KEY was refused by {shown} (HTTP {status})")
    if status is None or not 200 <= status < 300:
        why = reason if status is None else f"HTTP {status}"
        warn(f"could not check DD_API_KEY with {shown} ({why}); going on")


def open_sink(
    settings: OutputSettings,
    stop: threading.Event,
    warn: Callable[[str], None],
    *,
    shutdown_timeout: float | None = None,
    on_attempt: Sequence[Callable[[Attempt], None]] = (),
    acknowledge_refused: bool = True,
) -> LogSink:
    """The log sink ``settings`` name (the caller closes it). A file is cut back to its last
    whole line first. Once ``stop`` is set, the Datadog sink delivers for at most
    ``shutdown_timeout`` seconds (None: it sends what it holds, but retries nothing). The
    Datadog sink shows each request to the ``on_attempt`` hooks, and with ``settings.debug``
    says it in one ``debug:`` line through ``warn``. Without ``acknowledge_refused``, it raises
    ``Refused`` at a refused batch instead of keeping it in the dead letters."""
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
        from logpipe.sinks.proxy import proxy_for

        url = settings.intake_url or intake_url(os.environ.get("DD_SITE"))
        proxy = proxy_for(url, os.environ)
        try:
            datadog = DatadogLogsSink(
                url,
                api_key,
                dead_letters=settings.state_dir / "dead-letters.ndjson",
                stop=stop,
                warn=warn,
                shutdown_timeout=shutdown_timeout,
                proxy=proxy,
                on_attempt=_each(
                    [*on_attempt, _debug_line(warn)] if settings.debug else list(on_attempt)
                ),
                acknowledge_refused=acknowledge_refused,
            )
        except SetupError as error:
            raise SetupError(f"--intake-url: {error}") from None
        try:
            check_key(settings, api_key, warn)
        except BaseException:
            datadog.close()
            raise
        return datadog
    raise SetupError(f"--output must be stdout, file:PATH or datadog, not {target!r}")


def _each(hooks: list[Callable[[Attempt], None]]) -> Callable[[Attempt], None] | None:
    """One hook calling each of ``hooks`` in turn (None when there are none)."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def call_each(attempt: Attempt) -> None:
        for hook in hooks:
            hook(attempt)

    return call_each


def _debug_line(warn: Callable[[str], None]) -> Callable[[Attempt], None]:
    """A hook saying each intake request in one ``debug:`` line."""

    def say(attempt: Attempt) -> None:
        warn(f"debug: {describe_attempt(attempt)}")

    return say


def describe_attempt(attempt: Attempt) -> str:
    """``intake request: 1000 events, 48213 bytes gzipped: HTTP 202 in 0.041 s`` (or the
    failure, when no answer came)."""
    outcome = (
        f"HTTP {attempt.status}"
        if attempt.status is not None
        else f"failed ({attempt.failure or 'no answer'})"
    )
    return (
        f"intake request: {attempt.events} events, {attempt.body_bytes} bytes gzipped: "
        f"{outcome} in {attempt.seconds:.3f} s"
    )

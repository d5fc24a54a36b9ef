"""``logpipe validate``'s output and DogStatsD checks: stdout, a file (its folder writable), or
Datadog (DD_API_KEY set, the intake reachable through the proxy that applies, the key accepted);
DogStatsD's name resolved (in a thread of its own, so a resolver that never answers costs
``RESOLVE_SECONDS``) and a datagram socket able to send to it, or a unix socket's path."""

from __future__ import annotations

import argparse
import os
import socket
import stat
import threading
from pathlib import Path
from urllib.parse import urlsplit

from logpipe.cli.outputs import API_URL_ENV, key_check_url, output_settings
from logpipe.cli.validate.report import Report, lower_first
from logpipe.metrics.client import DEFAULT_HOST, DEFAULT_PORT, parse_target
from logpipe.problems import SetupError
from logpipe.sinks.datadog_logs import VALIDATE_TIMEOUT, check_api_key, intake_url
from logpipe.sinks.failures import explain
from logpipe.sinks.proxy import connection, proxy_for

RESOLVE_SECONDS = 2.0
UNIX = "unix://"


def check_output(report: Report, args: argparse.Namespace) -> None:
    """Where events would go, and whether they can."""
    settings = output_settings(args)
    target = settings.target
    if target == "stdout":
        report.ok("output stdout", "NDJSON on standard output")
    elif target.startswith("file:") and len(target) > 5:
        _check_file_output(report, target, Path(target[5:]))
    elif target == "datadog":
        _check_datadog(report, settings.intake_url, key_check_url(settings))
    else:
        report.fail(f"output {target}", "--output must be stdout, file:PATH or datadog")


def _check_file_output(report: Report, target: str, path: Path) -> None:
    subject = f"output {target}"
    folder = path.absolute().parent
    if not folder.is_dir():
        report.fail(subject, f"folder {folder} does not exist")
        return
    problem = writable(folder)
    if problem is not None:
        report.fail(subject, f"folder {folder} is not writable: {problem}")
        return
    if path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
        except OSError as error:
            report.fail(subject, f"cannot append to it: {lower_first(error.strerror or '')}")
            return
    report.ok(subject, f"folder {folder} writable")


def writable(folder: Path) -> str | None:
    """Why a file cannot be created, written, synced and removed in ``folder`` (None: it can)."""
    probe = folder / f".logpipe-validate-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        return lower_first(error.strerror or str(error))
    return None


def _check_datadog(report: Report, given_intake: str | None, api: str | None) -> None:
    api_key = os.environ.get("DD_API_KEY", "")
    if not api_key:
        report.fail("output datadog", "DD_API_KEY is not set (the API key goes there)")
    url = given_intake or intake_url(os.environ.get("DD_SITE"))
    parts = urlsplit(url)
    subject = f"intake {parts.scheme}://{parts.hostname or ''}"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
        proxy = proxy_for(parts, os.environ)
    except ValueError:
        report.fail("output datadog", f"--intake-url is not an http(s) URL: {url}")
        return
    except SetupError as error:
        report.fail("output datadog", str(error))
        return
    subject = f"intake {parts.scheme}://{parts.hostname}:{port}"
    link = connection(parts, proxy, VALIDATE_TIMEOUT)
    try:
        link.connect()  # TCP, the proxy's tunnel, TLS: what a request would need
    except OSError as error:
        report.fail(subject, explain(error, parts.hostname, port, proxy, timeout=VALIDATE_TIMEOUT))
        return
    finally:
        link.close()
    how = f"through proxy {proxy.name}" if proxy is not None else "directly"
    tls = ", TLS verified" if parts.scheme == "https" else ""
    report.ok(subject, f"reachable {how}{tls}")
    if api_key:
        _check_key(report, api_key, api)


def _check_key(report: Report, api_key: str, api: str | None) -> None:
    """The key, as follow mode checks it at start (a refusal stops it; no answer does not)."""
    if api is None:
        report.warn(
            "DD_API_KEY",
            f"not checked: --intake-url is not a Datadog intake (set {API_URL_ENV} or --api-url "
            "to the API that knows the key)",
        )
        return
    parts = urlsplit(api)
    try:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
        shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        proxy = proxy_for(parts, os.environ)
    except ValueError:
        report.fail(
            "DD_API_KEY", f"cannot be checked: {API_URL_ENV}/--api-url is not an http(s) URL"
        )
        return
    except SetupError as error:
        report.fail("DD_API_KEY", f"cannot be checked: {error}")
        return
    status, reason = check_api_key(api, api_key, proxy)
    if status is not None and 200 <= status < 300:
        report.ok("DD_API_KEY", f"accepted by {shown}")
    elif status in (401, 403):
        report.fail("DD_API_KEY", f"refused: {reason}")
    else:
        report.warn(
            "DD_API_KEY", f"could not be checked with {shown}: {reason} (follow mode would go on)"
        )


def check_dogstatsd(report: Report, target: str | None) -> None:
    """``--dogstatsd`` (None: DD_AGENT_HOST and DD_DOGSTATSD_PORT): off, a unix socket path,
    or a name that resolves in time and a datagram socket that can send to it."""
    if target is not None and target.strip().lower() == "off":
        report.ok("dogstatsd off", "no metrics are sent")
        return
    if target is not None and target.startswith(UNIX):
        _check_unix(report, target[len(UNIX) :])
        return
    if target is None:
        host = os.environ.get("DD_AGENT_HOST") or DEFAULT_HOST
        target = f"{host}:{os.environ.get('DD_DOGSTATSD_PORT') or DEFAULT_PORT}"
    try:
        host, port = parse_target(target)
    except ValueError as error:
        report.fail(f"dogstatsd {target}", str(error))
        return
    subject = f"dogstatsd {target}"
    found = resolve(host, port, RESOLVE_SECONDS)
    if found is None:
        report.fail(subject, f"no answer from the resolver for {host} within {RESOLVE_SECONDS:g} s")
        return
    if isinstance(found, OSError):
        report.fail(subject, explain(found, host, port))
        return
    family, address = found
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect(address)
            udp.send(b"")  # an empty datagram: DogStatsD reads nothing from it
    except OSError as error:
        report.fail(subject, explain(error, str(address[0]), port))
        return
    report.ok(subject, f"resolves to {address[0]}; UDP datagrams can be sent")


def resolve(
    host: str, port: int, seconds: float
) -> tuple[socket.AddressFamily, tuple[str, int]] | OSError | None:
    """The first UDP address of ``host:port``, the resolver's error, or None when it did not
    answer within ``seconds`` (it is left to finish on its daemon thread)."""
    answer: list[tuple[socket.AddressFamily, tuple[str, int]] | OSError] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            answer.append((infos[0][0], (str(infos[0][4][0]), int(infos[0][4][1]))))
        except OSError as error:
            answer.append(error)
        finally:
            done.set()

    threading.Thread(target=look_up, name="logpipe-resolve", daemon=True).start()
    if not done.wait(seconds):
        return None
    return answer[0]


def _check_unix(report: Report, path: str) -> None:
    subject = f"dogstatsd {UNIX}{path}"
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        report.fail(subject, lower_first(error.strerror or str(error)))
        return
    if not stat.S_ISSOCK(mode):
        report.fail(subject, "not a socket")
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
            unix.connect(path)
    except OSError as error:
        report.fail(subject, f"cannot send to it: {lower_first(error.strerror or str(error))}")
        return
    report.ok(subject, "a datagram socket that takes connections")

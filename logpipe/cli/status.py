"""``logpipe status``: ask a running follower's ``--http`` endpoint how it is doing, and show it
(exit 0 healthy, 1 stuck, 2 when nothing answers)."""

from __future__ import annotations

import argparse
import http.client
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from logpipe.cli.options import ArgumentParser
from logpipe.ops.address import DEFAULT_PORT, LOOPBACK, parse_address, shown
from logpipe.problems import SetupError

TIMEOUT = 5.0  # seconds to wait for the answer
HEALTHY, STUCK = 0, 1


def build_status_parser() -> argparse.ArgumentParser:
    """``logpipe status``'s options."""
    parser = ArgumentParser(
        prog="logpipe status",
        description="Show how a running logpipe is doing (the follower must run with --http): "
        "its health, its files, its sink. Exit 0 when healthy, 1 when stuck, 2 when nothing "
        "answers.",
    )
    parser.add_argument(
        "--http",
        metavar="ADDR:PORT",
        default=f"{LOOPBACK}:{DEFAULT_PORT}",
        help="where the follower's --http endpoint listens; PORT or :PORT alone is on "
        "127.0.0.1 (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print /status's answer as JSON instead"
    )
    return parser


def run_status(arguments: Sequence[str]) -> int:
    """``logpipe status``: print the follower's status; 0 healthy, 1 stuck."""
    args = build_status_parser().parse_args(arguments)
    try:
        host, port = parse_address(args.http)
    except ValueError as error:
        raise SetupError(f"--http: {error}") from None
    body = fetch_status(host, port)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        show(body)
    return HEALTHY if body["health"]["status"] != "stuck" else STUCK


def fetch_status(host: str, port: int, timeout: float = TIMEOUT) -> dict[str, Any]:
    """``GET /status`` from the endpoint at ``host:port``; a ``SetupError`` (one line) when
    nothing answers there, or something that is not logpipe's endpoint."""
    where = shown(host, port)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/status", headers={"Accept": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except TimeoutError:
        raise SetupError(f"no logpipe answers at {where} (no answer in {timeout:g} s)") from None
    except (OSError, http.client.HTTPException) as error:
        why = (getattr(error, "strerror", None) or str(error) or type(error).__name__).lower()
        raise SetupError(
            f"no logpipe answers at {where} ({why}); is it running with --http?"
        ) from None
    finally:
        connection.close()
    try:
        body = orjson.loads(data) if response.status in (200, 503) else None
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("health"), dict):
        raise SetupError(
            f"{where} answered GET /status with HTTP {response.status}, not logpipe's "
            "status; is --http right?"
        )
    return body


def show(body: dict[str, Any]) -> None:
    """The status page: rich on a terminal, plain text otherwise."""
    from logpipe.ops.report import plain, status_page

    page = status_page(body)
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(page)
    else:
        sys.stdout.write(plain(page))
        sys.stdout.flush()

"""Follow mode's ``--http ADDR:PORT`` and ``--health-threshold``: the endpoint a running
follower answers ``/health``, ``/metrics`` and ``/status`` on (``logpipe.ops``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from logpipe.ops.address import DEFAULT_PORT, parse_address
from logpipe.problems import SetupError

if TYPE_CHECKING:  # imported when --http is given: its HTTP server and prometheus_client
    # cost every other follower ~9 MB and 0.1 s at start
    from logpipe.ops.endpoint import Endpoint


def add_http_options(parser: argparse.ArgumentParser) -> None:
    """``--http`` and ``--health-threshold``."""
    group = parser.add_argument_group(
        "HTTP endpoint",
        "GET /health (200 while delivering, 503 once stuck), /metrics (Prometheus), /status "
        "(JSON; what `logpipe status` shows)",
    )
    group.add_argument(
        "--http",
        metavar="ADDR:PORT",
        help="serve the endpoint there; PORT or :PORT alone listens on 127.0.0.1, [::1]:PORT "
        f"on IPv6 (logpipe status asks 127.0.0.1:{DEFAULT_PORT}; default: no endpoint)",
    )
    group.add_argument(
        "--health-threshold",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="/health says stuck once events wait this long on a failing sink, or the logs "
        "are paused this long (default: %(default)s)",
    )


def open_endpoint(args: argparse.Namespace) -> Endpoint | None:
    """The endpoint ``--http`` asks for, listening (not answering yet), or None."""
    if not args.health_threshold > 0:
        raise SetupError("--health-threshold must be positive")
    if args.http is None:
        return None
    try:
        host, port = parse_address(args.http, listen=True)
    except ValueError as error:
        raise SetupError(f"--http: {error}") from None
    from logpipe.ops.endpoint import Endpoint

    try:
        return Endpoint(host, port, threshold=args.health_threshold)
    except SetupError as error:
        raise SetupError(f"--http: {error}") from None

"""The DogStatsD client every metric goes through (the ``datadog`` package), as the options
name it, and how it is shut down.

The client aggregates counts in process (``disable_aggregation=False``) and packs datagrams
(``disable_buffering=False``); its own thread sends both every 0.3 s, and ``flush`` sends them
at once. DogStatsd puts its ``namespace`` in front of every name it serializes, with no per-call
way out, and aggregated metrics are serialized later, by that thread, so the namespace cannot be
switched off around a call either: ``logpipe.*`` (self-telemetry) goes through a second client
with the same destination and constant tags and no namespace (``twin_without_namespace``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where clients are made: worker processes only count, never send
    from datadog.dogstatsd.base import DogStatsd

DEFAULT_NAMESPACE = "gunicorn.logs"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8125
FLUSH_SECONDS = 0.3  # how often a client's thread sends (datadog's default)
SELF_PREFIX = "logpipe."  # self-telemetry, never namespaced


def dogstatsd(
    target: str | None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    tags: Sequence[str] = (),
    flush_thread: bool = True,
    env_tags: bool = True,
    telemetry: bool = True,
) -> DogStatsd | None:
    """The DogStatsD client for ``--dogstatsd`` (None for ``off``).

    ``target``: ``HOST:PORT`` (``[v6addr]:PORT`` too); ``off``; or None for ``DD_AGENT_HOST`` and
    ``DD_DOGSTATSD_PORT``, each defaulting to localhost and 8125. Raises ValueError with a one-line
    reason for anything else. The client aggregates counts and buffers datagrams. Its constant
    tags are ``tags``, then those the ``datadog`` package adds from ``DD_ENV``, ``DD_SERVICE``,
    ``DD_VERSION``, ``DATADOG_TAGS`` and ``DD_ENTITY_ID`` whose key ``tags`` does not have (so
    ``--service web`` with ``DD_SERVICE=api`` tags ``service:web`` only).

    Without ``flush_thread``, nothing is sent in the background: the caller flushes (replay and
    ``check`` do). The client's thread sleeps its whole 0.3 s between flushes, and stopping it
    waits for that sleep to end, which cost every replay ~0.3 s at exit.

    Without ``env_tags``, the constant tags are ``tags`` only; without ``telemetry``, the
    client sends none of the ``datadog.dogstatsd.client.*`` metrics about itself (both for
    ``--metrics-mode gunicorn``, which sends what gunicorn sends and nothing else).
    """
    if target is not None and target.strip().lower() == "off":
        return None
    host, port = parse_target(target) if target is not None else _target_from_env()
    wanted = list(tags)
    from datadog.dogstatsd.base import DogStatsd

    client = DogStatsd(
        host=host,
        port=port,
        namespace=namespace or None,
        constant_tags=list(wanted),
        disable_aggregation=False,
        disable_buffering=False,
        flush_interval=FLUSH_SECONDS if flush_thread else 0,
        disable_telemetry=not telemetry,
    )
    if not env_tags:
        client.constant_tags = list(dict.fromkeys(wanted))
        return client
    # The client put the environment's tags after ours; explicit ones win, key by key.
    added = list(client.constant_tags)[len(wanted) :]
    keys = {tag.partition(":")[0] for tag in wanted}
    merged = wanted + [tag for tag in added if tag.partition(":")[0] not in keys]
    client.constant_tags = list(dict.fromkeys(merged))
    return client


def parse_target(target: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> (host, port); ValueError with a one-line reason if it is not that."""
    host, colon, port_text = target.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise ValueError(f"DogStatsD target must be HOST:PORT or off, not {target!r}")
    return host, _port(port_text, f"DogStatsD target {target!r}")


def shutdown(client: DogStatsd) -> None:
    """Flush ``client``, stop its flush thread and close its socket (it can still send after)."""
    client.disable_aggregation()
    client.disable_buffering = True  # with aggregation off too, this stops and joins the thread
    client.flush_aggregated_metrics()  # now straight to the socket
    client.flush()  # what was still in the datagram buffer
    client.close_socket()


def _target_from_env() -> tuple[str, int]:
    host = os.environ.get("DD_AGENT_HOST") or DEFAULT_HOST
    port_text = os.environ.get("DD_DOGSTATSD_PORT")
    port = _port(port_text, "DD_DOGSTATSD_PORT") if port_text else DEFAULT_PORT
    return host, port


def _port(text: str, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"{what}: the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def twin_without_namespace(statsd: DogStatsd, *, flush_thread: bool) -> DogStatsd:
    """A client sending where ``statsd`` sends, with its constant tags, and no namespace."""
    from datadog.dogstatsd.base import DogStatsd

    twin = DogStatsd(
        host=statsd.host,
        port=statsd.port,
        socket_path=statsd.socket_path,
        socket_timeout=statsd.socket_timeout,
        disable_aggregation=False,
        disable_buffering=False,
        disable_telemetry=True,  # the first client already reports the library's own telemetry
        flush_interval=FLUSH_SECONDS if flush_thread else 0,
    )
    twin.constant_tags = list(statsd.constant_tags)
    return twin

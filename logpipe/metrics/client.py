"""The DogStatsD client every metric goes through (the ``datadog`` package), as the options
name it, and how it is shut down.

The client aggregates counts, gauges and distributions in process and packs datagrams; its own
thread sends them every 0.3 s, and ``flush_soon`` wakes it. It sends to an address looked up on
a thread of its own (``address.DogStatsdAddress``), never resolving a name itself, so counting
and flushing never wait on DNS (``resolved.ResolvedDogStatsd``). DogStatsd puts its
``namespace`` in front of every name it serializes, with no per-call way out, and aggregated
metrics are serialized later, by that thread, so the namespace cannot be switched off around a
call either: ``logpipe.*`` (self-telemetry) goes through a second client with the same
destination and constant tags and no namespace (``twin_without_namespace``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from logpipe.metrics.address import PATIENCE_SECONDS, DogStatsdAddress, Report

if TYPE_CHECKING:  # imported where clients are made: worker processes only count, never send
    from datadog.dogstatsd.base import DogStatsd

    from logpipe.metrics.resolved import ResolvedDogStatsd

DEFAULT_NAMESPACE = "gunicorn.logs"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8125
SELF_PREFIX = "logpipe."  # self-telemetry, never namespaced


def dogstatsd_address(
    target: str | None, *, report: Report | None = None
) -> DogStatsdAddress | None:
    """Where ``--dogstatsd`` sends (None for ``off``): a name's lookups start now, on a thread
    of their own (``report`` is told when it cannot be resolved, and when it can again); the
    caller stops them at the end.

    ``target``: ``HOST:PORT`` (``[v6addr]:PORT`` too); ``off``; or None for ``DD_AGENT_HOST`` and
    ``DD_DOGSTATSD_PORT``, each defaulting to localhost and 8125. Raises ValueError with a one-line
    reason for anything else."""
    if target is not None and target.strip().lower() == "off":
        return None
    host, port = parse_target(target) if target is not None else _target_from_env()
    return DogStatsdAddress(host, port, report=report)


def dogstatsd(
    target: str | DogStatsdAddress | None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    tags: Sequence[str] = (),
    flush_thread: bool = True,
    env_tags: bool = True,
    telemetry: bool = True,
    report: Report | None = None,
) -> DogStatsd | None:
    """The DogStatsD client for ``--dogstatsd`` (None for ``off``).

    ``target``: as ``dogstatsd_address`` takes it (the client then stops the lookups it started
    when it is shut down, and tells ``report`` about them), or an address several clients share.
    The client aggregates and buffers, and never waits on DNS (see the module doc). Its constant
    tags are ``tags``, then those the ``datadog`` package adds from ``DD_ENV``, ``DD_SERVICE``,
    ``DD_VERSION``, ``DATADOG_TAGS`` and ``DD_ENTITY_ID`` whose key ``tags`` does not have (so
    ``--service web`` with ``DD_SERVICE=api`` tags ``service:web`` only).

    Without ``flush_thread``, nothing is sent in the background: the caller flushes (replay and
    ``check`` do), so the client waits here (up to ``PATIENCE_SECONDS``) for a name's first
    lookup.

    Without ``env_tags``, the constant tags are ``tags`` only; without ``telemetry``, the
    client sends none of the ``datadog.dogstatsd.client.*`` metrics about itself (both for
    ``--metrics-mode gunicorn``, which sends what gunicorn sends and nothing else).
    """
    if isinstance(target, DogStatsdAddress):
        address: DogStatsdAddress | None = target
    else:
        address = dogstatsd_address(target, report=report)
    if address is None:
        return None
    wanted = list(tags)
    from logpipe.metrics.resolved import ResolvedDogStatsd

    client = ResolvedDogStatsd(
        address,
        flush_thread=flush_thread,
        owns_address=address is not target,
        namespace=namespace or None,
        constant_tags=list(wanted),
        disable_telemetry=not telemetry,
    )
    if not flush_thread:
        address.answered.wait(PATIENCE_SECONDS)
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
    """Flush ``client`` (a client ``dogstatsd`` made), stop its thread and close its socket."""
    made_here(client).close()


def flush_soon(client: DogStatsd) -> None:
    """Have ``client`` send what it aggregated and buffered: its own thread is woken when it
    has one (the caller never waits), else it sends now (without waiting on DNS either)."""
    made_here(client).flush_soon()


def made_here(client: DogStatsd) -> ResolvedDogStatsd:
    """``client``, which must be one ``dogstatsd`` made (TypeError otherwise)."""
    from logpipe.metrics.resolved import ResolvedDogStatsd

    if not isinstance(client, ResolvedDogStatsd):
        raise TypeError("a DogStatsD client made by logpipe.metrics.client.dogstatsd is needed")
    return client


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
    from logpipe.metrics.resolved import ResolvedDogStatsd

    twin = ResolvedDogStatsd(
        made_here(statsd).address,
        flush_thread=flush_thread,
        disable_telemetry=True,  # the first client already reports the library's own telemetry
    )
    twin.constant_tags = list(statsd.constant_tags)
    return twin

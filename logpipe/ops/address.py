"""``ADDR:PORT`` as ``--http`` and ``logpipe status --http`` take it: loopback unless an
address is given."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8686  # logpipe status asks here when no --http is given


def parse_address(text: str, *, listen: bool = False) -> tuple[str, int]:
    """``(host, port)`` from ``ADDR:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT`` (the last
    two on 127.0.0.1). Port 0 (any free port) only when ``listen``. Raises ``ValueError``
    with a one-line reason."""
    host, colon, port_text = text.strip().rpartition(":")
    if not colon:
        host, port_text = "", text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ValueError(f"not an IPv6 address in brackets: {text!r}")
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"write an IPv6 address in brackets, as in [::1]:PORT, not {text!r}")
    lowest = 0 if listen else 1
    if not port_text.isascii() or not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise ValueError(
            f"the port must be a number from {lowest} to 65535, in ADDR:PORT: {text!r}"
        )
    return host or LOOPBACK, int(port_text)


def shown(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

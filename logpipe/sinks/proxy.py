"""Which HTTP proxy reaches a URL, and connections through it (HTTP CONNECT tunnels).

The proxy for an ``https`` URL is ``DD_PROXY_HTTPS`` (Datadog's own variable), else
``https_proxy``, else ``HTTPS_PROXY``; for an ``http`` URL ``DD_PROXY_HTTP``, else
``http_proxy``, else ``HTTP_PROXY`` (lower case first, as Python's urllib reads them). A host
listed in ``DD_PROXY_NO_PROXY`` (space separated), ``no_proxy`` or ``NO_PROXY`` (comma
separated) is reached directly: an entry is ``*`` (every host), a host name that also covers
its subdomains (``example.com``, ``.example.com``, ``*.example.com``), an IP address or
network (``10.0.0.0/8``), any of them with ``:PORT`` to match that port only.

Both http and https URLs go through a CONNECT tunnel (``http.client``'s ``set_tunnel``), so the
proxy never sees a request, only TLS (or, for a plain http URL, the bytes of one). Credentials
in the proxy URL (``http://user:pass@proxy:3128``) become a ``Proxy-Authorization: Basic``
header; nothing here ever puts them, or the proxy URL, in a message: a proxy is named by
``host:port`` only (:attr:`Proxy.name`).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

from logpipe.problems import SetupError

HTTPS_VARIABLES = ("DD_PROXY_HTTPS", "https_proxy", "HTTPS_PROXY")
HTTP_VARIABLES = ("DD_PROXY_HTTP", "http_proxy", "HTTP_PROXY")


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens, and its ``Proxy-Authorization`` header value (kept out
    of ``repr``)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """``host:port``, what messages call the proxy (never its credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def proxy_for(url: str | SplitResult, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy ``environ`` names for ``url``, or None to connect directly. A proxy URL that
    cannot be used is a ``SetupError`` naming the variable (not its value: it may hold a
    password)."""
    target = urlsplit(url) if isinstance(url, str) else url
    variables = HTTPS_VARIABLES if target.scheme == "https" else HTTP_VARIABLES
    for variable in variables:
        value = environ.get(variable, "").strip()
        if value:
            break
    else:
        return None
    host = target.hostname or ""
    try:
        port = target.port or (443 if target.scheme == "https" else 80)
    except ValueError:  # not a port: the URL's own check says so
        port = 443 if target.scheme == "https" else 80
    if bypassed(host, port, _no_proxy(environ)):
        return None
    return parse_proxy(value, variable)


def _no_proxy(environ: Mapping[str, str]) -> list[str]:
    entries = environ.get("DD_PROXY_NO_PROXY", "").split()
    entries += (environ.get("no_proxy") or environ.get("NO_PROXY") or "").split(",")
    return [entry.strip() for entry in entries if entry.strip()]


def bypassed(host: str, port: int, entries: list[str]) -> bool:
    """Whether a ``NO_PROXY`` entry covers ``host:port``."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if entry == "*":
            return True
        name, entry_port = _split_port(entry.lower())
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``v6``, ``net/len`` -> (name, port or None)."""
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", entry)
    if bracketed:
        return bracketed[1], int(bracketed[2]) if bracketed[2] else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def parse_proxy(value: str, variable: str) -> Proxy:
    """A proxy URL (``http://[user:pass@]host[:port]``; no scheme means http)."""
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port or 80
    except ValueError:
        raise SetupError(f"{variable} is not a proxy URL (http://[user:pass@]host:port)") from None
    if parts.scheme != "http" or not parts.hostname:
        raise SetupError(
            f"{variable}: only http:// proxies are supported (http://[user:pass@]host:port)"
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port, authorization)


def connection(url: SplitResult, proxy: Proxy | None, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``url``'s host, through a CONNECT tunnel of ``proxy`` if given."""
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    if proxy is None:
        return kind(url.hostname or "", port, timeout=timeout)
    through = kind(proxy.host, proxy.port, timeout=timeout)
    headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
    through.set_tunnel(url.hostname or "", port, headers=headers)
    return through

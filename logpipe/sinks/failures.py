"""One line for a request to an intake (or an API) that failed: the host and the cause.

``explain`` reads a network error (DNS, refused, timeout, TLS, a connection closed or reset
mid-request, a proxy that refused the tunnel or cannot be reached); ``http_failure`` an answer
that was not a success, with the first words of the body the server sent. Neither ever shows
a request's headers (where the API key travels) nor a proxy's credentials: a proxy is named by
``host:port`` (``Proxy.name``).
"""

from __future__ import annotations

import http
import http.client
import re
import socket
import ssl

import orjson

from logpipe.sinks.proxy import Proxy

TIMEOUT = 30.0  # seconds a request waits for an answer, unless told
MAX_DETAIL = 200  # characters of an error body shown
_TUNNEL_REFUSED = re.compile(r"Tunnel connection failed: (\d{3})")
_SSL_NOISE = re.compile(r"^\[[A-Z0-9_: ]+\]\s*|\s*\(_ssl\.c:\d+\)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def explain(
    error: BaseException,
    host: str,
    port: int,
    proxy: Proxy | None = None,
    *,
    timeout: float = TIMEOUT,
) -> str:
    """One line naming ``host:port`` (or the proxy) and what ``error`` says went wrong. Give
    ``proxy`` when the failure came while connecting through it (opening the tunnel): a refused
    or unreachable proxy is then named as the cause."""
    where = _address(host, port)
    via = f" (through proxy {proxy.name})" if proxy is not None else ""
    if proxy is not None:
        refused = _TUNNEL_REFUSED.match(str(error))
        if refused:
            return f"proxy {proxy.name} refused the tunnel (HTTP {refused[1]})"
        if _proxy_unreachable(error):
            return f"proxy {proxy.name} unreachable ({_network_cause(error, proxy.host)})"
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or _ssl_text(error)
        return f"TLS with {where} failed: certificate verify failed: {detail}{via}"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {where} failed: {_ssl_text(error)}{via}"
    if isinstance(error, TimeoutError):
        return f"no answer from {where} within {timeout:g} s{via}"
    if isinstance(error, http.client.RemoteDisconnected):
        return f"{where} closed the connection without answering{via}"
    if isinstance(error, http.client.IncompleteRead):
        return f"{where} closed the connection in the middle of its answer{via}"
    if isinstance(error, ConnectionResetError):
        return f"{where} reset the connection mid-request{via}"
    if isinstance(error, BrokenPipeError):
        return f"{where} closed the connection mid-request{via}"
    if isinstance(error, http.client.HTTPException):
        return f"{where} did not answer in HTTP ({type(error).__name__}){via}"
    if isinstance(error, socket.gaierror):
        return _network_cause(error, host)
    return f"{where}: {_network_cause(error, host)}{via}"


def http_failure(status: int, host: str, body: bytes) -> str:
    """``HTTP 403 from HOST: <the body's error>``: a JSON body's ``errors`` joined, else its
    text, on one line of at most ``MAX_DETAIL`` characters without control characters (the
    status's phrase when the body says nothing)."""
    detail = _body_detail(body)
    if not detail:
        try:
            detail = http.HTTPStatus(status).phrase
        except ValueError:
            detail = ""
    return f"HTTP {status} from {host}" + (f": {detail}" if detail else "")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _proxy_unreachable(error: BaseException) -> bool:
    """Whether a failure while connecting through a proxy is the proxy's: any network error
    but a TLS or HTTP one (those come from the far end, through the tunnel) or a timeout
    (either end may be slow)."""
    return isinstance(error, OSError) and not isinstance(
        error, ssl.SSLError | TimeoutError | http.client.HTTPException
    )


def _network_cause(error: BaseException, host: str) -> str:
    """The cause of a network error, in lower case but for the resolver's own words."""
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}: {error.strerror or error}"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return _one_line(text[:1].lower() + text[1:])


def _ssl_text(error: ssl.SSLError) -> str:
    """What OpenSSL said, without its ``[SSL: CODE]`` prefix and source position."""
    said = [arg for arg in (error.strerror, *error.args[::-1]) if isinstance(arg, str)]
    text = said[0] if said else str(error)
    return _one_line(_SSL_NOISE.sub("", text)) or (error.reason or type(error).__name__).lower()


def _body_detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _cut(_one_line(text))
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        return _cut(_one_line("; ".join(_error_text(item) for item in parsed["errors"])))
    return _cut(_one_line(text))


def _error_text(item: object) -> str:
    """One entry of ``errors``: a string, or a JSON:API error object (title and detail)."""
    if isinstance(item, dict):
        parts = [str(item[key]) for key in ("title", "detail") if item.get(key)]
        return ": ".join(parts) if parts else orjson.dumps(item).decode()
    return str(item)


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3].rstrip() + "..."

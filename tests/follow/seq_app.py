"""Minimal WSGI app for the follow tests: ``200 ok`` for every request (the URL has the seq)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"ok"


def app(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    """Answer anything with a 2-byte body, so access lines end ``200 2 "-" "-"``."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]

"""Minimal WSGI app for the follow tests: ``200 ok`` for every request (the URL has the seq);
``?status=NNN`` answers that status instead."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"ok"


def app(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    """Answer anything with a 2-byte body, so access lines end ``200 2 "-" "-"``."""
    query = environ.get("QUERY_STRING", "")
    status = query.removeprefix("status=") if query.startswith("status=") else "200"
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    start_response(f"{status} Status", headers)
    return [BODY]

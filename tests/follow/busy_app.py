"""WSGI app for the process-check tests: ``/spin?until=PATH`` keeps its worker busy on the CPU
(a sleeping worker uses none, and the check calls a worker working only when its CPU time
moves) until PATH exists, 30 s at most; anything else answers ``200 ok`` at once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

SPIN_LIMIT_S = 30.0


def app(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    body = b"ok"
    if environ.get("PATH_INFO") == "/spin":
        until = parse_qs(environ.get("QUERY_STRING", "")).get("until", [""])[-1]
        deadline = time.monotonic() + SPIN_LIMIT_S
        spins = 0
        while not os.path.exists(until) and time.monotonic() < deadline:
            for _ in range(10_000):
                spins += 1
        body = b"spun"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

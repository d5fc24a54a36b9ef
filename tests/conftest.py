"""Shared test helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Tests (and the logpipe processes they start) keep their disk cache to themselves, cold at first.
os.environ["LOGPIPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="logpipe-test-cache-")

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = FIXTURES / "logs"


def flatten(event: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"http": {"method": "GET"}}`` -> ``{"http.method": "GET"}`` (maps of leaves kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in event.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "queryString":
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@pytest.fixture(scope="session")
def logs_dir() -> Path:
    return LOGS

"""Shared test helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Tests (and the logpipe processes they start) keep their disk cache to themselves, cold at first.
os.environ["LOGPIPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="logpipe-test-cache-")

# Hypothesis profiles. "full" is Hypothesis's default (100 examples a property unless a test
# asks for more); "fast" runs a fifth of every test's examples, so that the fast tier
# (`pytest -m "not integration"`) stays well under 30 s on two cores. The profile is
# $LOGPIPE_TEST_PROFILE, else "fast" when the run is exactly the fast tier, else "full";
# `make test` runs both tiers with "full".
FULL_EXAMPLES = 100
settings.register_profile("full", max_examples=FULL_EXAMPLES)
settings.register_profile("fast", max_examples=FULL_EXAMPLES // 5)
FAST_TIER = "not integration"
PROFILE_ENV = "LOGPIPE_TEST_PROFILE"


def pytest_configure(config: pytest.Config) -> None:
    fast_tier = " ".join(str(config.option.markexpr).split()) == FAST_TIER
    settings.load_profile(os.environ.get(PROFILE_ENV) or ("fast" if fast_tier else "full"))


def pytest_report_header(config: pytest.Config) -> str:
    name, count = settings.get_current_profile_name(), settings.default.max_examples
    return f"hypothesis profile: {name} ({count} examples a property by default)"


def examples(full: int) -> int:
    """``max_examples`` for a test that wants ``full`` examples under the "full" profile: the
    same share of it as the loaded profile's of FULL_EXAMPLES (call it at test module import,
    after pytest_configure has loaded the profile)."""
    return max(10, full * settings.default.max_examples // FULL_EXAMPLES)


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

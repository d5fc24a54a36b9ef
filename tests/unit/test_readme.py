"""README.md's embedding example runs as shown (its ``>>>`` lines, checked by doctest)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedding_example_runs_as_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the example reads tests/fixtures/logs/default from a checkout
    failed, attempted = doctest.testfile(
        str(ROOT / "README.md"), module_relative=False, report=True, verbose=False
    )
    assert attempted > 10 and failed == 0

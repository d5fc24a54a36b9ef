"""Fixtures for the follow-mode harness and scenarios."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.follow.harness import FollowEnv
from tests.follow.restart_helpers import CpuLoad

Report = Callable[[str, object], None]

_REPORTED: list[tuple[str, str, object]] = []


@pytest.fixture
def follow_env(tmp_path: Path) -> Iterator[FollowEnv]:
    """Log, state and output directories under ``tmp_path``; leftover processes killed after."""
    env = FollowEnv(tmp_path)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def cpu_load() -> Iterator[CpuLoad]:
    """Two CPU-bound processes running beside the test's own for its whole length."""
    load = CpuLoad(2).start()
    try:
        yield load
    finally:
        load.stop()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """``report(name, value)``: a measured number, kept in the test's user properties and
    printed in the terminal summary (e.g. duplicates after SIGKILL, measured writer rate)."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))
        _REPORTED.append((request.node.nodeid, name, value))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORTED:
        return
    terminalreporter.section("follow harness measurements")
    for nodeid, name, value in _REPORTED:
        terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {name} = {value}")

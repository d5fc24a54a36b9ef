"""Replay into an intake that refuses: nothing refused counts as delivered, and a re-run sends
exactly what was not accepted; replay's messages for re-runs, globs and --report."""

from __future__ import annotations

from pathlib import Path

import pytest

from logpipe.backfill.run import LEDGER
from logpipe.checkpoints import CheckpointStore
from tests.support.intake import Intake, Slow, Status
from tests.unit.test_replay import LINES, replay, urls, write_series

pytestmark = pytest.mark.integration

KEY = "replay-key"


def text(lines: list[bytes]) -> list[str]:
    return [line.decode().rstrip("\n") for line in lines]


def test_a_refused_batch_stops_the_replay_and_a_rerun_sends_exactly_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = write_series(tmp_path)  # 30 + 30 + 30 + 25 lines, one batch per file
    monkeypatch.setenv("DD_API_KEY", KEY)
    with Intake(api_key=KEY) as intake:
        args = ("--access", "access.log*", "--intake-url", intake.url, "--max-age", "none")
        intake.script(Slow(0), Slow(0), Status(403))  # the third file's batch is refused
        refused = replay(*args, "--quiet", cwd=series)
        assert refused.returncode == 1, refused.stderr
        why, _, said = refused.stderr.decode().splitlines()[-1].partition("; replay stopped: ")
        assert why.startswith("logpipe: ") and "HTTP 403" in why and "refused 30 events" in why
        assert said == (
            "90 events read: 60 accepted, 30 refused, 0 pending; the ledger "
            "stays behind the refused events: a re-run sends them once the intake takes them "
            "(DD_API_KEY, --intake-url)"
        )
        ledger = CheckpointStore(series / "state", file_name=LEDGER).load()
        assert {mark.path: mark.offset for mark in ledger.values()} == {
            "access.log.3.gz": len(b"".join(LINES[0:30])),
            "access.log.2.gz": len(b"".join(LINES[30:60])),
        }
        assert [event["message"] for event in intake.events] == text(LINES[:60])
        assert len(intake.requests) == 3  # nothing sent after the refusal

        again = replay(*args, "--quiet", cwd=series)
        assert again.returncode == 0, again.stderr
        assert again.stderr.decode().splitlines()[-1] == (
            "logpipe: replayed 4 files: 55 events; output: 55 accepted, 0 refused, 0 pending"
        )
        assert [event["message"] for event in intake.events] == text(LINES)  # each once

        third = replay(*args, cwd=series)
        assert third.returncode == 0, third.stderr
        size = len(b"".join(LINES))
        assert third.stderr.decode() == (
            f"logpipe: already delivered: 4 files, {size:,} bytes (ledger in "
            f"{series / 'state'}); --force to send again\n"
        )
        assert len(intake.events) == len(LINES)
        intake.assert_clean()


def test_a_glob_that_matches_nothing_is_named(tmp_path: Path) -> None:
    series = write_series(tmp_path)
    nothing = replay("--access", "archive/*.gz", cwd=series)
    assert nothing.returncode == 2
    assert nothing.stderr.decode() == "logpipe: error: no file matches 'archive/*.gz'\n"
    some = replay("--access", "access.log*", "--error", "error.log*", "--quiet", cwd=series)
    assert len(urls(some)) == len(LINES)
    assert some.stderr.decode().splitlines()[0] == "logpipe: no file matches 'error.log*'"


def test_the_report_folder_is_checked_before_anything_is_sent(tmp_path: Path) -> None:
    series = write_series(tmp_path)
    result = replay("--access", "access.log*", "--report", "reports/r.html", cwd=series)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode() == (
        "logpipe: error: --report reports/r.html: no such folder reports\n"
    )
    assert not (series / "state" / LEDGER).exists()

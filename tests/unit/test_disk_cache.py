"""Start-up: compiled grammars and user-agent details kept on disk between runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logpipe.parsing import disk_cache
from logpipe.parsing.disk_cache import STALE_DAYS, StoredTable, cached

PROBE = """
import sys
import logpipe.cli.main
from logpipe import AccessParser, ErrorParser
event = AccessParser().parse(
    '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.5.0"'
)
ErrorParser().parse("[2026-11-25 04:22:59 +0000] [1] [INFO] hello")
assert event["http"]["useragent_details"]["browser"]["family"] == "curl"
print("lark" in sys.modules, "ua_parser" in sys.modules)
# warm, what parsing never needs (OpenSSL, sockets, TOML, calendar) is not loaded either
if "lark" not in sys.modules and "ua_parser" not in sys.modules:
    assert not {"_hashlib", "socket", "tomllib", "calendar"} & sys.modules.keys()
"""


def probe(cache: Path) -> str:
    env = {**os.environ, "LOGPIPE_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, timeout=60, check=True
    )
    return result.stdout.decode().strip()


@pytest.mark.integration
def test_a_warm_start_needs_neither_lark_nor_ua_parser(tmp_path: Path) -> None:
    assert probe(tmp_path) == "True True"  # cold: grammars compiled, user agent parsed
    assert probe(tmp_path) == "False False"  # warm: both read from the cache


@pytest.mark.integration
def test_an_unwritable_cache_only_costs_time(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert probe(blocked / "cache") == "True True"
    assert probe(blocked / "cache") == "True True"


def test_cached_recomputes_when_the_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGPIPE_CACHE_DIR", str(tmp_path))
    calls = []
    assert cached("thing", "v1", lambda: calls.append(1) or [1]) == [1]
    assert cached("thing", "v1", lambda: calls.append(1) or [2]) == [1]
    assert cached("thing", "v2", lambda: calls.append(1) or [3]) == [3]
    assert len(calls) == 2
    cached("other", "v1", lambda: [1])
    (stored,) = tmp_path.glob("other-*.json")
    stored.write_text("{not json")
    assert cached("other", "v1", lambda: [4]) == [4]


def test_stored_table_keeps_the_newest_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGPIPE_CACHE_DIR", str(tmp_path))
    table = StoredTable("t", "1", max_size=2)
    for key in "abc":
        table.put(key, {"k": key})
    table.save()
    again = StoredTable("t", "1", max_size=2)
    assert [again.get(key) for key in "abc"] == [None, {"k": "b"}, {"k": "c"}]


def test_stored_table_does_not_keep_overlong_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGPIPE_CACHE_DIR", str(tmp_path))
    table = StoredTable("t", "1", max_key_chars=5)
    assert table.put("x" * 6, {"k": 1}) == {"k": 1}
    assert table.put("short", {"k": 2}) == {"k": 2}
    table.save()
    again = StoredTable("t", "1", max_key_chars=5)
    assert [again.get("x" * 6), again.get("short")] == [None, {"k": 2}]


def test_a_file_holding_another_version_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collision = tmp_path / "one.json"  # two versions whose checksums are the same
    monkeypatch.setattr("logpipe.parsing.disk_cache._path", lambda name, version: collision)
    assert cached("thing", "v1", lambda: [1]) == [1]
    assert cached("thing", "v2", lambda: [2]) == [2]
    assert cached("thing", "v2", lambda: [3]) == [2]


def test_versions_not_written_for_a_while_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGPIPE_CACHE_DIR", str(tmp_path))
    stale, recent = time.time() - (STALE_DAYS + 1) * 86_400, time.time() - 86_400
    for version, written in (("old", stale), ("other install", recent), ("older", stale)):
        cached("thing", version, lambda: [1])
        os.utime(disk_cache._path("thing", version), (written, written))
    cached("other", "v1", lambda: [2])
    os.utime(disk_cache._path("other", "v1"), (stale, stale))  # another name: not this one's
    cached("thing", "new", lambda: [3])
    kept = {disk_cache._path("thing", version) for version in ("other install", "new")}
    assert set(tmp_path.glob("thing-*.json")) == kept
    assert disk_cache._path("other", "v1").exists()

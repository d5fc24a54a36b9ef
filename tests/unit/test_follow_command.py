"""The follow command: config file, status line, log level (a real process, real files)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

LINE = b'127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'


def start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    with open(cwd / "stderr.txt", "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "logpipe", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def stderr_of(cwd: Path) -> str:
    return (cwd / "stderr.txt").read_text()


def wait_for(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.integration
def test_config_file_status_line_and_quiet_log_level(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(LINE * 3)
    (tmp_path / "logpipe.toml").write_text(
        f'access = ["{log}"]\nstate-dir = "{tmp_path / "state"}"\n'
        f'output = "file:{tmp_path / "out.ndjson"}"\nstart_at = "beginning"\n'
        'service = "shop"\nstatus-interval = 1\nlog-level = "warning"\n'
    )
    process = start("--config", "logpipe.toml", "--tags", "team:web", cwd=tmp_path)
    out = tmp_path / "out.ndjson"
    wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") == 3)
    wait_for(lambda: "logpipe: status: lines/s=" in stderr_of(tmp_path))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {(event["service"], event["ddtags"]) for event in events} == {("shop", "team:web")}
    lines = stderr_of(tmp_path).splitlines()
    assert any(
        "read=3 delivered=3 refused=0 pending=0 behind_bytes=0 unreadable=0 parse_errors=0" in line
        for line in lines
    ), lines
    assert not any("opened" in line for line in lines), lines  # quiet: no file notices


@pytest.mark.integration
def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("nonsense = 1\n")
    assert start("--config", "bad.toml", cwd=tmp_path).wait(timeout=20) == 2
    assert stderr_of(tmp_path).strip() == (
        "logpipe: error: --config bad.toml: unknown key 'nonsense'"
    )
    (tmp_path / "typed.toml").write_text('start-at = "middle"\n')
    assert start("--config", "typed.toml", cwd=tmp_path).wait(timeout=20) == 2
    assert stderr_of(tmp_path).strip() == (
        "logpipe: error: --config typed.toml: start-at must be one of end, beginning"
    )


@pytest.mark.integration
def test_exit_idle_drains_the_bundled_logs_and_exits(tmp_path: Path) -> None:
    logs = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "default"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "logpipe",
            "--access",
            str(logs / "access.log"),
            "--error",
            str(logs / "error.log"),
            "--state-dir",
            str(tmp_path / "state"),
            "--start-at",
            "beginning",
            "--exit-idle",
            "0.5",
            "--dogstatsd",
            "off",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    access = [event for event in events if event["logger"]["name"] == "gunicorn.access"]
    assert len(access) == len((logs / "access.log").read_bytes().splitlines())
    assert sum("error" in event for event in events) == 8


def test_config_numbers_for_seconds_options(tmp_path: Path) -> None:
    from logpipe.cli.config import ConfigError, apply_config
    from logpipe.cli.follow import build_parser

    (tmp_path / "numbers.toml").write_text("exit-idle = 0.5\nprocess-interval = 2\n")
    parser = build_parser()
    apply_config(parser, str(tmp_path / "numbers.toml"))
    args = parser.parse_args(["--access", "x.log"])
    assert (args.exit_idle, args.process_interval) == (0.5, 2.0)
    (tmp_path / "flag.toml").write_text("exit-idle = true\n")
    with pytest.raises(ConfigError, match="exit-idle must be a number"):
        apply_config(build_parser(), str(tmp_path / "flag.toml"))

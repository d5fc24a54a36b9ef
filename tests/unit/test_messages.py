"""logpipe's own messages: ``--version`` on every command, ``--log-format text|json``, and one
``--log-level debug`` line per intake request."""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import logpipe
from logpipe.cli.commands import COMMANDS as REGISTRY
from logpipe.cli.commands import FOLLOW
from logpipe.cli.main import main
from logpipe.cli.outputs import OutputSettings, open_sink
from logpipe.cli.runtime import say_error, set_log_format, warn
from logpipe.sinks import Attempt
from tests.support.intake import Intake, Status

KEY = "0123456789abcdef0123456789abcdef"
ACCESS = '127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'
COMMANDS = [command.name for command in REGISTRY if command.name != FOLLOW]


def test_every_command_is_known_here() -> None:
    assert sorted(COMMANDS) == [
        "check",
        "detect",
        "parse",
        "replay",
        "resend",
        "status",
        "validate",
    ]


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_version_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--version"])
    assert exited.value.code == 0
    assert capsys.readouterr() == (f"logpipe {logpipe.__version__}\n", "")
    assert logpipe.__version__ == "0.1.0"


@pytest.fixture
def json_messages() -> Iterator[None]:
    set_log_format("json")
    yield
    set_log_format("text")


def test_text_messages_are_as_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    warn("opened /var/log/x.log", level="info")
    warn("status: lines/s=3")
    say_error("state dir /x is in use by another logpipe")
    assert capsys.readouterr().err == (
        "logpipe: opened /var/log/x.log\n"
        "logpipe: status: lines/s=3\n"
        "logpipe: error: state dir /x is in use by another logpipe\n"
    )


def test_json_messages_are_one_object_per_line(
    json_messages: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    warn("opened /var/log/x.log", level="info")
    warn("status: lines/s=3")
    warn("debug: intake request: 3 events")
    warn('cannot follow /x: "permission denied"')
    say_error("state dir /x is in use by another logpipe")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("info", "opened /var/log/x.log"),
        ("info", "status: lines/s=3"),
        ("debug", "intake request: 3 events"),
        ("warning", 'cannot follow /x: "permission denied"'),
        ("error", "state dir /x is in use by another logpipe"),
    ]
    for line in lines:
        assert list(line) == ["timestamp", "level", "logger", "message"]
        assert line["logger"] == "logpipe"
        assert line["timestamp"].endswith("Z")
        stamp = datetime.datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == datetime.timedelta(0)
        assert before - datetime.timedelta(seconds=1) <= stamp


def test_a_setup_error_after_the_options_is_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(
            [
                "--log-format",
                "json",
                "--access",
                str(tmp_path / "a.log"),
                "--multiline-pattern",
                "(",
            ]
        )
    finally:
        set_log_format("text")
    assert status == 2
    (line,) = capsys.readouterr().err.splitlines()
    said = orjson.loads(line)
    assert (said["level"], said["message"]) == (
        "error",
        "--multiline-pattern: missing ), unterminated subpattern at position 0",
    )


@pytest.mark.integration
def test_open_sink_shows_each_request_to_every_hook_and_says_it_in_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DD_API_KEY", KEY)
    monkeypatch.delenv("LOGPIPE_API_URL", raising=False)
    seen: list[Attempt] = []
    said: list[str] = []
    with Intake(KEY) as intake:
        intake.script(Status(503))
        settings = OutputSettings(
            "datadog", intake.url, tmp_path, api_url=intake.api_url, debug=True
        )
        sink = open_sink(settings, threading.Event(), said.append, on_attempt=[seen.append])
        try:
            sink.send_ndjson(b'{"message":"x"}\n' * 2500, [("f", n) for n in range(2500)])
            sink.drain()
        finally:
            sink.close()
        requests = intake.requests
    assert [attempt.status for attempt in seen] == [record.status for record in requests]
    assert [attempt.status for attempt in seen] == [503, 202, 202, 202]
    assert [attempt.events for attempt in seen] == [1000, 1000, 1000, 500]
    debug = [line for line in said if line.startswith("debug: ")]
    assert len(debug) == 4
    for line, attempt in zip(debug, seen, strict=True):
        assert line.startswith(
            f"debug: intake request: {attempt.events} events, {attempt.body_bytes} bytes "
            f"gzipped: HTTP {attempt.status} in "
        ), line
    assert all(KEY not in line for line in said)


@pytest.mark.integration
def test_follow_in_json_with_debug_says_each_request_as_a_json_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(ACCESS * 2500)
    with Intake(KEY) as intake:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "logpipe", "--access", str(log)),
                *("--start-at", "beginning", "--exit-idle", "1", "--dogstatsd", "off"),
                *("--output", "datadog", "--intake-url", intake.url, "--api-url", intake.api_url),
                *("--state-dir", str(tmp_path / "state"), "--log-level", "debug"),
                *("--log-format", "json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={"DD_API_KEY": KEY, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            check=False,
        )
        requests = intake.requests
        events = len(intake.events)
    assert done.returncode == 0, done.stderr
    assert events == 2500
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    requests_said = [line for line in lines if line["message"].startswith("intake request: ")]
    assert [line["level"] for line in requests_said] == ["debug"] * len(requests)
    assert len(requests) >= 3
    assert sum(int(line["message"].split()[2]) for line in requests_said) == 2500
    assert {line["level"] for line in lines if line["message"].startswith("opened ")} == {"info"}
    assert KEY not in done.stderr

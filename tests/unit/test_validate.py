"""``logpipe validate``: one line per check, a line summing up, exit status 0 or 2 exactly.

The fast tests run it in process on real files with no network (``--output stdout``,
``--dogstatsd off``); those marked integration open sockets (the intake stand-in, a closed
port, a UDP listener, DNS) or drop root's permission bypass in a process of their own."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logpipe.cli.validate import network, run_validate
from logpipe.cli.validate.report import Report
from tests.support.connect_proxy import ConnectProxy
from tests.support.intake import Intake

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
KEY = "0123456789abcdef0123456789abcdef"
ACCESS = '127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'
OFFLINE = ("--output", "stdout", "--dogstatsd", "off")


@pytest.fixture(autouse=True)
def no_datadog_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DD_API_KEY", "DD_SITE", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT", "LOGPIPE_API_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "DD_PROXY_HTTPS"):
        monkeypatch.delenv(name, raising=False)


def validate(*arguments: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = run_validate(list(arguments), out=out)
    return status, out.getvalue().splitlines()


def state(tmp_path: Path) -> tuple[str, str]:
    return ("--state-dir", str(tmp_path / "state"))


def test_a_good_setup_is_all_ok_and_exit_0(tmp_path: Path) -> None:
    config = tmp_path / "logpipe.toml"
    config.write_text(
        f'access = ["{LOGS / "uvicorn" / "access.log"}"]\n'
        f'error = ["{LOGS / "default" / "error.log"}"]\n'
        f'state-dir = "{tmp_path / "state"}"\noutput = "stdout"\ndogstatsd = "off"\n'
        'service = "shop"\n'
    )
    status, lines = validate("--config", str(config), "--hostname", "web-1")
    assert lines == [
        f"ok    config {config}: 6 keys",
        "ok    options: access formats detected per file; error layout detected per file; "
        "0 processing rules; service shop, host web-1",
        f"ok    input {LOGS / 'uvicorn' / 'access.log'}: access log, uvicorn's access line "
        "format, 135 of 135 lines parse",
        f"ok    input {LOGS / 'default' / 'error.log'}: error log, gunicorn default (with "
        "Flask-style app records) layout, 20 of 20 records parse",
        "ok    output stdout: NDJSON on standard output",
        "ok    dogstatsd off: no metrics are sent",
        f"ok    state dir {tmp_path / 'state'}: does not exist yet; will be created in {tmp_path}",
        "7 checks: 7 ok, 0 warnings, 0 failed: logpipe can start",
    ]
    assert status == 0
    assert not (tmp_path / "state").exists()  # validate creates nothing


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("status-interval = 'often'\n", "status-interval must be an integer"),
        ("access = [\n", "Invalid value"),
    ],
)
def test_a_bad_config_file_fails_and_the_rest_is_still_checked(
    tmp_path: Path, toml: str, said: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    log = tmp_path / "access.log"
    log.write_text(ACCESS * 3)
    status, lines = validate("--config", str(config), "--access", str(log), *OFFLINE)
    assert lines[0].startswith(f"FAIL  config {config}: {said}"), lines
    assert lines[2] == (
        f"ok    input {log}: access log, gunicorn's default format, 3 of 3 lines parse"
    )
    assert lines[-1] == "6 checks: 5 ok, 0 warnings, 1 failed: fix the FAIL lines"
    assert status == 2


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--multiline-pattern", "("), "--multiline-pattern: missing ), unterminated subpattern"),
        (("--access-format", "%(h)x"), "--access-format: unsupported atom syntax '%(h)x'"),
        (("--timezone", "Mars/Olympus"), "--timezone: "),
        (("--error-datefmt", "%Y"), "--error-datefmt needs --error-format FMT"),
        (("--exclude-at-match", "["), "exclude_at_match rule '--exclude-at-match': bad pattern"),
        (("--shutdown-timeout", "0"), "--shutdown-timeout must be positive"),
    ],
)
def test_each_bad_option_is_a_failed_line(
    tmp_path: Path, options: tuple[str, str], said: str
) -> None:
    log = tmp_path / "access.log"
    log.write_text(ACCESS)
    status, lines = validate("--access", str(log), *options, *OFFLINE, *state(tmp_path))
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(f"FAIL  options: {said}"), lines
    assert status == 2


def test_a_command_line_argparse_refuses_is_one_failed_line() -> None:
    status, lines = validate("--no-such-option")
    assert lines == [
        "FAIL  options: unrecognized arguments: --no-such-option",
        "1 check: 0 ok, 0 warnings, 1 failed: fix the FAIL lines",
    ]
    assert status == 2


def test_nothing_to_follow_fails(tmp_path: Path) -> None:
    status, lines = validate(*OFFLINE, *state(tmp_path))
    assert "FAIL  inputs: nothing to follow: give --access PATH and/or --error PATH" in lines
    assert status == 2


def test_inputs_missing_not_regular_and_a_wildcard_matching_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.log"
    pattern = tmp_path / "none-*.log"
    status, lines = validate(
        "--access", str(missing), "--access", str(tmp_path), "--error", str(pattern),
        *OFFLINE, *state(tmp_path),
    )  # fmt: skip
    assert lines[1:4] == [
        f"FAIL  input {missing}: does not exist (follow mode would wait for it to appear)",
        f"FAIL  input {tmp_path}: is a directory, not a regular file",
        f"warn  input {pattern}: no file matches yet (follow mode waits for one to appear)",
    ]
    assert lines[-1] == "7 checks: 4 ok, 1 warning, 2 failed: fix the FAIL lines"
    assert status == 2


def test_a_wildcard_is_expanded_and_warnings_alone_exit_0(tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "c.log.gz"):
        (tmp_path / name).write_text(ACCESS * 2)
    (tmp_path / "c.log").write_text(ACCESS + "not an access line\n")
    status, lines = validate(
        "--access", str(tmp_path / "*.log*"), "--exclude", "b.*", *OFFLINE, *state(tmp_path)
    )
    assert lines[1:3] == [
        f"ok    input {tmp_path / 'a.log'}: access log, gunicorn's default format, "
        "2 of 2 lines parse",
        f"warn  input {tmp_path / 'c.log'}: access log, gunicorn's default format, "
        "1 of 2 lines parse (commonest failure, 1 line: access line: no match at column 5, "
        "expected %(l)s)",
    ]
    assert lines[-1] == "6 checks: 5 ok, 1 warning, 0 failed: logpipe can start"
    assert status == 0


def test_a_file_in_a_format_that_does_not_parse_fails_with_the_count(tmp_path: Path) -> None:
    junk = tmp_path / "junk.log"
    junk.write_text("".join(f"something else entirely {n}\n" for n in range(300)))
    mostly = tmp_path / "mostly.log"
    mostly.write_text(ACCESS * 3 + "".join(f"odd {n}\n" for n in range(7)))
    declared = tmp_path / "declared.log"
    declared.write_text(ACCESS * 250)
    status, lines = validate(
        "--access", str(junk), "--access", str(mostly), *OFFLINE, *state(tmp_path)
    )
    assert lines[1] == (
        f"FAIL  input {junk}: no access format parses any of its first 200 lines (logpipe "
        "detect FILE shows what was tried; give --access-format FMT)"
    )
    assert lines[2] == (
        f"FAIL  input {mostly}: access log, gunicorn's default format, 3 of 10 lines parse "
        "(commonest failure, 7 lines: access line: no match at column 5, expected %(l)s)"
    )
    assert status == 2
    status, lines = validate(
        "--access", str(declared), "--access-format", '%(h)s "%(r)s" %(s)s',
        *OFFLINE, *state(tmp_path),
    )  # fmt: skip
    assert lines[1].startswith(
        f"FAIL  input {declared}: access log, --access-format '%(h)s \"%(r)s\" %(s)s', "
        "0 of 200 lines parse (commonest failure, 200 lines: "
    ), lines[1]
    assert status == 2


def test_an_error_log_in_a_declared_layout_that_does_not_fit(tmp_path: Path) -> None:
    status, lines = validate(
        "--error", str(LOGS / "jsonlog" / "error.log"), "--error-format",
        "%(levelname)s:%(name)s:%(message)s", *OFFLINE, *state(tmp_path),
    )  # fmt: skip
    assert lines[1].startswith(
        f"FAIL  input {LOGS / 'jsonlog' / 'error.log'}: error log, --error-format "
        "'%(levelname)s:%(name)s:%(message)s', 0 of "
    ), lines[1]
    assert status == 2


def test_an_empty_input_is_ok(tmp_path: Path) -> None:
    empty = tmp_path / "access.log"
    empty.touch()
    status, lines = validate("--access", str(empty), *OFFLINE, *state(tmp_path))
    assert lines[1] == (
        f"ok    input {empty}: access log, empty (its format is detected once lines arrive)"
    )
    assert status == 0


def test_output_file_folder_and_state_dir_that_is_not_a_directory(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(ACCESS)
    not_dir = tmp_path / "plain-file"
    not_dir.write_text("")
    out = tmp_path / "nowhere" / "events.ndjson"
    status, lines = validate(
        "--access", str(log), "--output", f"file:{out}", "--dogstatsd", "off",
        "--state-dir", str(not_dir),
    )  # fmt: skip
    assert lines[2:5] == [
        f"FAIL  output file:{out}: folder {out.parent} does not exist",
        "ok    dogstatsd off: no metrics are sent",
        f"FAIL  state dir {not_dir}: not a directory",
    ]
    assert status == 2
    status, lines = validate(
        "--access", str(log), "--output", f"file:{tmp_path / 'events.ndjson'}",
        "--dogstatsd", "off", "--state-dir", str(not_dir / "below"),
    )  # fmt: skip
    assert lines[2:5] == [
        f"ok    output file:{tmp_path / 'events.ndjson'}: folder {tmp_path} writable",
        "ok    dogstatsd off: no metrics are sent",
        f"FAIL  state dir {not_dir / 'below'}: cannot be created: {not_dir} is not a directory",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["access.log", "plain-file"]


def test_a_state_dir_a_running_logpipe_holds_is_ok_with_a_note(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(ACCESS)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    status, lines = validate("--access", str(log), *OFFLINE, *state(tmp_path))
    assert lines[4] == f"ok    state dir {state_dir}: writable, no checkpoints yet"
    with open(state_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as follow mode holds it
        status, lines = validate("--access", str(log), *OFFLINE, *state(tmp_path))
        assert lines[4] == (
            f"ok    state dir {state_dir}: writable, no checkpoints yet (in use by a running "
            "logpipe)"
        )
        assert status == 0
    assert sorted(path.name for path in state_dir.iterdir()) == ["lock"]


def test_a_resolver_that_never_answers_does_not_hang_validate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    never = threading.Event()

    def stuck(*args: object, **kwargs: object) -> object:
        never.wait(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(network, "RESOLVE_SECONDS", 0.1)
    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    report = Report(io.StringIO())
    network.check_dogstatsd(report, "agent.example:8125")
    never.set()
    assert report._out.getvalue() == (  # type: ignore[attr-defined]
        "FAIL  dogstatsd agent.example:8125: no answer from the resolver for agent.example "
        "within 0.1 s\n"
    )


# -- with sockets ----------------------------------------------------------------------------


@pytest.fixture
def intake() -> Iterator[Intake]:
    with Intake(KEY) as started:
        yield started


def datadog_lines(
    intake_url: str, api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> tuple[int, list[str]]:
    if key:
        monkeypatch.setenv("DD_API_KEY", key)
    log = tmp_path / "access.log"
    log.write_text(ACCESS)
    status, lines = validate(
        "--access", str(log), "--output", "datadog", "--intake-url", intake_url,
        "--api-url", api_url, "--dogstatsd", "off", *state(tmp_path),
    )  # fmt: skip
    assert all(key not in line for line in lines if key)
    return status, lines[2:-3]


@pytest.mark.integration
def test_a_reachable_intake_and_an_accepted_key(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, lines = datadog_lines(intake.url, intake.api_url, tmp_path, monkeypatch, KEY)
    assert lines == [
        f"ok    intake http://127.0.0.1:{intake.port}: reachable directly",
        f"ok    DD_API_KEY: accepted by {intake.api_url}",
    ]
    assert status == 0
    assert intake.validations == [True] and intake.requests == []  # no logs were sent


@pytest.mark.integration
def test_a_key_the_api_refuses_fails(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, lines = datadog_lines(intake.url, intake.api_url, tmp_path, monkeypatch, "wrong-key")
    assert lines == [
        f"ok    intake http://127.0.0.1:{intake.port}: reachable directly",
        "FAIL  DD_API_KEY: refused: HTTP 403 from 127.0.0.1: Forbidden",
    ]
    assert status == 2


@pytest.mark.integration
def test_a_refused_intake_and_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    status, lines = datadog_lines(f"{url}/api/v2/logs", url, tmp_path, monkeypatch, "")
    assert lines == [
        "FAIL  output datadog: DD_API_KEY is not set (the API key goes there)",
        f"FAIL  intake {url}: 127.0.0.1:{port}: connection refused",
    ]
    assert status == 2


@pytest.mark.integration
def test_dogstatsd_reachable_unresolvable_and_unix(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as agent:
        agent.bind(("127.0.0.1", 0))
        agent.settimeout(5)
        port = agent.getsockname()[1]
        report = Report(io.StringIO())
        network.check_dogstatsd(report, f"localhost:{port}")
        assert agent.recv(100) == b""  # an empty datagram, nothing DogStatsD would count
    network.check_dogstatsd(report, "agent.invalid:8125")
    path = tmp_path / "dsd.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        unix.bind(str(path))
        network.check_dogstatsd(report, f"unix://{path}")
    network.check_dogstatsd(report, f"unix://{tmp_path / 'none.socket'}")
    lines = report._out.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0] == (
        f"ok    dogstatsd localhost:{port}: resolves to 127.0.0.1; UDP datagrams can be sent"
    )
    assert lines[1].startswith("FAIL  dogstatsd agent.invalid:8125: cannot resolve agent.invalid: ")
    assert lines[2:] == [
        f"ok    dogstatsd unix://{path}: a datagram socket that takes connections",
        f"FAIL  dogstatsd unix://{tmp_path / 'none.socket'}: no such file or directory",
    ]


def without_root_bypass() -> list[str]:
    """``logpipe validate`` in a process without CAP_DAC_OVERRIDE: as root, modes apply."""
    if os.geteuid() != 0:
        return [sys.executable, "-m", "logpipe", "validate"]
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission bypass")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--",
            sys.executable, "-m", "logpipe", "validate"]  # fmt: skip


@pytest.mark.integration
def test_an_unreadable_input_and_an_unwritable_state_dir_fail(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(ACCESS)
    log.chmod(0)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state_dir.chmod(0o500)
    try:
        done = subprocess.run(
            [*without_root_bypass(), "--access", str(log), *OFFLINE, "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        state_dir.chmod(0o700)
    lines = done.stdout.splitlines()
    assert lines[1] == f"FAIL  input {log}: permission denied", done.stdout + done.stderr
    assert lines[4] == f"FAIL  state dir {state_dir}: not writable: permission denied"
    assert lines[-1] == "5 checks: 3 ok, 0 warnings, 2 failed: fix the FAIL lines"
    assert (done.returncode, done.stderr) == (2, "")


@pytest.mark.integration
def test_the_intake_is_reached_through_the_proxy_and_a_refusal_names_it(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy(("user", "s3cret")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(("user", "s3cret")))
        status, lines = datadog_lines(intake.url, intake.api_url, tmp_path, monkeypatch, KEY)
        assert lines == [
            f"ok    intake http://127.0.0.1:{intake.port}: reachable through proxy "
            f"127.0.0.1:{proxy.port}",
            f"ok    DD_API_KEY: accepted by {intake.api_url}",
        ]
        assert status == 0 and len(proxy.tunnels) == 2
        monkeypatch.setenv("HTTP_PROXY", proxy.url(("user", "wrong")))
        status, lines = datadog_lines(intake.url, intake.api_url, tmp_path, monkeypatch, KEY)
        port = proxy.port
    assert lines == [
        f"FAIL  intake http://127.0.0.1:{intake.port}: proxy 127.0.0.1:{port} refused the "
        "tunnel (HTTP 407)"
    ]
    assert status == 2
    assert all("s3cret" not in line for line in lines)

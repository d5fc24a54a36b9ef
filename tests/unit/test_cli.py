"""The command line, run as users run it: a real process, real files."""

from __future__ import annotations

import gzip
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from tests.conftest import LOGS

# Integration tier: every test runs the logpipe CLI (or a wheel build) as a process.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def logpipe(
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logpipe", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def test_parse_access_file_to_ndjson() -> None:
    path = LOGS / "default" / "access.log"
    result = logpipe("parse", "--kind", "access", str(path))
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    lines = path.read_bytes().split(b"\n")[:-1]
    assert len(events) == len(lines)
    offset = 0
    for event, line in zip(events, lines, strict=True):
        assert event["logpipe"] == {"path": str(path), "offset": offset}
        offset += len(line) + 1


def test_parse_error_records_from_stdin() -> None:
    data = (LOGS / "default" / "error.log").read_bytes()
    result = logpipe("parse", "--kind", "error", "-", stdin=data)
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert sum("error" in event for event in events) == 8
    assert "\n".join(event["message"] for event in events).encode() + b"\n" == data


def test_custom_format_and_multiline_pattern() -> None:
    fmt = (LOGS / "durations" / "format.txt").read_text().strip()
    result = logpipe(
        "parse", "--kind", "access", "--access-format", fmt, str(LOGS / "durations" / "access.log")
    )
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert all("duration" in event and "parse_error" not in event["logpipe"] for event in events)
    records = logpipe(
        "parse", "--kind", "error", "--multiline-pattern", "^STARTS", "-", stdin=b"a\nSTARTS b\nc\n"
    )
    assert [orjson.loads(line)["message"] for line in records.stdout.splitlines()] == [
        "a",
        "STARTS b\nc",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["parse", "--kind", "access", "--access-format", "%(h)d", "-"],
            "logpipe: error: --access-format: unsupported atom syntax '%(h)d' at column 1: "
            "use %(name)s",
        ),
        (
            ["parse", "--kind", "access", "/nonexistent/access.log"],
            "logpipe: error: cannot read /nonexistent/access.log: No such file or directory",
        ),
        (
            ["parse", "--kind", "error", "--multiline-pattern", "(", "-"],
            "logpipe: error: --multiline-pattern: missing ), unterminated subpattern at position 0",
        ),
        (["parse"], "logpipe: error: the following arguments are required: --kind"),
        (
            ["parse", "--kind", "nope"],
            "logpipe: error: argument --kind: invalid choice: 'nope' (choose from ",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = logpipe(*args, stdin=b"")
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(message)
    assert result.stdout == b""


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "logpipe"
    result = subprocess.run([str(script), "--help"], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0
    assert b"parse" in result.stdout


def test_wheel_ships_the_grammars_and_works_outside_the_checkout(tmp_path: Path) -> None:
    """Build the wheel, unpack it elsewhere, and parse with only the wheel on the path."""
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr.decode()
    (wheel,) = (tmp_path / "dist").glob("logpipe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "logpipe/grammars/access_atoms.lark" in names
        assert "logpipe/grammars/error_record.lark" in names
        assert "logpipe/py.typed" in names
        archive.extractall(tmp_path / "site")
    isolated = tmp_path / "elsewhere"
    isolated.mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    result = logpipe(
        "parse",
        "--kind",
        "access",
        "-",
        cwd=isolated,
        env=env,
        stdin=(LOGS / "default" / "access.log").read_bytes(),
    )
    assert result.returncode == 0, result.stderr
    first = orjson.loads(result.stdout.splitlines()[0])
    assert first["http"]["status_code"] == 200
    probe = subprocess.run(
        [sys.executable, "-c", "import logpipe.parsing.grammars as g; print(g.grammar_dir())"],
        capture_output=True,
        cwd=isolated,
        env=env,
        timeout=60,
        check=False,
    )
    assert probe.stdout.decode().strip() == str(tmp_path / "site" / "logpipe" / "grammars")


def test_events_carry_service_hostname_and_tags() -> None:
    line = (LOGS / "default" / "access.log").read_bytes().split(b"\n")[0] + b"\n"
    env = {"DD_SERVICE": "shop", "DD_ENV": "prod", "DD_TAGS": "team:web tier:1", "PATH": "/bin"}
    result = logpipe(
        "parse",
        "--kind",
        "access",
        "--tags",
        "zone:a,team:web",
        "--hostname",
        "web-1",
        "-",
        stdin=line,
        env=env,
    )
    event = orjson.loads(result.stdout)
    assert (event["service"], event["hostname"]) == ("shop", "web-1")
    assert event["ddtags"] == "team:web,tier:1,zone:a,env:prod"
    assert event["ddsource"] == "gunicorn"


def test_follow_refuses_a_state_dir_in_use_and_bad_usage(tmp_path: Path) -> None:
    import fcntl

    state = tmp_path / "state"
    state.mkdir()
    with open(state / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = logpipe("--access", str(tmp_path / "a.log"), "--state-dir", str(state))
    assert result.returncode == 2
    assert (
        result.stderr.decode().strip()
        == f"logpipe: error: state dir {state} is in use by another logpipe"
    )
    nothing = logpipe("--state-dir", str(state))
    assert nothing.stderr.decode().strip() == (
        "logpipe: error: nothing to follow: give --access PATH and/or --error PATH"
    )
    bad_output = logpipe("--access", "x.log", "--state-dir", str(state), "--output", "kafka")
    assert bad_output.returncode == 2
    assert b"--output must be stdout, file:PATH or datadog" in bad_output.stderr


def test_commands_other_than_replay_do_not_load_its_worker_machinery() -> None:
    """Start-up: ``import logpipe`` (and the CLI) leaves replay's module, its engines and
    multiprocessing for the replay command and ``logpipe.replay``."""
    code = (
        "import sys, logpipe, logpipe.cli.main; "
        "print(sorted(m for m in ('logpipe.backfill.run', 'logpipe.backfill.engines', "
        "'concurrent.futures.process') if m in sys.modules)); "
        "next(logpipe.replay(), None); print('logpipe.backfill.run' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines() == ["[]", "True"], result.stderr


def test_replay_workers_do_not_load_the_datadog_package() -> None:
    """A worker process imports logpipe.backfill.work (the forkserver preloads it): counting
    metrics there needs no DogStatsD client, so the datadog package (~70 ms) stays out."""
    code = "import sys, logpipe.backfill.work; print('datadog' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines() == ["False"], result.stderr


@pytest.mark.parametrize("damage", [b"\x1f\x8bnot gzip at all", "cut"])
def test_a_damaged_gzip_input_is_one_line_and_exit_1(tmp_path: Path, damage: bytes | str) -> None:
    data = gzip.compress((LOGS / "default" / "access.log").read_bytes())
    archive = tmp_path / "access.log.gz"
    archive.write_bytes(data[: len(data) // 2] if damage == "cut" else damage)  # type: ignore[arg-type]
    for args in (["parse", "--kind", "access", str(archive)], ["detect", str(archive)]):
        result = logpipe(*args)
        assert result.returncode == 1
        assert result.stderr.decode().startswith(f"logpipe: error: cannot read {archive} past its")
        assert b"Traceback" not in result.stderr and result.stderr.count(b"\n") == 1

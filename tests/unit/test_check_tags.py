"""The process check's tags, as the integration's: no ``service`` unless given, the hostname on
every metric and service check, tags per process name; and gunicorn's version in its output."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from logpipe.checks.gunicorn_processes import (
    ProcessStatus,
    check_tags,
    gunicorn_version,
    proc_tags,
    send,
)
from logpipe.cli.check import run_check
from logpipe.problems import SetupError
from tests.unit.test_metrics import clean_env, receiver, target

__all__ = ["clean_env", "receiver"]  # fixtures, used by name

WEB = ProcessStatus("web", (10,), working=1, idle=2)
GONE = ProcessStatus("gone", why="no process is titled 'gunicorn: master [gone]'")


class _Statsd:
    """What ``send`` calls on a client, recorded."""

    namespace = ""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str], str | None]] = []

    def service_check(
        self,
        name: str,
        status: int,
        tags: list[str] | None = None,
        hostname: str | None = None,
        message: str | None = None,
    ) -> None:
        self.calls.append(("sc", name, list(tags or []), hostname))

    def gauge(self, name: str, value: float, tags: list[str] | None = None) -> None:
        hosts = [tag.removeprefix("host:") for tag in tags or [] if tag.startswith("host:")]
        self.calls.append(("gauge", name, list(tags or []), hosts[0] if hosts else None))


def test_no_service_tag_unless_one_is_given() -> None:
    assert check_tags(None, ["env:prod", "team:web"], environ={}) == ["env:prod", "team:web"]
    assert check_tags("shop", ["env:prod"], environ={}) == ["service:shop", "env:prod"]
    assert check_tags(None, [], environ={"DD_SERVICE": "api"}) == ["service:api"]
    assert check_tags("shop", [], environ={"DD_SERVICE": "api"}) == ["service:shop"]


@pytest.mark.parametrize("hostname", [None, "web-1"])
def test_hostname_and_proc_tags_on_every_metric_and_service_check(hostname: str | None) -> None:
    statsd = _Statsd()
    for status in (WEB, GONE):
        send(status, statsd, tags=["team:shop"], hostname=hostname)  # type: ignore[arg-type]
    assert [call[:2] for call in statsd.calls] == [
        ("sc", "gunicorn.is_running"),
        ("gauge", "gunicorn.workers"),
        ("gauge", "gunicorn.workers"),
        ("sc", "gunicorn.is_running"),
    ]
    for kind, _, tags, host in statsd.calls:
        assert host == hostname
        assert "team:shop" in tags and not any(tag.startswith("service:") for tag in tags)
        assert any(tag.startswith("host:") for tag in tags) == (kind == "gauge" and bool(hostname))


def test_proc_tags() -> None:
    names = ["web", "api"]
    assert proc_tags(["web:team:shop,tier:front", "api:team:api", "web:tier:front x:y"], names) == {
        "web": ("team:shop", "tier:front", "x:y"),
        "api": ("team:api",),
    }
    assert proc_tags([], names) == {}
    for bad in ("web", "web:", ":team:x", "other:team:x"):
        with pytest.raises(ValueError, match="--proc-tags"):
            proc_tags([bad], names)


def _fake_gunicorn(tmp_path: Path, says: str) -> str:
    script = tmp_path / "gunicorn"
    script.write_text(f"#!{sys.executable}\nprint({says!r})\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_gunicorn_version(tmp_path: Path) -> None:
    fake = _fake_gunicorn(tmp_path, "gunicorn (version 23.0.0)")
    assert gunicorn_version(fake) == ("23.0.0", fake)
    with pytest.raises(ValueError, match="no '/nowhere/gunicorn' executable"):
        gunicorn_version("/nowhere/gunicorn")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="not gunicorn's version"):
        gunicorn_version(_fake_gunicorn(other, "something else"))


def test_the_real_gunicorns_version() -> None:
    binary = Path(sys.executable).parent / "gunicorn"
    if not binary.exists():
        pytest.skip("no gunicorn beside this Python")
    import gunicorn

    assert gunicorn_version(str(binary))[0] == gunicorn.__version__


def _datagrams(sock: socket.socket) -> list[str]:
    sock.settimeout(2)  # sent before run_check returned: the rest comes at once
    lines: list[str] = []
    try:
        while True:
            lines += sock.recv(65535).decode().splitlines()
            sock.settimeout(0.1)
    except TimeoutError:
        pass
    return [line for line in lines if line and not line.startswith("datadog.")]


def _tags(datagram: str) -> list[str]:
    """The tags of a datagram (``|#a,b``, wherever it is among the fields)."""
    return next(part[1:] for part in datagram.split("|") if part.startswith("#")).split(",")


def _run(
    receiver: socket.socket, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, list[str]]:
    fake = _fake_gunicorn(tmp_path, "gunicorn (version 22.0.0)")
    code = run_check(
        [
            "--proc-name",
            "logpipe-test-absent",
            "--proc-tags",
            "logpipe-test-absent:team:shop",
            "--gunicorn",
            fake,
            "--dogstatsd",
            target(receiver),
            *extra,
        ]
    )
    return code, capsys.readouterr().out, _datagrams(receiver)


@pytest.mark.usefixtures("clean_env")
def test_check_command_tags(
    receiver: socket.socket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, sent = _run(receiver, tmp_path, capsys, "--hostname", "web-1", "--env", "prod")
    assert code == 2
    assert out.splitlines()[0] == f"gunicorn version: 22.0.0 ({tmp_path / 'gunicorn'})"
    assert "gunicorn [logpipe-test-absent]: CRITICAL" in out
    assert len(sent) == 1  # no master: the service check only
    check: Any = sent[0].split("|")
    assert check[:3] == ["_sc", "gunicorn.is_running", "2"]
    assert set(_tags(sent[0])) == {"app:logpipe-test-absent", "team:shop", "env:prod"}
    assert "h:web-1" in check


@pytest.mark.usefixtures("clean_env")
def test_check_command_with_a_service(
    receiver: socket.socket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DD_SERVICE", "api")
    _, _, sent = _run(receiver, tmp_path, capsys)
    assert "service:api" in _tags(sent[0])
    assert not any(part.startswith("h:") for part in sent[0].split("|"))
    monkeypatch.setenv("DD_HOSTNAME", "from-env")
    _, _, sent = _run(receiver, tmp_path, capsys, "--service", "shop")
    tags = _tags(sent[0])
    assert "service:shop" in tags and "service:api" not in tags
    assert "h:from-env" in sent[0].split("|")


def test_a_gunicorn_asked_for_must_answer(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="--gunicorn"):
        run_check(["--proc-name", "x", "--gunicorn", str(tmp_path / "none")])


def test_no_gunicorn_on_path_is_said(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    run_check(["--proc-name", "logpipe-test-absent"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("gunicorn version: unknown: no 'gunicorn' on PATH"), first
    assert os.environ["PATH"] == str(tmp_path)

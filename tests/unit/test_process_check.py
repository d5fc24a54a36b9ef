"""The pure parts of the process check: results, command-line reading, what is sent (to a real
UDP socket). Real gunicorn masters: tests/follow/test_process_check.py."""

from __future__ import annotations

import socket

import pytest

from logpipe.checks.gunicorn_processes import (
    CRITICAL,
    OK,
    ProcessStatus,
    _name_option,
    _runs_gunicorn,
    _title_name,
    send,
    valid_names,
)
from logpipe.cli.check import build_check_parser
from logpipe.cli.follow import build_parser
from logpipe.cli.options import UsageError
from logpipe.metrics.client import dogstatsd, shutdown
from tests.unit.test_metrics import clean_env, receiver, target

__all__ = ["clean_env", "receiver"]  # fixtures, used by name

SENT = [
    ProcessStatus("web", (10,), working=1, idle=2),
    ProcessStatus("api", (11,), why="'gunicorn: master [api]' (pid 11) has no workers"),
    ProcessStatus("gone", why="no process is titled 'gunicorn: master [gone]'"),
]


def lines(sock: socket.socket, count: int) -> list[str]:
    received: list[str] = []
    sock.settimeout(5)
    while len(received) < count:
        received += [
            line
            for line in sock.recv(65535).decode().splitlines()
            if line and not line.startswith("datadog.")
        ]
    return received


def test_results_say_what_the_integration_says() -> None:
    web, api, gone = SENT
    assert (web.status, web.message, web.state) == (OK, None, "running")
    assert (api.status, api.message, api.state) == (
        CRITICAL,
        "0 working and 0 idle workers for api",
        "no workers",
    )
    assert (gone.status, gone.message, gone.state) == (
        CRITICAL,
        "No gunicorn process with name gone found, skipping worker metrics",
        "no master",
    )
    assert ProcessStatus("x", untitled=True).state == "no title"
    assert web.describe() == "gunicorn [web]: OK: 1 working, 2 idle (master pid 10)"
    assert ProcessStatus("w", (1, 2), 0, 3).describe().endswith("(masters pid 1, 2)")
    assert gone.describe() == "gunicorn [gone]: CRITICAL: " + gone.why


@pytest.mark.integration
def test_sent_datagrams(receiver: socket.socket) -> None:
    client = dogstatsd(target(receiver), namespace="", tags=["service:shop", "env:prod"])
    assert client is not None
    for result in SENT:
        send(result, client)
    shutdown(client)
    tags = "service:shop,env:prod"
    assert sorted(lines(receiver, 7)) == sorted(
        [
            f"_sc|gunicorn.is_running|0|#app:web,{tags}",
            f"gunicorn.workers:1|g|#app:web,state:working,{tags}",
            f"gunicorn.workers:2|g|#app:web,state:idle,{tags}",
            f"_sc|gunicorn.is_running|2|#app:api,{tags}|m:0 working and 0 idle workers for api",
            f"gunicorn.workers:0|g|#app:api,state:working,{tags}",
            f"gunicorn.workers:0|g|#app:api,state:idle,{tags}",
            f"_sc|gunicorn.is_running|2|#app:gone,{tags}"
            "|m:No gunicorn process with name gone found, skipping worker metrics",
        ]
    )


@pytest.mark.integration
def test_a_namespaced_client_is_refused(receiver: socket.socket) -> None:
    client = dogstatsd(target(receiver), namespace="gunicorn.logs")
    assert client is not None
    with pytest.raises(ValueError, match="without a namespace"):
        send(SENT[0], client)
    shutdown(client)


@pytest.mark.parametrize(
    ("cmdline", "runs", "name"),
    [
        (["/venv/bin/python", "/venv/bin/gunicorn", "--name", "web", "app:app"], True, "web"),
        (["python3", "-m", "gunicorn", "--name=web", "app:app"], True, "web"),
        (["gunicorn", "-n", "api", "-w", "2", "app:app"], True, "api"),
        (["python", "-m", "gunicorn", "app:app"], True, None),
        (["python", "-m", "logpipe", "check", "--proc-name", "gunicorn"], False, None),
        (["gunicorn: worker [web]"], False, None),
    ],
)
def test_reading_command_lines(cmdline: list[str], runs: bool, name: str | None) -> None:
    assert _runs_gunicorn(cmdline) is runs
    assert _name_option(cmdline) == name


def test_titles() -> None:
    assert _title_name("gunicorn: master [web]", "gunicorn: master [{}]") == "web"
    assert _title_name("gunicorn: master [a b.2]", "gunicorn: master [{}]") == "a b.2"
    assert _title_name("gunicorn: worker [web]", "gunicorn: master [{}]") is None
    assert _title_name("python", "gunicorn: master [{}]") is None


def test_names() -> None:
    assert valid_names(["web", "api", "web"]) == ["web", "api"]
    for bad in ("", " ", "a]b"):
        with pytest.raises(ValueError, match="--proc-name"):
            valid_names([bad])


def test_command_line() -> None:
    args = build_parser().parse_args(["--access", "a.log"])
    assert (args.proc_name, args.process_interval) == ([], 15.0)
    args = build_parser().parse_args(
        ["--access", "a.log", "--proc-name", "web", "--proc-name", "api", "--process-interval", "2"]
    )
    assert (args.proc_name, args.process_interval) == (["web", "api"], 2.0)
    args = build_check_parser().parse_args(["--proc-name", "web", "--service", "shop"])
    assert (args.proc_name, args.dogstatsd, args.service) == (["web"], "off", "shop")
    with pytest.raises(UsageError, match="--proc-name"):
        build_check_parser().parse_args([])

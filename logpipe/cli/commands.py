"""Every ``logpipe`` command, in one registry: ``main`` runs the one the arguments name, and
``logpipe.cli.usage`` documents each one's options in README.md. A new command is one line in
``COMMANDS``: its name, its module, the function that builds its argument parser and the one
that runs it. Modules are imported only when their command runs or is documented, so that one
command loads nothing the others need (``logpipe parse`` no network client, no replay workers)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

FOLLOW = "follow"  # the command that runs when no other is named: ``logpipe --access ...``


class Command(NamedTuple):
    """One command: ``logpipe NAME ...`` (follow mode: ``logpipe ...``)."""

    name: str
    module: str  # where it lives, imported on use
    parser: str  # the function of ``module`` that builds its argparse parser
    run: str  # the function of ``module`` that runs it with the rest of the arguments

    def build_parser(self) -> argparse.ArgumentParser:
        """The command's argument parser."""
        build = getattr(importlib.import_module(self.module), self.parser)
        return cast(argparse.ArgumentParser, build())

    def runner(self) -> Callable[[Sequence[str]], int]:
        """The function that runs the command and returns its exit status."""
        run = getattr(importlib.import_module(self.module), self.run)
        return cast(Callable[[Sequence[str]], int], run)


COMMANDS: tuple[Command, ...] = (
    Command(FOLLOW, "logpipe.cli.follow", "build_parser", "run_follow"),
    Command("replay", "logpipe.cli.replay", "build_replay_parser", "run_replay"),
    Command("parse", "logpipe.cli.parse", "build_parse_parser", "run_parse"),
    Command("detect", "logpipe.cli.detect", "build_detect_parser", "run_detect"),
    Command("check", "logpipe.cli.check", "build_check_parser", "run_check"),
    Command("validate", "logpipe.cli.validate", "build_validate_parser", "run_validate"),
    Command("status", "logpipe.cli.status", "build_status_parser", "run_status"),
    Command("resend", "logpipe.cli.resend", "build_resend_parser", "run_resend"),
)


def command_named(name: str) -> Command | None:
    """The command called ``name`` (not follow mode, which has no word of its own)."""
    return next((c for c in COMMANDS if c.name == name and name != FOLLOW), None)


def follow_command() -> Command:
    """Follow mode: what ``logpipe`` runs when its first argument names no command."""
    return next(c for c in COMMANDS if c.name == FOLLOW)

"""The ``logpipe`` command line: run the command the arguments name, and report a problem the
user can fix (``SetupError``) in one line, with exit status 2, and a failure of the
environment during the run (``Failure``: a full disk) in one line, with exit status 1."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from logpipe.cli.commands import command_named, follow_command
from logpipe.cli.runtime import say_error
from logpipe.problems import Failure, SetupError

FAILURE, SETUP_ERROR = 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logpipe`` with ``argv`` (default: the process's arguments); the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(arguments)
    except SetupError as error:
        say_error(str(error))
        return SETUP_ERROR
    except Failure as error:
        say_error(str(error))
        return FAILURE
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`); nothing left to say
        return 0
    except KeyboardInterrupt:
        return 130


def _run(arguments: list[str]) -> int:
    """The command ``arguments`` name (follow mode when none does), from the registry
    (``logpipe.cli.commands``), which imports each command's module only when it runs."""
    command = command_named(arguments[0]) if arguments else None
    if command is not None:
        return command.runner()(arguments[1:])
    return follow_command().runner()(arguments)

"""The ``logpipe`` command line: run the command the arguments name, and report a problem the
user can fix (``SetupError``) in one line, with exit status 2, and a failure of the
environment during the run (``Failure``: a full disk) in one line, with exit status 1."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from logpipe.problems import Failure, SetupError

FAILURE, SETUP_ERROR = 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logpipe`` with ``argv`` (default: the process's arguments); the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(arguments)
    except SetupError as error:
        print(f"logpipe: error: {error}", file=sys.stderr)
        return SETUP_ERROR
    except Failure as error:
        print(f"logpipe: error: {error}", file=sys.stderr)
        return FAILURE
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`); nothing left to say
        return 0
    except KeyboardInterrupt:
        return 130


def _run(arguments: list[str]) -> int:
    """The command ``arguments`` name (follow mode when none does). Each command's module is
    imported when it runs, so that one loads nothing the others need (``logpipe parse`` no
    network client, no replay workers)."""
    command, rest = arguments[:1], arguments[1:]
    if command == ["parse"]:
        from logpipe.cli.parse import run_parse

        return run_parse(rest)
    if command == ["replay"]:
        from logpipe.cli.replay import run_replay

        return run_replay(rest)
    if command == ["detect"]:
        from logpipe.cli.detect import run_detect

        return run_detect(rest)
    if command == ["resend"]:
        from logpipe.cli.resend import run_resend

        return run_resend(rest)
    if command == ["check"]:
        from logpipe.cli.check import run_check

        return run_check(rest)
    from logpipe.cli.follow import run_follow

    return run_follow(arguments)

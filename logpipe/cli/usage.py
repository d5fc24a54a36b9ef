"""README.md's option tables and config keys, generated from the commands' argument parsers.

``python -m logpipe.cli.usage --write README.md`` (``make readme``) rewrites what lies between
``<!-- options: NAME -->`` and ``<!-- /options -->`` for each command of the registry
(``logpipe.cli.commands``; a command with no such block gets one, folded in ``<details>``, after
the last), and between
``<!-- config-keys -->`` and ``<!-- /config-keys -->``: the keys follow mode's ``--config``
file takes. ``--check README.md`` exits 1 when the file is not what ``--write`` would make.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from logpipe.cli.commands import COMMANDS, FOLLOW, Command

END = "<!-- /options -->"
FOLDED_END = "\n\n</details>"
CONFIG_START, CONFIG_END = "<!-- config-keys -->", "<!-- /config-keys -->"
BLOCK = re.compile(r"<!-- options: (?P<name>[\w-]+) -->\n.*?" + re.escape(END), re.DOTALL)
CONFIG_BLOCK = re.compile(re.escape(CONFIG_START) + r"\n.*?" + re.escape(CONFIG_END), re.DOTALL)


@contextmanager
def documented_environment() -> Iterator[None]:
    """Defaults as documented, whatever the machine: ``~`` for the home directory, and no
    ``XDG_*`` or ``DD_*`` variables (parsers read them when they are built)."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(("XDG_", "DD_"))]:
        del os.environ[name]
    os.environ["HOME"] = "~"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parser_of(command: Command) -> argparse.ArgumentParser:
    """The command's parser, with its defaults as documented."""
    with documented_environment():
        return command.build_parser()


def invocation(command: Command) -> str:
    return "logpipe" if command.name == FOLLOW else f"logpipe {command.name}"


def options_block(command: Command) -> str:
    """The marked block for ``command``: its description, then a table per option group."""
    parser = parser_of(command)
    formatter = parser._get_formatter()
    about = _text(parser.description or "")
    parts = [f"<!-- options: {command.name} -->", f"`{invocation(command)}`: {about}"]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        actions = [a for a in actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        if group.title not in ("options", "optional arguments", "positional arguments"):
            about = f": {_text(group.description)}" if group.description else ""
            parts.append(f"*{group.title}*{about}")
        rows = ["| Option | What it does |", "| --- | --- |"]
        for action in actions:
            help_text = formatter._expand_help(action) if action.help else ""
            rows.append(f"| {_cell(_spelling(action))} | {_cell(_text(help_text))} |")
        parts.append("\n".join(rows))
    return "\n\n".join([*parts, END])


def _spelling(action: argparse.Action) -> str:
    """``--name METAVAR`` (or the choices), or a positional's name, as code."""
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    name = max(action.option_strings, key=len)
    if action.nargs == 0:
        return f"`{name}`"
    if action.choices is not None and action.metavar is None:
        value = "|".join(str(choice) for choice in action.choices)
    else:
        value = str(action.metavar or action.dest.upper())
    return f"`{name} {value}`"


def _text(text: str) -> str:
    """Plain text as Markdown shows it: backslashes, stars and angle brackets escaped."""
    for plain, escaped in (("\\", "\\\\"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(plain, escaped)
    return text


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped (also within code)."""
    return " ".join(text.split()).replace("|", "\\|")


def config_keys() -> str:
    """The keys of follow mode's ``--config`` file by the type of value each takes, as
    ``logpipe.cli.config.apply_config`` checks them."""
    parser = parser_of(next(c for c in COMMANDS if c.name == FOLLOW))
    kinds: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.dest in ("help", "config", "version") or not action.option_strings:
            continue
        key = f"`{action.dest.replace('_', '-')}`"
        if isinstance(action, argparse._AppendAction):
            kind = "lists of strings (or one string)"
        elif action.type is int:
            kind = "integers"
        elif action.type is float:
            kind = "numbers"
        elif action.choices:
            key += f" ({', '.join(str(choice) for choice in action.choices)})"
            kind = "one of"
        else:
            kind = "strings"
        kinds.setdefault(kind, []).append(key)
    lines = [f"- {kind}: {', '.join(keys)}" for kind, keys in kinds.items()]
    lines.append("- tables: `[[log_processing_rules]]`, the Datadog Agent's processing rules")
    return "\n".join([CONFIG_START, *lines, CONFIG_END])


def folded(command: Command, block: str) -> str:
    """A new command's block, folded as the others are (``<details>``), after a blank line."""
    summary = f"<details><summary><code>{invocation(command)}</code></summary>"
    return f"\n\n{summary}\n\n{block}{FOLDED_END}"


def generated(text: str, commands: Sequence[Command] = COMMANDS) -> str:
    """``text`` with every marked block as the parsers say; a command with no block gets one,
    with a heading, after the last block."""
    blocks = {command.name: options_block(command) for command in commands}
    present = {match["name"] for match in BLOCK.finditer(text)}
    unknown = present - blocks.keys()
    if unknown:
        raise ValueError(f"options blocks for commands not in the registry: {sorted(unknown)}")
    text = BLOCK.sub(lambda match: blocks[match["name"]], text)
    for command in commands:
        if command.name not in present:
            if END not in text:
                raise ValueError(f"no {END!r} marker to put the options of {command.name} after")
            at = text.rindex(END) + len(END)
            if text.startswith(FOLDED_END, at):  # after the last block's fold
                at += len(FOLDED_END)
            text = text[:at] + folded(command, blocks[command.name]) + text[at:]
    if CONFIG_START in text:
        text = CONFIG_BLOCK.sub(lambda match: config_keys(), text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``--write FILE``: regenerate its blocks; ``--check FILE``: exit 1 when they are stale."""
    parser = argparse.ArgumentParser(prog="python -m logpipe.cli.usage", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="FILE", type=Path)
    action.add_argument("--check", metavar="FILE", type=Path)
    args = parser.parse_args(argv)
    path: Path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    fresh = generated(text)
    if args.write:
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{path}: the options differ from the parsers; run `make readme`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

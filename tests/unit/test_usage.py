"""README.md's option tables and config keys are what the parsers say; every command of the
registry runs from ``logpipe``'s command line and is documented."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from logpipe.cli import main as cli_main
from logpipe.cli.commands import COMMANDS, FOLLOW, Command, command_named, follow_command
from logpipe.cli.config import apply_config
from logpipe.cli.usage import BLOCK, END, config_keys, generated, invocation, options_block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_options_match_the_parsers() -> None:
    text = README.read_text(encoding="utf-8")
    assert generated(text) == text, "README.md's options differ from the parsers: run make readme"


def test_readme_has_a_block_for_every_command() -> None:
    names = [match["name"] for match in BLOCK.finditer(README.read_text(encoding="utf-8"))]
    assert sorted(names) == sorted(command.name for command in COMMANDS)


def build_status_parser() -> argparse.ArgumentParser:
    """A command another branch might add, for the generator to find."""
    parser = argparse.ArgumentParser(prog="logpipe status", description="Ask a follower.")
    parser.add_argument("--url", metavar="URL", default="http://127.0.0.1:8126", help="where")
    return parser


def test_a_command_new_to_the_registry_gets_a_folded_block_after_the_last() -> None:
    status = Command("status", __name__, "build_status_parser", "run_status")
    follow = follow_command()
    text = f"# x\n\n<details>\n\n{options_block(follow)}\n\n</details>\n\n## License\n"
    fresh = generated(text, [follow, status])
    assert fresh.index("## License") > fresh.index("<!-- options: status -->")
    assert "<details><summary><code>logpipe status</code></summary>" in fresh
    assert "| `--url URL` | where |" in fresh
    assert fresh.count("</details>") == 2 and generated(fresh, [follow, status]) == fresh


def test_a_block_for_a_command_not_in_the_registry_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the registry"):
        generated(f"<!-- options: nosuchcommand -->\n{END}\n", COMMANDS)


def test_defaults_are_documented_the_same_on_any_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    block = options_block(follow_command())
    assert "(default: ~/.local/state/logpipe)" in block and "/srv/state" not in block


def test_pipes_in_cells_are_escaped() -> None:
    assert "| `--output stdout\\|file:PATH\\|datadog` |" in options_block(follow_command())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_every_command_is_dispatched_from_the_registry(command: Command) -> None:
    assert command.build_parser().prog == invocation(command)
    assert callable(command.runner())
    if command.name == FOLLOW:
        assert command_named(FOLLOW) is None  # `logpipe follow` is not a command word
    else:
        assert command_named(command.name) == command


def test_an_unknown_first_word_is_follow_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["bogus"]) == 2
    assert "unrecognized arguments: bogus" in capsys.readouterr().err


SAMPLES = {
    "lists of strings (or one string)": ["x.log"],
    "strings": "x",
    "integers": 3,
    "numbers": 2.5,
}


def test_every_documented_config_key_is_taken(tmp_path: Path) -> None:
    """Each key ``config_keys`` lists, with a value of the kind it says, is accepted."""
    lines = []
    for line in config_keys().splitlines()[1:-1]:
        kind, _, keys = line[2:].partition(": ")
        if kind == "tables":
            continue
        for name, choices in re.findall(r"`([\w-]+)`(?: \(([^)]*)\))?", keys):
            value = choices.split(", ")[0] if kind == "one of" else SAMPLES[kind]
            lines.append(f"{name} = {json.dumps(value)}")
    config = tmp_path / "logpipe.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parser = follow_command().build_parser()
    apply_config(parser, str(config))
    assert parser.get_default("rotate_wait") == 2.5 and parser.get_default("access") == ["x.log"]
    documented = len(lines)
    skipped = ("help", "config", "version")
    options = [a for a in parser._actions if a.option_strings and a.dest not in skipped]
    assert documented == len(options)

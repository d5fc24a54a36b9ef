"""``--config FILE``: a TOML file whose keys are the command's long options.

``state-dir = "/var/lib/logpipe"`` (or ``state_dir``), ``tags = "team:web,tier:1"``,
``access = ["/var/log/gunicorn/access.log"]``... Options given on the command line win over the
file; paths given with ``--access``/``--error`` are added to the file's.

``[[log_processing_rules]]`` tables are the Datadog Agent's processing rules, with its names
(``type``, ``name``, ``pattern``, ``replace_placeholder``), plus ``applies_to`` (access, error or
both) and ``path`` (a glob of followed paths): see ``logpipe/pipeline/rules.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from logpipe.problems import SetupError


class ConfigError(SetupError):
    """The config file cannot be used."""


def config_path(arguments: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``arguments``, if any."""
    for index, argument in enumerate(arguments):
        if argument == "--config" and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith("--config="):
            return argument.partition("=")[2]
    return None


def apply_config(parser: argparse.ArgumentParser, path: str) -> None:
    """Make the file's values the parser's defaults (unknown keys and bad types are errors)."""
    import tomllib  # here, not at start: only a run with --config reads TOML (~2 ms)

    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: {error}") from None
    actions = {
        action.dest: action for action in parser._actions if action.dest not in ("help", "version")
    }
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest == "log_processing_rules" and parser.get_default(dest) is not None:
            defaults[dest] = _rules(path, key, value)
            continue
        action = actions.get(dest)
        if action is None or dest == "config":
            raise ConfigError(f"--config {path}: unknown key {key!r}")
        defaults[dest] = _checked(path, key, action, value)
    parser.set_defaults(**defaults)


def _rules(path: str, key: str, value: Any) -> list[Any]:
    """``[[log_processing_rules]]``: each table checked (its pattern too), in order."""
    from logpipe.pipeline.rules import RuleError, compile_pattern, spec_from_mapping

    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"--config {path}: {key} must be tables ([[{key}]])")
    specs = []
    for index, table in enumerate(value, 1):
        where = f"--config {path}: {key} #{index}"
        try:
            spec = spec_from_mapping(table, where)
            compile_pattern(spec.pattern, f"{where} ({spec.label()})")
        except RuleError as error:
            raise ConfigError(str(error)) from None
        specs.append(spec)
    return specs


def _checked(path: str, key: str, action: argparse.Action, value: Any) -> Any:
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(f"--config {path}: {key} must be a path or a list of paths")
        return list(items)
    if action.type is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"--config {path}: {key} must be an integer")
        return value
    if action.type is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"--config {path}: {key} must be a number")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"--config {path}: {key} must be a string")
    if action.choices and value not in action.choices:
        raise ConfigError(f"--config {path}: {key} must be one of {', '.join(action.choices)}")
    return value

"""The package's layout holds: stages import only the stages below them, nothing imports the
command line but its entry points, and no two modules import each other, however indirectly
(imports inside functions included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import logpipe

PACKAGE = Path(logpipe.__file__).parent

# What each stage may import, besides itself (a stage is logpipe's top-level module or folder).
BASE = {"about", "event", "lines", "memo", "problems", "checkpoints", "service_tags"}
ALLOWED = {
    **{name: {"event", "memo", "problems"} for name in BASE},
    "parsing": {"event", "lines", "memo", "problems"},
    "sources": {"event", "lines", "checkpoints", "problems"},
    "sinks": {"event", "problems"},
    "metrics": {"event", "problems"},
    "checks": {"event", "problems"},
    "pipeline": BASE | {"parsing", "sources", "sinks"},
    "backfill": BASE | {"parsing", "sources", "sinks", "metrics", "pipeline"},
    "ops": {"about", "event", "problems", "pipeline"},
    "cli": BASE
    | {"parsing", "sources", "sinks", "metrics", "checks", "pipeline", "backfill", "ops"},
    "__init__": BASE | {"parsing", "sources", "backfill"},
    "__main__": {"cli"},
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(path: Path) -> Iterator[str]:
    """The dotted names ``path`` imports from logpipe, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of logpipe it imports."""
    names = modules()

    def module_of(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = {module_of(target) for target in imported(path) if target.startswith("logpipe")}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_stages_import_only_what_lies_below_them() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if stage(target) != stage(module) and stage(target) not in ALLOWED[stage(module)]
    ]
    assert wrong == []


def test_every_stage_is_known() -> None:
    assert {stage(module) for module in modules()} <= set(ALLOWED)


def test_no_import_cycles() -> None:
    graph = import_graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_only_the_command_line_reads_arguments() -> None:
    readers = [
        module
        for module, path in modules().items()
        if stage(module) != "cli" and "argparse" in set(imported(path))
    ]
    assert readers == []

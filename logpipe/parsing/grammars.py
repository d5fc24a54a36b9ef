"""Locate the Lark grammars: inside the installed package, or at the top of a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@cache
def grammar_dir() -> Path:
    """Where the ``.lark`` files are: ``logpipe/grammars`` (wheel) or ``grammars/`` (checkout)."""
    for candidate in (_PACKAGE_DIR / "grammars", _PACKAGE_DIR.parent / "grammars"):
        if (candidate / "access_atoms.lark").is_file():
            return candidate
    raise FileNotFoundError("logpipe grammars not found next to the package or the checkout")


def grammar_text(name: str) -> str:
    """The text of ``grammars/<name>.lark``."""
    return (grammar_dir() / f"{name}.lark").read_text(encoding="utf-8")

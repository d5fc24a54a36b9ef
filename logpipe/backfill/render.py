"""A replay's ``Summary`` on the terminal: the report's header and tables (``views``), as
``rich`` tables on a terminal and as plain aligned text elsewhere (a file, a pipe, a test)::

    render.show(summary, sys.stderr, about)   # rich on a terminal, else plain text
    plain = render.text(summary, about)

Text taken from the logs (routes, bot families, messages) is escaped: control characters are
shown as ``\\x1b``, and rich never reads markup from it.
"""

from __future__ import annotations

from typing import TextIO

from logpipe.backfill.summary import Summary
from logpipe.backfill.views import About, Section, explanation, header, parsing_failed, sections

TITLE = "logpipe replay summary"
FAILED = "Parsing failed"
MAX_CELL = 120  # a terminal cell of free text (an example message) is cut to this


def text(summary: Summary, about: About | None = None, *, top: int = 10) -> str:
    """The summary as aligned plain-text tables, one block per section."""
    pairs = [(key, value) for key, value in header(summary, about or About(), generated=False)]
    blocks = [f"{TITLE}\n{_text_rows(Section('header', TITLE, (), pairs, 'll'))}"]
    failed = parsing_failed(summary)
    if failed:
        lines = "\n".join(f"  {line}" for line in explanation(summary, about))
        blocks.append(f"{FAILED}\n{'-' * len(FAILED)}\n{lines}")
    for section in sections(summary, top=top):
        if failed and not section.rows:
            continue  # the explanation says why
        blocks.append(_text_section(section))
    return "\n\n".join(blocks)


def show(summary: Summary, stream: TextIO, about: About | None = None, *, top: int = 10) -> None:
    """The summary on ``stream``: rich tables when it is a terminal, else ``text``."""
    if not stream.isatty():
        print(text(summary, about, top=top), file=stream, flush=True)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False)
    console.print(Text(TITLE, style="bold"))
    grid = Table.grid(padding=(0, 2))
    for key, value in header(summary, about or About(), generated=False):
        grid.add_row(Text(key, style="dim"), Text(printable(value)))
    console.print(grid)
    failed = parsing_failed(summary)
    if failed:
        console.print(Text(f"\n{FAILED}", style="bold red"))
        for line in explanation(summary, about):
            console.print(Text(line))
    for section in sections(summary, top=top):
        if failed and not section.rows:
            continue
        table = Table(
            title=section.title,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            show_header=any(section.header),
            show_edge=False,
            min_width=len(section.title),
        )
        for name, side in zip(section.header, section.align, strict=True):
            table.add_column(
                name,
                justify="right" if side == "r" else "left",
                overflow="fold",
                max_width=MAX_CELL,
            )
        for row in section.rows:
            table.add_row(*(Text(_cut(printable(cell))) for cell in row))
        if not section.rows:
            table.add_row(
                *(
                    Text(section.empty if i == 0 else "", style="dim")
                    for i in range(len(section.align))
                )
            )
        console.print()
        console.print(table)


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), safe to print on a terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _cut(cell: str) -> str:
    return cell if len(cell) <= MAX_CELL else cell[: MAX_CELL - 1] + "…"


def _text_section(section: Section) -> str:
    underline = "-" * len(section.title)
    return f"{section.title}\n{underline}\n{_text_rows(section)}"


def _text_rows(section: Section) -> str:
    if not section.rows:
        return f"  {section.empty}"
    rows = [section.header, *section.rows] if any(section.header) else section.rows
    cells = [[_cut(printable(cell)) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(section.align))]
    return "\n".join(_text_row(row, widths, section.align) for row in cells)


def _text_row(cells: list[str], widths: list[int], align: str) -> str:
    padded = [
        cell.rjust(width) if side == "r" else cell.ljust(width)
        for cell, width, side in zip(cells, widths, align, strict=True)
    ]
    return ("  " + "  ".join(padded)).rstrip()

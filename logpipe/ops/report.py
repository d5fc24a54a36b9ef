"""``logpipe status``'s page: what ``/status`` answered, as ``datadog-agent status`` shows an
Agent (a header with the version, uptime and health, a Files table, a Sink block)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.filesize import decimal
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from logpipe.pipeline.snapshot import FileState, Snapshot

VERDICT_STYLES = {"ok": "bold green", "starting": "bold yellow", "stuck": "bold red"}
FORMAT_WIDTH = 40  # a longer format is cut in the Files table (--json shows it whole)


def duration(seconds: float) -> str:
    """``3 s``, ``2 min 5 s``, ``1 h 3 min``, ``2 d 4 h``."""
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def ago(moment: float | None, now: float) -> str:
    """How long before ``now`` ``moment`` was (``never`` when it was not)."""
    return "never" if moment is None else f"{duration(now - moment)} ago"


def status_page(body: dict[str, Any]) -> RenderableType:
    """The page for ``/status``'s answer ``body``."""
    now: float = body["now"]
    health: dict[str, Any] = body["health"]
    snapshot: Snapshot | None = body["snapshot"]
    title = f"logpipe {snapshot['version']}" if snapshot is not None else "logpipe"
    parts: list[RenderableType] = [Text(title, style="bold"), Text("=" * len(title))]
    verdict = Text(health["status"], style=VERDICT_STYLES.get(health["status"], ""))
    if health.get("reason"):
        verdict.append(f": {health['reason']}")
    if snapshot is None:
        parts.append(_pairs([("Health", verdict), ("Follow loop", "no snapshot yet")]))
        return Group(*parts)
    paused = "yes: lines are read for metrics only" if snapshot["logs_paused"] else "no"
    parts.append(
        _pairs(
            [
                ("Health", verdict),
                ("Uptime", duration(now - snapshot["started_at"])),
                ("Lines read", f"{snapshot['lines_read']:,}"),
                ("Parse errors", f"{snapshot['parse_errors']:,}"),
                ("Logs paused", paused),
                ("Last checkpoint", ago(snapshot["checkpoint_at"], now)),
                ("Unreadable paths", f"{snapshot['unreadable']:,}"),
            ]
        )
    )
    parts += [Text(""), Text("Files", style="bold"), Text("=====")]
    parts.append(_files(snapshot["files"]))
    parts += [Text(""), Text("Sink", style="bold"), Text("====")]
    parts.append(_sink(snapshot, now))
    return Group(*parts)


def _indented(table: Table) -> Padding:
    return Padding(table, (0, 0, 0, 2))


def _pairs(rows: list[tuple[str, str | Text]]) -> Padding:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(f"{name}:", value)
    return _indented(table)


def _files(files: list[FileState]) -> RenderableType:
    if not files:
        return Text("  (none open yet)")
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    table.add_column("path", overflow="fold")
    table.add_column("kind")
    table.add_column("format")
    for name in ("read", "size", "behind"):
        table.add_column(name, justify="right")
    for state in files:
        behind = Text(decimal(state["behind"]), style="yellow" if state["behind"] else "")
        table.add_row(
            state["path"],
            state["kind"] + (", rotated" if state["rotated"] else ""),
            _format(state["format"]),
            decimal(state["offset"]),
            decimal(state["size"]),
            behind,
        )
    return _indented(table)


def _format(formats: str | None) -> str:
    """The format a file is read in (the first, when fallbacks follow it), cut to a width."""
    if formats is None:
        return "(detecting)"
    first = formats.split(" | ")[0]
    return first if len(first) <= FORMAT_WIDTH else first[: FORMAT_WIDTH - 3] + "..."


def _sink(snapshot: Snapshot, now: float) -> Padding:
    sink = snapshot["sink"]
    error: str | Text = "none"
    if sink["last_error"] is not None:
        error = Text(sink["last_error"], style="red" if sink["failing_since"] else "")
        error.append(f" ({ago(sink['last_error_at'], now)})")
    return _pairs(
        [
            ("Kind", sink["kind"]),
            ("Target", sink["target"]),
            ("Delivered", f"{sink['delivered']:,}"),
            ("Refused", f"{sink['refused']:,} (dead letters)"),
            ("Pending", f"{sink['pending']:,}"),
            ("Retries", f"{sink['retries']:,}"),
            ("Last delivery", ago(sink["last_success"], now)),
            ("Last error", error),
        ]
    )


def plain(page: RenderableType) -> str:
    """``page`` as plain text: no colours, nothing wrapped, no trailing blanks."""
    out = io.StringIO()
    Console(file=out, width=10_000, color_system=None, force_terminal=False).print(page)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"

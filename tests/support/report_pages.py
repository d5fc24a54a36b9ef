"""Replay reports rendered by headless Chromium: logs to replay (days of generated ones, the
bundled real ones), a replay run that writes the report, the page's DOM as Chromium sees it,
screenshots, and a PNG decoder to look at their pixels.

Run as a script, it makes the screenshots in docs/ again::

    .venv/bin/python -m tests.support.report_pages docs
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from bench.gen_logs import (
    access_lines,
    error_records,
    over_days,
    records_over_days,
    with_latencies,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "logs"
DURATIONS_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s'
)
CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
WINDOW = (1400, 2400)
DOCS_WINDOW = (1400, 3800)  # the whole page


def generated_logs(directory: Path, days: float, lines: int, records: int) -> list[str]:
    """Access lines with durations and error records over ``days`` days, written to
    ``directory``; the replay options that read them."""
    access = with_latencies(over_days(access_lines(lines), days))
    write(directory / "access.log", access)
    write(directory / "error.log", records_over_days(error_records(records), days))
    return [
        "--access",
        str(directory / "access.log"),
        "--access-format",
        DURATIONS_FORMAT,
        "--error",
        str(directory / "error.log"),
    ]


def fixture_logs() -> list[str]:
    """The replay options that read every bundled real log (formats detected per file)."""
    logs = FIXTURES.relative_to(ROOT)  # as the header shows them: replay runs in ROOT
    return ["--access", f"{logs}/*/access.log", "--error", f"{logs}/*/error.log"]


def replay_report(options: list[str], report: Path, work: Path, cwd: Path = ROOT) -> str:
    """Run ``logpipe replay`` in ``cwd`` with ``options`` writing ``report``; its stderr (the
    summary)."""
    command = [
        sys.executable,
        "-m",
        "logpipe",
        "replay",
        *options,
        "--output",
        f"file:{work / 'events.ndjson'}",
        "--state-dir",
        str(work / "state"),
        "--max-age",
        "none",
        "--report",
        str(report),
    ]
    done = subprocess.run(command, capture_output=True, timeout=600, check=False, cwd=cwd)
    stderr = done.stderr.decode("utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"logpipe replay failed ({done.returncode}): {stderr[-3000:]}")
    return stderr


def chromium(profile: Path, *args: str) -> bytes:
    """Run headless Chromium with a new empty profile under ``profile``; its stdout."""
    if shutil.which("chromium") is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    command = [*CHROMIUM, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    return done.stdout


def dump_dom(page: Path, work: Path) -> str:
    """The page as Chromium serialises it after rendering."""
    return chromium(work / "profile-dom", "--dump-dom", page.as_uri()).decode("utf-8")


def screenshot(page: Path, png: Path, work: Path, size: tuple[int, int] = WINDOW) -> bytes:
    """A PNG of the page's first ``size`` pixels."""
    width, height = size
    chromium(
        work / "profile-png",
        f"--window-size={width},{height}",
        f"--screenshot={png}",
        page.as_uri(),
    )
    return png.read_bytes()


def png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB rows of an 8-bit RGB or RGBA, non-interlaced PNG (what
    Chromium's screenshots are), each row's filter undone (alpha dropped)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    assert len(raw) == height * (stride + 1)
    rows, previous = [], bytes(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, bpp)
        previous = bytes(line)
        rows.append(previous if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
    return width, height, rows


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> None:
    """Undo one PNG row filter in place."""
    if kind == 1:  # Sub
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        for i in range(len(line)):
            line[i] = (line[i] + previous[i]) & 0xFF
    elif kind == 3:  # Average
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    else:
        assert kind == 0, f"filter type {kind}"


def main() -> None:
    """Screenshots of the report for 7 days of generated logs and for the bundled real logs,
    in the directory given (docs/)."""
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs").resolve()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        week = generated_logs(work / "week", 7, 300_000, 20_000)
        runs = {
            "report-7-days": ([option.replace(f"{work}/", "") for option in week], work),
            "report-fixtures": (fixture_logs(), ROOT),
        }
        for name, (options, cwd) in runs.items():
            (work / name).mkdir()
            page = work / name / "report.html"
            replay_report(options, page, work / name, cwd)
            screenshot(page, target / f"{name}.png", work / name, DOCS_WINDOW)
            print(f"{target / name}.png from a {page.stat().st_size:,}-byte page")


if __name__ == "__main__":
    main()

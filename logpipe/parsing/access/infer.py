"""Infer an ``access_log_format`` from lines in an unknown one.

A line is cut into fields: a ``"quoted"`` field (``\\"`` inside), a ``[bracketed]`` one, a
JSON object's values, or a bare word (an address list such as ``198.51.100.7, 10.0.0.5`` is one
field). Each field is named by the atom whose value it looks like, by its shape first (a time, a
request line, a status after it, ``<pid>``, six decimals...) and, for the rest, by its place (the
referer and user agent follow the size, as in gunicorn's default) or its JSON key. What no
shape or place can name (which header a quoted field came from) gets a placeholder atom, e.g.
``%({header-1}i)s``. The caller checks the result by parsing the lines with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

_FIELD = re.compile(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\S+')
_TIME = re.compile(r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]")
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"  # an HTTP method
_REQUEST = re.compile(rf"{_TOKEN} \S+ HTTP/\d\.\d")
_REQUEST_PARTS = re.compile(rf"{_TOKEN} \S* \S* HTTP/\d\.\d")  # "%(m)s %(U)s %(q)s %(H)s"
_ADDRESS = re.compile(r"[0-9a-fA-F.:]*[.:][0-9a-fA-F.:]*|unknown")
_ADDRESSES = re.compile(r"(?:[0-9a-fA-F.:]+|unknown)(?:, ?(?:[0-9a-fA-F.:]+|unknown))+")
_STATUS = re.compile(r"[1-5]\d\d")
_INTEGER = re.compile(r"\d+")
_SECONDS = re.compile(r"\d+\.\d{6}")
_PID = re.compile(r"<\d+>")
_METHOD = re.compile(r"[A-Z]+")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://|/")
_AGENT = re.compile(r"[A-Za-z][\w.-]*/\d|Mozilla|bot|Bot|curl|python")
MAX_LINE = 8192  # longer lines are not looked at (inference is for the first lines of a file)
_PROTOCOL = re.compile(r"HTTP/\d\.\d")


def infer_formats(lines: Sequence[str], tries: int = 10) -> list[str]:
    """Formats that may fit ``lines``, one per line of the first ``tries`` that gives one (a
    line with an odd value, a user agent ending in a backslash, can mislead: the caller keeps
    the one that parses the most lines)."""
    found: list[str] = []
    for line in lines[:tries]:
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            fmt = _json_format(stripped)
        else:
            fmt = _text_format(line, lines)
        if fmt is not None and fmt not in found:
            found.append(fmt)
    return found


def _fields(line: str) -> list[str]:
    """The line's fields; a list such as ``198.51.100.7, 10.0.0.5`` is one, and each space
    more than one between two fields, or after the last, is an empty one (a header sent
    empty)."""
    fields: list[str] = []
    end = 0
    for match in _FIELD.finditer(line):
        field = match.group()
        if fields and fields[-1].endswith(",") and not field.startswith(('"', "[")):
            fields[-1] += " " + field
        else:
            fields += [""] * max(0, match.start() - end - 1) if fields else []
            fields.append(field)
        end = match.end()
    if fields:
        fields += [""] * (len(line) - end)
    return fields


def _text_format(line: str, lines: Sequence[str]) -> str | None:
    if len(line) > MAX_LINE:
        return None
    fields = _fields(line)
    if " ".join(fields) != line or not fields:
        return None  # not single-space separated fields
    durations = _durations(fields, [_fields(other) for other in lines if len(other) <= MAX_LINE])
    lines = [other for other in lines if len(other) <= MAX_LINE]
    atoms: list[str] = []
    headers = 0
    after_request = after_status = 0  # fields seen since the request line, the status
    rows = [row for row in map(_fields, lines) if len(row) == len(fields)] or [fields]
    for index, field in enumerate(fields):
        atom = _shape(field[1:-1]) if field.startswith('"') else _shape(field)
        if atom is not None and field.startswith('"'):
            atom = f'"{atom}"'
        if atom is None:
            if index == 0 and (_ADDRESS.fullmatch(field) or field == "-"):
                atom = "%(h)s"
            elif field == "-" and index in (1, 2) and _TIME.fullmatch(_at(fields, 3)):
                atom = "%(l)s" if index == 1 else "%(u)s"
            elif after_request == 1 and _STATUS.fullmatch(field):
                atom = "%(s)s"
            elif after_status == 1 and (_INTEGER.fullmatch(field) or field == "-"):
                atom = "%(b)s"
            elif field.startswith('"'):
                looks = _looks(index, rows) if after_status else None
                if looks is not None and looks not in atoms:
                    atom = looks
                else:
                    headers += 1
                    atom = f'"%({{header-{headers}}}i)s"'
            elif _ADDRESSES.fullmatch(field) or _ADDRESS.fullmatch(field):
                atom = "%({x-forwarded-for}i)s"
            elif index in durations:
                atom = durations[index]
            else:
                headers += 1
                atom = f"%({{header-{headers}}}i)s"
        request = atom in ('"%(r)s"', '"%(m)s %(U)s %(q)s %(H)s"')
        after_request = after_request + 1 if after_request or request else 0
        after_status = after_status + 1 if after_status or atom == "%(s)s" else 0
        atoms.append(atom)
    return " ".join(atoms) if "%(s)s" in atoms else None


def _looks(index: int, rows: Sequence[Sequence[str]]) -> str | None:
    """``"%(f)s"`` or ``"%(a)s"`` when a quoted field's values look like referers (URLs) or
    user agents (``product/version``) on most lines that have one."""
    values = [row[index][1:-1] for row in rows if row[index] != '"-"']
    if not values:
        return None
    if sum(1 for value in values if _URL.match(value)) >= 0.8 * len(values):
        return '"%(f)s"'
    if sum(1 for value in values if _AGENT.search(value)) >= 0.8 * len(values):
        return '"%(a)s"'
    return None


def _shape(value: str) -> str | None:
    """The atom a value's shape alone names (a quoted field's value without its quotes)."""
    if _TIME.fullmatch(value):
        return "%(t)s"
    if _REQUEST.fullmatch(value):
        return "%(r)s"
    if _REQUEST_PARTS.fullmatch(value):
        return "%(m)s %(U)s %(q)s %(H)s"
    if _SECONDS.fullmatch(value):
        return "%(L)s"
    if _PID.fullmatch(value):
        return "%(p)s"
    if _PROTOCOL.fullmatch(value):
        return "%(H)s"
    return None


def _at(fields: Sequence[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def _durations(fields: Sequence[str], others: Sequence[Sequence[str]]) -> dict[int, str]:
    """The duration atom of each integer field after the size (by index). Next to ``%(L)s``,
    a field's unit is the one its values equal the seconds in, on every line (the first unit
    not taken when several do: small values fit seconds and milliseconds alike); without it,
    ``%(T)s`` for values under 5 and ``%(D)s`` above."""
    seconds = next((i for i, field in enumerate(fields) if _SECONDS.fullmatch(field)), None)
    units = {"%(T)s": 1, "%(M)s": 1_000, "%(D)s": 1_000_000}
    chosen: dict[int, str] = {}
    start = next((i for i, field in enumerate(fields) if _STATUS.fullmatch(field)), 0) + 2
    for index in range(start, len(fields)):
        if not _INTEGER.fullmatch(fields[index]):
            continue
        rows = [row for row in others if len(row) == len(fields)] or [fields]
        fitting = list(units)
        if seconds is not None:
            fitting = [
                atom
                for atom, scale in units.items()
                if all(_fits(row, index, seconds, scale) for row in rows)
            ]
        elif int(fields[index]) >= 5:
            fitting = ["%(D)s"]
        free = [atom for atom in fitting if atom not in chosen.values()]
        chosen[index] = (free or fitting or ["%(D)s"])[0]
    return chosen


def _fits(row: Sequence[str], index: int, seconds: int, scale: int) -> bool:
    try:
        return abs(int(row[index]) - int(float(row[seconds]) * scale)) <= 1
    except ValueError:
        return False


# JSON keys (lower-cased, parts of them) that name an atom, for values of no telling shape.
_KEYS = (
    (("agent",), "a"),
    (("referer", "referrer"), "f"),
    (("query", "qs", "querystring"), "q"),
    (("path", "uri", "url"), "U"),
    (("method", "verb"), "m"),
    (("protocol", "version"), "H"),
    (("status", "code"), "s"),
    (("length", "bytes", "size"), "B"),
    (("ms", "millis"), "M"),
    (("us", "micro", "taken", "duration", "latency", "time"), "D"),
    (("ip", "addr", "remote", "client", "host"), "h"),
    (("user", "auth"), "u"),
)


def _json_format(line: str) -> str | None:
    """A JSON format from an object line: each value named by its shape or its key."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not document:
        return None
    colon = '": ' if '": ' in line else '":'
    comma = ", " if '", "' in line or ", " in line.replace('": ', "") else ","
    parts = []
    for key, value in document.items():
        atom = _json_atom(key, value)
        name = orjson.dumps(key).decode()
        if atom is None:  # a constant: printed as is
            parts.append(f"{name}{colon[1:]}{orjson.dumps(value).decode()}")
        elif isinstance(value, str):
            parts.append(f'{name}{colon[1:]}"{atom}"')
        else:
            parts.append(f"{name}{colon[1:]}{atom}")
    return "{" + comma.join(parts) + "}"


def _json_atom(key: str, value: object) -> str | None:
    if isinstance(value, str) and (atom := _shape(value)) is not None:
        return atom
    lowered = key.lower()
    if "request_id" in lowered or "request-id" in lowered or lowered == "requestid":
        return "%({x-request-id}i)s"
    if "forwarded" in lowered:
        return "%({x-forwarded-for}i)s"
    for names, atom in _KEYS:
        if any(name in lowered for name in names):
            if atom in ("s", "B", "M", "D") and not isinstance(value, int) and value != "-":
                continue
            if atom == "m" and not (isinstance(value, str) and _METHOD.fullmatch(value)):
                continue
            return f"%({atom})s"
    if isinstance(value, str):
        return f"%({{{key.lower()}}}i)s"  # a header, most likely: a placeholder with its key
    return None

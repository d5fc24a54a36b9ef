"""Deterministic, real-looking gunicorn logs for benchmarks (default access format, error log)."""

from __future__ import annotations

import math
import random
import re
import sys
import time
from pathlib import Path

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "kube-probe/1.29",
    "Go-http-client/1.1",
    "-",
]
# Rare user agents and referers that exercise gunicorn's escaping (about 1% of lines each).
ODD_USER_AGENTS = ["Ð¢ÐµÐ»ÐµÑ\x84Ð¾Ð½/1.0", 'Weird\\\\"Agent', "EvilAgent/1.0 \\"]
ODD_REFERERS = ['https://example.com/search?q=\\"x\\"', "https://example.com/path\\"]
PATHS = [
    "/",
    "/api/v1/users",
    "/api/v1/orders/1234",
    "/static/app.js",
    "/search?q=caf%C3%A9",
    "/login",
    "/healthz",
    "/products?id=42&ref=home",
    "/cart",
    "/api/v1/items?page=3&per=50",
]
STATUSES = (
    [200] * 60
    + [201, 204, 301, 302, 304] * 4
    + [400, 401, 403, 404, 404, 404, 429] * 2
    + [500, 502, 503]
)
METHODS = ["GET"] * 8 + ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"]
REFERERS = (
    ["-"] * 9
    + ["https://shop.example.com/", "https://www.google.com/", ""] * 3
    + ["https://shop.example.com/cart?step=2"]
)


def access_lines(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    start = 1795580579
    lines = []
    for index in range(count):
        stamp = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(start + index // 50))
        ip = (
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            if rng.random() < 0.4
            else f"203.0.113.{rng.randrange(256)}"
        )
        user = "-" if rng.random() < 0.95 else "frank"
        status = rng.choice(STATUSES)
        size = 0 if status in (204, 304) else rng.randrange(20, 50_000)
        agent = rng.choice(ODD_USER_AGENTS) if rng.random() < 0.01 else rng.choice(USER_AGENTS)
        referer = rng.choice(ODD_REFERERS) if rng.random() < 0.01 else rng.choice(REFERERS)
        lines.append(
            f'{ip} - {user} {stamp} "{rng.choice(METHODS)} {rng.choice(PATHS)} HTTP/1.1" '
            f'{status} {size} "{referer}" "{agent}"'
        )
    return lines


def error_records(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    start = 1795580579
    records = []
    for index in range(count):
        stamp = time.strftime("[%Y-%m-%d %H:%M:%S +0000]", time.gmtime(start + index // 20))
        if rng.random() < 0.05:
            frames = "".join(
                f'  File "/srv/app/module{n}.py", line {10 + n}, in handler{n}\n    call{n}()\n'
                for n in range(rng.randrange(2, 9))
            )
            records.append(
                f"{stamp} [1234] [ERROR] Error handling request GET /api/v1/x\n"
                f"Traceback (most recent call last):\n{frames}ValueError: boom {index}"
            )
        else:
            records.append(
                f"{stamp} [{rng.randrange(1000, 9999)}] [INFO] Booting worker with "
                f"pid: {rng.randrange(1000, 9999)}"
            )
    return records


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_durations(lines: list[str], seed: int = 13) -> list[str]:
    """The same lines in a format that adds %(T)s %(D)s %(M)s %(L)s %(p)s."""
    rng = random.Random(seed)
    result = []
    for line in lines:
        micros = rng.randrange(50, 3_000_000)
        seconds, rest = divmod(micros, 1_000_000)
        result.append(
            f"{line} {seconds} {micros} {micros // 1000} {seconds}.{rest:06d} "
            f"<{rng.randrange(1000, 9999)}>"
        )
    return result


def with_unique_targets(lines: list[str]) -> list[str]:
    """The same lines, each request target made unique (an id in the path or the query), as
    in traffic to REST resources and paginated searches: no target is seen twice."""
    result = []
    for index, line in enumerate(lines):
        head, protocol, tail = line.partition(" HTTP/1.1")
        quote = head.rindex('"')  # the request: "METHOD TARGET HTTP/1.1"
        method, _, target = head[quote + 1 :].partition(" ")
        target = f"{target}&n={index}" if "?" in target else f"{target.rstrip('/')}/{index}"
        result.append(f"{head[: quote + 1]}{method} {target}{protocol}{tail}")
    return result


ACCESS_STAMP = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]")
ERROR_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\]")
STATUS = re.compile(r'" \d{3} ')
KINDS = ["ValueError: boom", "KeyError: 'user_id'", "TimeoutError: upstream took too long",
         "psycopg2.OperationalError: server closed the connection"]  # fmt: skip


def times_over_days(count: int, days: float, seed: int, start: int = 1795580579) -> list[int]:
    """``count`` sorted epoch seconds over ``days`` days, busier by day than by night (a
    sine over 24 h, peak at 15:00 UTC)."""
    rng = random.Random(seed)
    end = start + int(days * 86_400)
    stamps: list[int] = []
    while len(stamps) < count:
        moment = rng.randrange(start, end)
        hour = (moment % 86_400) / 3600
        if rng.random() < 0.55 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi):
            stamps.append(moment)
    return sorted(stamps)


def over_days(lines: list[str], days: float, seed: int = 17) -> list[str]:
    """Access lines spread over ``days`` days with a daily rhythm, and an incident: for an
    hour at 60 % of the span, a third of the requests answer 503."""
    stamps = times_over_days(len(lines), days, seed)
    rng = random.Random(seed)
    incident = stamps[0] + int(days * 86_400 * 0.6)
    result = []
    for line, stamp in zip(lines, stamps, strict=True):
        text = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(stamp))
        line = ACCESS_STAMP.sub(text, line, count=1)
        if incident <= stamp < incident + 3600 and rng.random() < 0.33:
            line = STATUS.sub('" 503 ', line, count=1)
        result.append(line)
    return result


def with_latencies(lines: list[str], seed: int = 23) -> list[str]:
    """The same lines in ``with_durations``' format, with durations as a server has them:
    log-normal around 40 ms, slower at busy hours, 5xx often very slow (timeouts)."""
    rng = random.Random(seed)
    result = []
    for line in lines:
        stamp = time.strptime(ACCESS_STAMP.search(line)[0][1:-7], "%d/%b/%Y:%H:%M:%S")  # type: ignore[index]
        busy = 1 + 0.8 * max(0.0, math.sin((stamp.tm_hour - 9) / 24 * 2 * math.pi))
        micros = int(rng.lognormvariate(math.log(40_000 * busy), 0.9))
        if STATUS.search(line)[0][2] == "5" and rng.random() < 0.5:  # type: ignore[index]
            micros = rng.randrange(5_000_000, 30_000_000)
        seconds, rest = divmod(micros, 1_000_000)
        result.append(
            f"{line} {seconds} {micros} {micros // 1000} {seconds}.{rest:06d} "
            f"<{rng.randrange(1000, 9999)}>"
        )
    return result


def records_over_days(records: list[str], days: float, seed: int = 19) -> list[str]:
    """Error records spread over ``days`` days, their exceptions of a few kinds."""
    stamps = times_over_days(len(records), days, seed)
    result = []
    for index, (record, stamp) in enumerate(zip(records, stamps, strict=True)):
        text = time.strftime("[%Y-%m-%d %H:%M:%S +0000]", time.gmtime(stamp))
        record = ERROR_STAMP.sub(text, record, count=1)
        result.append(re.sub(r"ValueError: boom", KINDS[index % len(KINDS)], record))
    return result


def main() -> None:
    """``gen_logs.py OUT_DIR ACCESS_LINES ERROR_RECORDS [DAYS]``: access.log, durations.log,
    unique.log (access lines with unique request targets), error.log; with DAYS, spread over
    that many days (``over_days``)."""
    out, lines, records = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    days = float(sys.argv[4]) if len(sys.argv) > 4 else None
    access = access_lines(lines)
    errors = error_records(records)
    if days is not None:
        access, errors = over_days(access, days), records_over_days(errors, days)
    write(out / "access.log", access)
    write(out / "durations.log", with_durations(access))
    write(out / "unique.log", with_unique_targets(access))
    write(out / "error.log", errors)


if __name__ == "__main__":
    main()

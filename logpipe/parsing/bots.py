"""What kind of bot a user agent is: ``http.useragent_details.bot_kind``, memoized per user agent.

Broader than Datadog's saved view "Bot errors" (``logpipe.event.bot_error``, which stays exactly
the view's query), and an attribute of its own, set only for bots:

- ``scanner``: vulnerability and port scanners (``SCANNER_AGENTS`` below);
- ``monitor``: uptime monitors and health probes (``MONITOR_AGENTS``);
- ``automation``: HTTP libraries and command-line clients (``AUTOMATION_AGENTS``);
- ``crawler``: any other user agent in the ``crawler-user-agents`` package's list (search
  engines, SEO and AI crawlers, link previews...), or that ua-parser calls a ``Spider``.

The three small lists are ours, checked first in that order, case-insensitively; the crawler
list is the package's (a dependency; its patterns are case-sensitive regexes, and without it
only ua-parser's ``Spider`` makes a crawler). A user agent is judged once:
``USERAGENT_DETAILS`` is ua-parser's details (``useragent.USER_AGENTS``) plus ``bot_kind``, and
the kinds are kept on disk between runs as the details are.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from typing import Any

from logpipe.memo import Memo, frozen
from logpipe.parsing.disk_cache import StoredTable
from logpipe.parsing.useragent import CACHE_SIZE, USER_AGENTS

CRAWLER = "crawler"
SCANNER = "scanner"
AUTOMATION = "automation"
MONITOR = "monitor"
KINDS = (CRAWLER, SCANNER, AUTOMATION, MONITOR)

# Regexes, matched case-insensitively anywhere in the user agent ("^" where a short word would
# otherwise match inside other names). Keep each list short and known: these are the clients
# that show up in gunicorn logs, not a catalogue.
SCANNER_AGENTS = (
    "zgrab",
    "sqlmap",
    "nuclei",
    "masscan",
    "nikto",
    "nmap",
    "wpscan",
    "dirbuster",
    "gobuster",
    "feroxbuster",
    r"fuzz faster u fool",  # ffuf's default
    "acunetix",
    "netsparker",
    "nessus",
    "openvas",
    "zmeu",
    "censysinspect",
    "expanse",  # Palo Alto Networks' internet scan
    "internet-measurement",
    r"l9explore|l9tcpid|leakix",
)
MONITOR_AGENTS = (
    "uptimerobot",
    "pingdom",
    "statuscake",
    "site24x7",
    "better ?uptime|betterstack",
    "uptime-kuma",
    "freshping",
    "hetrixtools",
    "checkly",
    "newrelicpinger",
    "datadog.*synthetics|datadogsynthetics",
    "kube-probe",
    "elb-healthchecker",
    "googlehc",
    "consul health check",
    "check_http",  # Nagios / Icinga
    "zabbix",
)
AUTOMATION_AGENTS = (
    r"^curl/",
    r"^wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    r"^java/",
    "apache-httpclient",
    "libwww-perl",
    r"^axios/",
    "node-fetch",
    "undici",
    "postmanruntime",
    "httpie",
    "guzzlehttp",
    "faraday",
    r"^ruby",
    "reqwest",
    "windowspowershell",
    r"^dart/",
    "insomnia",
)
_OURS = [
    (kind, re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.IGNORECASE))
    for kind, patterns in (
        (SCANNER, SCANNER_AGENTS),
        (MONITOR, MONITOR_AGENTS),
        (AUTOMATION, AUTOMATION_AGENTS),
    )
]
LISTS_VERSION = "1"  # bump when a list above or the rules of bot_kind change

_crawlers: re.Pattern[str] | None = None


def _crawler_patterns() -> re.Pattern[str]:
    """The ``crawler-user-agents`` list as one regex (compiled on first use: ~15 ms)."""
    global _crawlers
    if _crawlers is None:
        import importlib.resources  # (here: it loads zipfile and more, which a warm start skips)

        try:
            text = (
                importlib.resources.files("crawleruseragents") / "crawler-user-agents.json"
            ).read_text("utf-8")
        except (ModuleNotFoundError, OSError):  # not installed: ua-parser's Spider rule only
            _crawlers = re.compile(r"(?!)")
            return _crawlers
        _crawlers = re.compile("|".join(f"(?:{entry['pattern']})" for entry in json.loads(text)))
    return _crawlers


def bot_kind(user_agent: str, details: dict[str, Any] | None = None) -> str | None:
    """``scanner``, ``monitor``, ``automation``, ``crawler`` or None (not a known bot).

    ``details``: ua-parser's ``http.useragent_details`` for it, if known (a ``Spider`` device
    is a crawler whatever the lists say)."""
    for kind, pattern in _OURS:
        if pattern.search(user_agent):
            return kind
    if _crawler_patterns().search(user_agent):
        return CRAWLER
    device = details.get("device") if details else None
    if isinstance(device, dict) and device.get("family") == "Spider":
        return CRAWLER
    return None


def _lists_identity() -> str:
    """What the kinds depend on: our lists, and the installed crawler list (by its file;
    importlib.metadata would load the email package at every start)."""
    spec = importlib.util.find_spec("crawleruseragents")
    origin = spec.origin if spec and spec.origin else ""
    stat = os.stat(origin) if origin else None
    return f"{LISTS_VERSION}:{origin}:{stat.st_mtime_ns if stat else 0}"


_STORED = StoredTable("botkinds", _lists_identity())


def _with_kind(user_agent: str) -> dict[str, Any]:
    details = USER_AGENTS[user_agent]
    kind: str | None = _STORED.get(user_agent)
    if kind is None:
        kind = _STORED.put(user_agent, bot_kind(user_agent, details) or "")
    if not kind:
        return details  # the shared details as they are: not a bot
    return frozen({**details, "bot_kind": kind})  # type: ignore[no-any-return]


# ``http.useragent_details`` per user agent: ua-parser's, plus ``bot_kind`` for a bot (shared
# between events, frozen).
USERAGENT_DETAILS: Memo[str, dict[str, Any]] = Memo(_with_kind, CACHE_SIZE)

"""User-agent details in Datadog's shape (``http.useragent_details``), cached per user agent.

Families come from ua-parser (uap-core rules, with its native ``ua-parser-rs`` resolver when
installed). ``device.category`` follows Datadog: ``Bot`` when the device family is ``Spider`` or
the browser family contains ``bot``; then ``Tablet``, ``Mobile``, ``Desktop`` by device and OS;
``Other`` for the rest (automation clients such as curl, python-requests or kube-probe included:
they are not bots by Datadog's rule, so they never count as bot errors).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from logpipe.memo import Memo, frozen
from logpipe.parsing.disk_cache import StoredTable

CACHE_SIZE = 4096

_MOBILE_OS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Firefox OS"}
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "macOS",
        "Linux",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "Chrome OS",
        "ChromeOS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
        "SUSE",
        "Mint",
        "Arch Linux",
        "CentOS",
        "Gentoo",
    }
)
_TABLET_WORDS = ("ipad", "tablet", "kindle", "tab ")


def is_bot(browser_family: str, device_family: str) -> bool:
    """Datadog's bot rule: a ``Spider`` device or a browser family containing ``bot``."""
    return device_family == "Spider" or "bot" in browser_family.lower()


def useragent_details(user_agent: str) -> dict[str, Any]:
    """``{"browser": {...}, "os": {...}, "device": {...}}`` for a user agent."""
    import ua_parser  # imported on first use: its import and rule set cost ~140 ms at start

    result = ua_parser.parse(user_agent)
    browser = _family_and_version(result.user_agent)
    os = _family_and_version(result.os)
    device_family = result.device.family if result.device else "Other"
    category = _category(browser["family"], os["family"], device_family, user_agent)
    return {"browser": browser, "os": os, "device": {"family": device_family, "category": category}}


def _family_and_version(part: Any) -> dict[str, str]:
    if part is None:
        return {"family": "Other"}
    details = {"family": part.family}
    for name in ("major", "minor", "patch"):
        value = getattr(part, name)
        if value is None:
            break
        details[name] = value
    return details


def _category(browser: str, os: str, device: str, user_agent: str) -> str:
    if is_bot(browser, device):
        return "Bot"
    lowered = (device + " " + user_agent).lower()
    if any(word in lowered for word in _TABLET_WORDS) or (
        os == "Android" and "mobile" not in user_agent.lower()
    ):
        return "Tablet"
    if os in _MOBILE_OS or device in ("iPhone", "iPod"):
        return "Mobile"
    if os in _DESKTOP_OS:
        return "Desktop"
    return "Other"


RULES_VERSION = "1"  # bump when _category or the shape of the details changes


def _rules_identity() -> str:
    """What the details depend on: ua-parser's rule set (by its file) and our own rules."""
    spec = importlib.util.find_spec("ua_parser_builtins")
    origin = spec.origin if spec and spec.origin else ""
    stat = os.stat(origin) if origin else None
    return (
        f"{RULES_VERSION}:{origin}:{stat.st_mtime_ns if stat else 0}:{stat.st_size if stat else 0}"
    )


_STORED = StoredTable("useragents", _rules_identity())


def _known_or_parsed(user_agent: str) -> dict[str, Any]:
    details: dict[str, Any] | None = _STORED.get(user_agent)
    if details is None:
        details = _STORED.put(user_agent, useragent_details(user_agent))
    return frozen(details)  # type: ignore[no-any-return]


# Details per user agent (shared between events, frozen); kept on disk between runs.
USER_AGENTS: Memo[str, dict[str, Any]] = Memo(_known_or_parsed, CACHE_SIZE)

"""Bots: the saved view "Bot errors" (one definition for the metric, the summary and the report),
``http.useragent_details.bot_kind``, and ``date_access``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

import pytest
import yaml

from logpipe import AccessParser
from logpipe.backfill import render
from logpipe.backfill.summary import Summary
from logpipe.event import BOT_ERRORS_QUERY, Event, bot_error
from logpipe.metrics.derive import EventMetrics
from logpipe.parsing.bots import AUTOMATION, CRAWLER, MONITOR, SCANNER, USERAGENT_DETAILS, bot_kind
from tests.conftest import FIXTURES, LOGS, flatten
from tests.fixtures import make_fixtures

RUNS = ("default", "durations", "headers")
SAVED_VIEWS = yaml.safe_load((FIXTURES / "datadog" / "pipeline-samples.yaml").read_text("utf-8"))[
    "saved_view_queries"
]
TERM = re.compile(r"@(?P<attribute>[\w.]+):(?:\[(?P<low>\d+) TO (?P<high>\d+)\]|(?P<value>\S+))")


def saved_view(query: str, event: Event) -> bool:
    """Datadog's log search, for the terms the saved views use (an independent reading): ``@a:x``
    with ``*`` wildcards, matched case-sensitively as attribute searches are, and
    ``@a:[low TO high]`` numeric ranges, all ANDed."""
    flat = flatten(event)
    matches = list(TERM.finditer(query))
    assert " ".join(match[0] for match in matches) == query  # every term understood
    for match in matches:
        value = flat.get(match["attribute"])
        if match["low"] is not None:
            if not isinstance(value, int) or not int(match["low"]) <= value <= int(match["high"]):
                return False
        elif not isinstance(value, str) or not fnmatchcase(value, match["value"]):
            return False
    return True


def _agents() -> list[str]:
    agents = [
        value
        for name, value in vars(make_fixtures).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("REFERER")
    ]
    return [agent for agent in agents if (agent and "/" in agent) or agent.isalpha()]


def _fixture_events() -> Iterator[Event]:
    for run in RUNS:
        text = (LOGS / run / "format.txt").read_text("utf-8").strip()
        parser = AccessParser(None if run == "default" else text)
        for line in (LOGS / run / "access.log").read_bytes().split(b"\n")[:-1]:
            yield parser.parse(line)


def test_the_definition_is_the_saved_views_query() -> None:
    assert SAVED_VIEWS["bot_errors"] == f"source:gunicorn {BOT_ERRORS_QUERY}"


@pytest.mark.parametrize("status", [200, 302, 399, 400, 404, 499, 500, 503, 599, 600])
def test_bot_error_agrees_with_the_query_over_the_fixture_agents(status: int) -> None:
    agents = _agents()
    assert len(agents) > 15
    selected = set()
    for agent in agents:
        http: dict[str, Any] = {
            "status_code": status,
            "useragent_details": USERAGENT_DETAILS[agent],
        }
        event = {"http": http}
        assert (bot_error(http) is not None) == saved_view(BOT_ERRORS_QUERY, event), agent
        if bot_error(http):
            selected.add(http["useragent_details"]["browser"]["family"])
    # case-sensitive `*bot*`: YandexBot and AhrefsBot (category Bot all the same) are not in it
    assert selected == ({"Googlebot", "bingbot"} if 400 <= status <= 599 else set())


def test_bot_error_agrees_with_the_query_over_the_fixture_logs() -> None:
    selected: Counter[str] = Counter()
    summary = Summary()
    count = 0
    for event in _fixture_events():
        count += 1
        summary.observe(event)
        in_view = saved_view(BOT_ERRORS_QUERY, event)
        family = bot_error(event.get("http", {}))
        assert (family is not None) == in_view, event["message"]
        if family is not None:
            selected[family] += 1
    assert count > 300
    assert selected == {"Googlebot": 6, "bingbot": 2}
    assert summary.bots == selected  # the replay summary counts the same
    assert sum(summary.bot_paths.values()) == selected.total()
    text = render.text(summary)
    assert "Googlebot" in text and "YandexBot" not in text.split("Requests by bot kind")[0]


class _Statsd:
    """What EventMetrics calls on a client, recorded."""

    namespace = ""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, frozenset[str]]] = Counter()

    def count(self, metric: str, value: int, tags: list[str] | None = None) -> None:
        self.counts[metric, frozenset(tags or ())] += value

    def distribution(self, metric: str, value: float, tags: list[str] | None = None) -> None:
        pass


def test_the_metric_counts_what_the_query_selects() -> None:
    statsd = _Statsd()
    metrics = EventMetrics(statsd)  # type: ignore[arg-type]
    expected: Counter[str] = Counter()
    kinds: Counter[tuple[str, str]] = Counter()
    for event in _fixture_events():
        metrics.observe(event)
        if saved_view(BOT_ERRORS_QUERY, event):
            expected[event["http"]["useragent_details"]["browser"]["family"]] += 1
        kind = flatten(event).get("http.useragent_details.bot_kind")
        if kind:
            kinds[kind, f"{event['http']['status_code'] // 100}xx"] += 1
    bot_errors = {
        next(iter(tags)).removeprefix("bot:"): n
        for (name, tags), n in statsd.counts.items()
        if name == "requests.bot_errors"
    }
    assert bot_errors == expected
    bots = {tags: n for (name, tags), n in statsd.counts.items() if name == "requests.bots"}
    assert bots == {
        frozenset({f"bot_kind:{kind}", f"status_class:{status_class}"}): n
        for (kind, status_class), n in kinds.items()
    }
    assert {kind for kind, _ in kinds} == {CRAWLER, AUTOMATION, MONITOR}


@pytest.mark.parametrize(
    ("agent", "kind"),
    [
        (make_fixtures.GOOGLEBOT, CRAWLER),
        (make_fixtures.BINGBOT, CRAWLER),
        (make_fixtures.YANDEXBOT, CRAWLER),
        (make_fixtures.AHREFSBOT, CRAWLER),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)", CRAWLER),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", CRAWLER),
        (make_fixtures.CURL, AUTOMATION),
        (make_fixtures.PY_REQUESTS, AUTOMATION),
        ("Go-http-client/1.1", AUTOMATION),
        ("Wget/1.21.4", AUTOMATION),
        ("okhttp/4.12.0", AUTOMATION),
        (make_fixtures.KUBE_PROBE, MONITOR),
        ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", MONITOR),
        ("Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", MONITOR),
        ("ELB-HealthChecker/2.0", MONITOR),
        ("Mozilla/5.0 zgrab/0.x", SCANNER),
        ("sqlmap/1.7.2#stable (https://sqlmap.org)", SCANNER),
        (
            "Mozilla/5.0 (X11) Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
            SCANNER,
        ),
        ("masscan/1.3 (https://github.com/robertdavidgraham/masscan)", SCANNER),
        ("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)", SCANNER),
        ("Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", SCANNER),
        (make_fixtures.CHROME, None),
        (make_fixtures.FIREFOX, None),
        (make_fixtures.SAFARI, None),
        (make_fixtures.IPHONE, None),
        (make_fixtures.ANDROID, None),
        (make_fixtures.IPAD, None),
        (make_fixtures.CYRILLIC, None),
        (make_fixtures.QUOTE_AGENT, None),
    ],
)
def test_bot_kind_of_known_agents(agent: str, kind: str | None) -> None:
    assert bot_kind(agent, USERAGENT_DETAILS[agent]) == kind
    assert USERAGENT_DETAILS[agent].get("bot_kind") == kind
    assert USERAGENT_DETAILS[agent] is USERAGENT_DETAILS[agent]  # memoized, shared


def test_bot_kind_is_on_the_event_only_for_bots() -> None:
    line = '1.2.3.4 - - [13/Jul/2016:10:55:36 +0000] "GET /x HTTP/1.1" 404 5 "-" "{}"'
    parser = AccessParser()
    googlebot = parser.parse(line.format(make_fixtures.GOOGLEBOT))
    chrome = parser.parse(line.format(make_fixtures.CHROME))
    assert googlebot["http"]["useragent_details"]["bot_kind"] == CRAWLER
    assert googlebot["http"]["useragent_details"]["browser"]["family"] == "Googlebot"
    assert "bot_kind" not in chrome["http"]["useragent_details"]


def test_date_access_is_datadogs_epoch_ms() -> None:
    samples = yaml.safe_load((FIXTURES / "datadog" / "pipeline-samples.yaml").read_text("utf-8"))
    checked = 0
    for case in samples["pipeline_test_cases"]:
        wanted = case["expected"]["custom"].get("date_access")
        if wanted is None:
            continue
        event = AccessParser().parse(case["sample"])
        assert event["date_access"] == wanted
        assert type(event["date_access"]) is int
        checked += 1
    assert checked == 2


def test_date_access_on_every_fixture_line_and_only_from_the_line() -> None:
    for event in _fixture_events():
        assert type(event["date_access"]) is int
        assert event["date_access"] == event["timestamp"]
    no_time = AccessParser('%(h)s "%(r)s" %(s)s').parse('1.2.3.4 "GET / HTTP/1.1" 200')
    assert "timestamp" in no_time and "date_access" not in no_time


def test_odd_useragent_details_count_nothing() -> None:
    statsd = _Statsd()
    metrics = EventMetrics(statsd)  # type: ignore[arg-type]
    summary = Summary()
    for details in ("Googlebot", None, {"bot_kind": None}, {"browser": "Googlebot"}):
        event = {
            "logger": {"name": "gunicorn.access"},
            "http": {"status_code": 404, "useragent_details": details},
        }
        metrics.observe(event)
        summary.observe(event)
        assert bot_error(event["http"]) is None  # type: ignore[arg-type]
    assert not summary.bots and not summary.bot_kinds
    assert {name for name, _ in statsd.counts} == {"requests", "requests.4xx"}

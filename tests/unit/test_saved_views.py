"""The Gunicorn integration's saved views, evaluated over logpipe's events by their own query
syntax (tests/support/log_query.py), select exactly what logpipe's metrics count: 4xx, 5xx, bot
errors by browser family, and the status code overview. Events: every real fixture
configuration's access log, parsed with no flags."""

from __future__ import annotations

import socket
from collections import Counter

from logpipe import AccessParser
from logpipe.lines import head_lines
from logpipe.metrics.client import dogstatsd
from logpipe.metrics.derive import EventMetrics
from logpipe.parsing.access.detect import detect
from logpipe.pipeline.batch import access_events
from tests.conftest import LOGS
from tests.support.log_query import count_by, select
from tests.unit.test_metrics import NS, TAGS, clean_env, counts, ours, receive, receiver, target

__all__ = ["clean_env", "receiver"]  # the fixtures, shared

RUNS = ("default", "durations", "headers", "uvicorn", "jsonlog", "logconf", "jsonaccess",
        "gunicorn20", "eventlet")  # fmt: skip
# The saved views (Datadog's Gunicorn integration)
FOUR_XX = "@http.status_code:[400 TO 499]"
FIVE_XX = "@http.status_code:[500 TO 599]"
BOT_ERRORS = "@http.useragent_details.browser.family:*bot* @http.status_code:[400 TO 599]"


def events() -> list[dict[str, object]]:
    found = []
    for run in RUNS:
        path = LOGS / run / "access.log"
        detection = detect(head_lines(path.read_bytes()[:65_536]))
        assert detection is not None
        parser = AccessParser(None if detection.default else detection.formats)
        with open(path, "rb") as stream:
            found += list(access_events(stream, parser, path=str(path)))
    return found


def test_the_saved_views_select_what_the_metrics_count(receiver: socket.socket) -> None:
    every = events()
    client = dogstatsd(target(receiver), tags=TAGS)
    assert client is not None
    metrics = EventMetrics(client)
    for event in every:
        metrics.observe(event)
    metrics.close()
    totals = counts(ours(receive(receiver)))

    assert totals[NS + "requests.4xx", frozenset()] == len(select(FOUR_XX, every)) > 0
    assert totals[NS + "requests.5xx", frozenset()] == len(select(FIVE_XX, every)) > 0

    families = count_by(BOT_ERRORS, every, "http.useragent_details.browser.family")
    bots = Counter(
        {
            next(tag for tag in tags if tag.startswith("bot:")).removeprefix("bot:"): value
            for (name, tags), value in totals.items()
            if name == NS + "requests.bot_errors"
        }
    )
    assert bots == families and sum(families.values()) > 0

    overview = count_by("@http.status_code:*", every, "http.status_code")  # count by code
    by_code = Counter(
        {
            int(next(tag for tag in tags if tag.startswith("status_code:")).split(":")[1]): value
            for (name, tags), value in totals.items()
            if name == NS + "requests"
        }
    )
    assert by_code == overview


def test_the_query_evaluator() -> None:
    event = {"http": {"status_code": 404, "useragent_details": {"browser": {"family": "bingbot"}}}}
    assert select(BOT_ERRORS, [event]) == [event]
    assert select(FOUR_XX, [event]) == [event] and select(FIVE_XX, [event]) == []
    yandex = {
        "http": {"status_code": 500, "useragent_details": {"browser": {"family": "YandexBot"}}}
    }
    assert select(BOT_ERRORS, [yandex]) == []  # attribute values match case-sensitively
    assert select("@http.status_code:[400 TO 599]", [{"http": {}}]) == []  # absent: no match

"""Datadog's own Gunicorn pipeline samples give the attribute values Datadog's pipeline gives."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from logpipe import AccessParser, ErrorParser
from tests.conftest import FIXTURES, flatten

SAMPLES = yaml.safe_load((FIXTURES / "datadog" / "pipeline-samples.yaml").read_text("utf-8"))
CASES = SAMPLES["pipeline_test_cases"]


def _parse(case: dict[str, Any]) -> dict[str, Any]:
    if case["id"].startswith("access"):
        return AccessParser().parse(case["sample"])
    return ErrorParser().parse(case["sample"])


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_pipeline_test_case(case: dict[str, Any]) -> None:
    event = _parse(case)
    flat = flatten(event)
    expected = flatten(case["expected"]["custom"])
    if "date_access" in expected:  # Datadog's date remapper source: epoch ms, an integer
        assert type(event["date_access"]) is int
        assert event["date_access"] == event["timestamp"]
    for key, value in expected.items():
        assert flat.get(key) == value, key
    assert event["timestamp"] == case["expected"]["timestamp"]
    assert event["message"] == case["expected"]["message"]
    assert event["status"] == case["derived_status"]
    assert "parse_error" not in event.get("logpipe", {})


@pytest.mark.parametrize("sample", SAMPLES["grok_samples"], ids=lambda sample: sample["id"])
def test_grok_samples_parse(sample: dict[str, Any]) -> None:
    kind = sample["matched_rule"]
    parser = AccessParser() if kind.startswith("access") else ErrorParser()
    event = parser.parse(sample["sample"])
    assert "parse_error" not in event.get("logpipe", {})
    if kind == "error_format":
        assert event["error"]["message"] == "in app: Exception on /api/users [POST]"
        assert event["error"]["stack"].startswith('File "/usr/local/lib/python3.5')


def test_status_categories_match_the_pipeline() -> None:
    parser = AccessParser()
    line = '1.2.3.4 - - [13/Jul/2016:10:55:36 +0000] "GET / HTTP/1.1" {} 1 "-" "-"'
    for rule in SAMPLES["status_categories"]:
        low, high = rule["range"]
        for code in (low, high):
            event = parser.parse(line.format(code))
            assert event["http"]["status_category"] == rule["category"]
            assert event["http"]["status_class"] == f"{code // 100}xx"
    teapot = parser.parse(line.format(101))
    assert "status_category" not in teapot["http"]
    assert teapot["status"] == "info"


def test_multiline_rule_is_our_default() -> None:
    from logpipe.sources.multiline import DEFAULT_START

    assert SAMPLES["multi_line_rule"]["pattern"] == DEFAULT_START

"""Derived attributes: query strings read exactly as the standard library reads them."""

from __future__ import annotations

import pickle
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logpipe import AccessParser
from logpipe.parsing.attributes import query_map

QUERY_TEXT = st.text(alphabet=st.sampled_from("ab=&+%;2F0cé\u00ff xZ"), max_size=40)


def reference(query: str) -> dict[str, Any]:
    """The standard library's fields, a repeated name's values gathered in a list."""
    gathered: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        gathered.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in gathered.items()}


@given(QUERY_TEXT | st.text(max_size=40))
def test_query_map_reads_fields_as_parse_qsl_does(query: str) -> None:
    assert query_map(query) == reference(query)


def test_query_map_examples() -> None:
    assert query_map("a=1&b=2&b=3&flag&&q=caf%C3%A9+au+lait&bad=%ZZ%ff") == {
        "a": "1",
        "b": ["2", "3"],
        "flag": "",
        "q": "café au lait",
        "bad": "%ZZ\ufffd",
    }


def test_memoized_details_are_frozen_not_shared_mutably() -> None:
    """Two events of one URL share its details: changing them is refused, a copy is free."""
    parser = AccessParser()
    text = '1.2.3.4 - - [25/Nov/2026:04:22:59 +0000] "GET /a?b=1&b=2 HTTP/1.1" 200 5 "-" "curl/8"'
    first, second = parser.parse(text), parser.parse(text)
    details = first["http"]["url_details"]
    assert details is second["http"]["url_details"]
    with pytest.raises(TypeError, match="shared between events"):
        details["path"] = "/b"
    with pytest.raises(TypeError):
        details["queryString"].update(c="3")
    assert details["queryString"]["b"] == ("1", "2")
    copy = dict(details)
    copy["path"] = "/b"
    assert second["http"]["url_details"]["path"] == "/a"
    assert pickle.loads(pickle.dumps(first)) == first

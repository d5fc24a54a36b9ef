"""Derived attributes: query strings read exactly as the standard library reads them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

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

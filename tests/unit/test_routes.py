"""Routes: request paths with their ids collapsed, for the report's top 4xx and 5xx tables."""

from __future__ import annotations

import string
import uuid

from hypothesis import given
from hypothesis import strategies as st

from logpipe.backfill.routes import HEX, ID, TOKEN, UUID, route

WORDS = ["api", "v1", "v2", "orders", "users", "static", "app.js", "health", "login", "", "%20"]
word = st.sampled_from(WORDS) | st.text(string.ascii_lowercase + "-_.", min_size=1, max_size=12)
number = st.integers(min_value=0, max_value=10**12).map(str)
uuids = st.uuids().map(str)
hexes = (
    st.binary(min_size=4, max_size=20)
    .map(bytes.hex)
    .filter(lambda text: any(c.isdigit() for c in text) and not text.isdigit())
)
tokens = st.text(string.ascii_letters + string.digits + "-_", min_size=16, max_size=40).filter(
    lambda text: any(c.isdigit() for c in text) and any(c not in string.hexdigits for c in text)
)
ids = st.one_of(
    number.map(lambda text: (text, ID)),
    uuids.map(lambda text: (text, UUID)),
    hexes.map(lambda text: (text, HEX)),
    tokens.map(lambda text: (text, TOKEN)),
)


def test_examples() -> None:
    assert route("/api/v1/orders/1234") == "/api/v1/orders/{id}"
    assert route("/users/42/orders/7") == "/users/{id}/orders/{id}"
    assert route(f"/files/{uuid.UUID(int=7)}") == "/files/{uuid}"
    assert route("/commits/3f9c1b2a7d") == "/commits/{hex}"
    assert route("/reset/eyJhbGciOiJIUzI1NiJ9x") == "/reset/{token}"
    for kept in [
        "/",
        "/api/v1/users",
        "/static/app.3f9c1b.js",
        "/deadbeef",
        "/v2",
        "/getUserPreferences",
    ]:
        assert route(kept) == kept
    assert route("/p/١٢٣") == "/p/١٢٣"  # only ASCII digits make a number


@given(st.lists(st.one_of(word.map(lambda text: (text, text)), ids), max_size=8))
def test_ids_collapse_and_words_stay(segments: list[tuple[str, str]]) -> None:
    """Each id segment becomes its placeholder, each word stays, the slashes stay put."""
    path = "/" + "/".join(text for text, _ in segments)
    expected = "/" + "/".join(pattern for _, pattern in segments)
    assert route(path) == expected


@given(st.text(max_size=60))
def test_a_route_is_its_own_route(path: str) -> None:
    once = route(path)
    assert route(once) == once
    assert once.count("/") == path.count("/")


@given(st.lists(st.one_of(word, number), min_size=1, max_size=6), st.data())
def test_paths_differing_only_in_numbers_share_a_route(
    segments: list[str], data: st.DataObject
) -> None:
    other = [data.draw(number) if segment.isdigit() else segment for segment in segments]
    assert route("/" + "/".join(segments)) == route("/" + "/".join(other))

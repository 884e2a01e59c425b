"""Cache keys: a canonical encoding, so different questions never share a key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshauth.client._keys import l2_key, request_key
from meshauth.wire import Resource, Subject


def key(sid: str, action: str, rid: str, props: dict[str, object] | None = None) -> bytes:
    return request_key("s", Subject("User", sid, props), action, Resource("Doc", rid), None)


def test_delimiter_inside_a_part_cannot_collide() -> None:
    """Moving a separator-like character between parts changes the key (GHSA-8396-jffm-qx4w)."""
    assert key("a|b", "view", "c") != key("a", "b|view", "c")
    assert key("a:", "view", "c") != key("a", ":view", "c")
    assert key("a\x00", "view", "c") != key("a", "\x00view", "c")


def test_property_order_does_not_matter() -> None:
    """Equal properties in another order give the same key."""
    assert key("a", "v", "r", {"x": 1, "y": 2}) == key("a", "v", "r", {"y": 2, "x": 1})


def test_state_is_part_of_the_l2_key() -> None:
    """The same question at another revision or entity version has another L2 key."""
    k = key("a", "v", "r")
    assert len({l2_key("p:", (1, None, k)), l2_key("p:", (2, None, k)), l2_key("p:", (1, 5, k))}) == 3


@given(st.lists(st.text(max_size=6), min_size=3, max_size=3), st.lists(st.text(max_size=6), min_size=3, max_size=3))
def test_distinct_questions_have_distinct_keys(a: list[str], b: list[str]) -> None:
    """Property: two questions share a key only if they are the same question."""
    if a != b:
        assert key(a[0], a[1], a[2]) != key(b[0], b[1], b[2])

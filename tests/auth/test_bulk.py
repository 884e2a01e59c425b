"""Bulk items checked one by one (``meshauth.auth.bulk``): a hostile item is refused by its index."""

from __future__ import annotations

from meshauth.auth.bulk import plan_clients, plan_users


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_items_nested_past_the_recursion_limit_are_refused_by_index() -> None:
    """An item nested deeper than the interpreter can recurse (a JSON Lines file decoded at a shallow
    stack delivers one) is refused with its index; the others are checked. Before, the NUL check raised
    RecursionError and the whole import ended in a traceback."""
    deep = _nested(5_000)
    users = [
        {"username": "ok", "password": "password-1"},
        {"username": "deep", "password": "password-1", "attributes": {"a": deep}},
        {"username": deep, "password": "password-1"},
    ]
    valid, refused = plan_users(users, [1, 2, 3])
    assert [u.username for u in valid] == ["ok"]
    assert [r.index for r in refused] == [2, 3]
    assert all("nest" in r.reason for r in refused)
    _, refused = plan_clients([{"client_id": "c", "client_secret": "secret-123", "scopes": deep}])
    assert [r.index for r in refused] == [0]

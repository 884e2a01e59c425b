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


def test_a_bad_client_secret_hash_is_named_as_such() -> None:
    """Every refusal of a pre-hashed client secret names ``client_secret_hash``, the field the admin
    sent, not ``password_hash``."""
    bad = [
        "$argon2i$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        7,
    ]
    _, refused = plan_clients([{"client_id": f"c{n}", "client_secret_hash": h} for n, h in enumerate(bad)])
    assert len(refused) == len(bad)
    assert all(r.reason.startswith("client_secret_hash") for r in refused), refused

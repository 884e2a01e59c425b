"""ExpiringMap: deadlines are honoured on read, size stays bounded."""

from __future__ import annotations

import time

import pytest

from meshauth.cache import ExpiringMap


def test_returns_value_before_deadline() -> None:
    """A live entry is returned."""
    m: ExpiringMap[str, int] = ExpiringMap(maxsize=10)
    m.set("a", 1, time.time() + 60)
    assert m.get("a") == 1


def test_never_returns_expired_value() -> None:
    """An entry read at or after its deadline is gone."""
    m: ExpiringMap[str, int] = ExpiringMap(maxsize=10)
    m.set("a", 1, time.time() + 60)
    assert m.get("a", now=time.time() + 61) is None
    assert len(m) == 0


def test_past_deadline_is_not_stored() -> None:
    """Setting an already-expired entry stores nothing."""
    m: ExpiringMap[str, int] = ExpiringMap(maxsize=10)
    m.set("a", 1, time.time() - 1)
    assert len(m) == 0


def test_size_is_bounded_oldest_first() -> None:
    """When full, the oldest insertions go first; the newest stay."""
    m: ExpiringMap[int, int] = ExpiringMap(maxsize=100)
    deadline = time.time() + 60
    for i in range(1000):
        m.set(i, i, deadline)
    assert len(m) <= 100
    assert m.get(999) == 999
    assert m.get(0) is None


def test_expired_entries_are_evicted_before_live_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eviction drops expired entries before live ones."""
    m: ExpiringMap[str, int] = ExpiringMap(maxsize=2)
    now = time.time()
    m.set("live", 1, now + 60)
    m.set("dead", 2, now + 1)
    monkeypatch.setattr(time, "time", lambda: now + 2)  # the clock the map reads: "dead" has expired
    m.set("new", 3, now + 60)
    assert m.get("live") == 1
    assert m.get("new") == 3


def test_pop_and_clear() -> None:
    """pop and clear remove entries."""
    m: ExpiringMap[str, int] = ExpiringMap(maxsize=10)
    m.set("a", 1, time.time() + 60)
    m.set("b", 2, time.time() + 60)
    m.pop("a")
    assert m.get("a") is None
    m.clear()
    assert len(m) == 0


def test_maxsize_validated() -> None:
    """A zero size is a clear error."""
    with pytest.raises(ValueError, match="maxsize"):
        ExpiringMap(maxsize=0)

"""The per-store entity cache: bounded, and cleared one store at a time."""

from __future__ import annotations

import time

from meshauth.policy.entity_cache import EntityCache


def test_cache_is_bounded() -> None:
    """The cache evicts the least recently used entries past its size."""
    cache = EntityCache(max_entries=2)
    cache.put_many("s", {("U", "1"): None, ("U", "2"): None, ("U", "3"): None})
    assert len(cache) == 2


def test_clearing_one_store_keeps_the_others_and_does_not_scan_them() -> None:
    """Loading a store clears its cached entities: with 1,000 stores that must cost each store's
    own entries, not a scan of the whole cache per store (issue 8: many stores)."""
    cache = EntityCache(max_entries=150_000)
    for s in range(1_000):
        cache.put_many(f"t{s}", {("User", f"u{n}"): None for n in range(100)})
    started = time.perf_counter()
    for s in range(1, 1_000):
        cache.clear_store(f"t{s}")
    assert time.perf_counter() - started < 1.0  # a scan per store: 1,000 × 100,000 entries
    assert len(cache) == 100
    hits, misses = cache.get_many("t0", [("User", "u0"), ("User", "u100")])
    assert (list(hits), misses) == ([("User", "u0")], [("User", "u100")])


def test_eviction_keeps_the_per_store_index_consistent() -> None:
    """An entry evicted by the bound is gone from its store's index too (a later clear is exact)."""
    cache = EntityCache(max_entries=2)
    cache.put_many("a", {("User", "1"): None, ("User", "2"): None})
    cache.put_many("b", {("User", "3"): None})  # evicts a/1
    cache.clear_store("a")
    assert len(cache) == 1
    assert cache.get_many("b", [("User", "3")])[1] == []


def test_lookups_are_counted_as_hits_and_misses_per_uid() -> None:
    """``meshauth_policy_entity_cache_total{outcome}``: one count per uid looked up (a known-absent
    entity is a hit too); a switched-off cache counts nothing."""
    from meshauth.policy.metrics import ENTITY_CACHE

    before = {o: ENTITY_CACHE.counts[(o,)] for o in ("hit", "miss")}
    cache = EntityCache(max_entries=10)
    cache.put_many("s", {("U", "1"): None})
    cache.get_many("s", [("U", "1"), ("U", "2"), ("U", "3")])
    assert ENTITY_CACHE.counts[("hit",)] - before["hit"] == 1
    assert ENTITY_CACHE.counts[("miss",)] - before["miss"] == 2
    EntityCache(max_entries=10, enabled=False).get_many("s", [("U", "1")])
    assert ENTITY_CACHE.counts[("miss",)] - before["miss"] == 2

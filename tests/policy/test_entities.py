"""Entities: upload validation, the level-by-level loader, the cache, bulk writes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshauth.db import create_engine
from meshauth.http import ApiError
from meshauth.policy import stores
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_loader import EntityLoader
from meshauth.policy.entity_record import EntityRecord, entity_refs
from meshauth.policy.entity_store import upsert_entities
from meshauth.policy.entity_upload import normalize_upload
from tests.policy.conftest import entity


def test_entity_refs_finds_both_forms() -> None:
    """References are found as ``{"__entity": …}`` and as bare ``{type, id}``, nested anywhere."""
    attrs = {"owner": {"__entity": {"type": "User", "id": "a"}}, "team": [{"type": "Group", "id": "g"}], "n": 1}
    assert sorted(entity_refs(attrs)) == [("Group", "g"), ("User", "a")]


def test_normalize_upload_last_duplicate_wins() -> None:
    """Two entries for one uid keep the later one."""
    out = normalize_upload([entity("User:a", {"n": 1}), entity("User:a", {"n": 2})])
    assert len(out) == 1
    assert EntityRecord.from_json(out[0][1]).uid == ("User", "a")
    assert b'"n":2' in out[0][1]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"uid": {"type": "User"}, "attrs": {}, "parents": []}, "entities[0].uid.id"),
        ({"uid": {"type": "has", "id": "x"}}, "entities[0].uid.type"),
        ({"uid": {"type": "User", "id": "x"}, "attrs": []}, "entities[0].attrs"),
        ({"uid": {"type": "User", "id": "x"}, "parents": [{"type": "G"}]}, "entities[0].parents[0].id"),
        ({"uid": {"type": "User", "id": "x"}, "color": "red"}, "entities[0].color"),
        ("User::x", "entities[0]"),
    ],
)
def test_normalize_upload_names_the_bad_field(bad: object, field: str) -> None:
    """Each malformed entity is a 400 naming its exact field."""
    with pytest.raises(ApiError) as info:
        normalize_upload([bad])
    assert info.value.status == 400
    assert info.value.extra["field"] == field


# User a (in g1, in g2) → boss b → boss c
BOSS_CHAIN = [
    entity("User:a", {"boss": {"__entity": {"type": "User", "id": "b"}}}, parents=("Group:g1",)),
    entity("Group:g1", parents=("Group:g2",)),
    entity("Group:g2"),
    entity("User:b", {"boss": {"__entity": {"type": "User", "id": "c"}}}),
    entity("User:c"),
]


async def _seed(db_url: str, items: list[dict[str, object]]) -> None:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await stores.ensure(conn, "s")
        await upsert_entities(conn, "s", normalize_upload(items))
    await engine.dispose()


async def test_loader_follows_parents_and_refs(db_url: str) -> None:
    """The loader returns the roots, all their ancestors, and entities they reference, transitively
    (a policy may follow ``principal.boss.boss``), one query per level."""
    await _seed(db_url, BOSS_CHAIN)
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=1, max_depth=8)
    found = await loader.load("s", [("User", "a")])
    await engine.dispose()
    assert set(found) == {("User", "a"), ("Group", "g1"), ("Group", "g2"), ("User", "b"), ("User", "c")}
    assert loader.queries == 3  # one per level: a; g1 + b; g2 + c


async def test_loader_caches_hits_and_misses(db_url: str) -> None:
    """A second load of the same uids, present or absent, makes no query."""
    await _seed(db_url, [entity("User:a")])
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=0, max_depth=8)
    await loader.load("s", [("User", "a"), ("User", "missing")])
    before = loader.queries
    found = await loader.load("s", [("User", "a"), ("User", "missing")])
    await engine.dispose()
    assert loader.queries == before
    assert set(found) == {("User", "a")}


def test_cache_is_bounded() -> None:
    """The cache evicts the least recently used entries past its size."""
    cache = EntityCache(max_entries=2)
    cache.put_many("s", {("U", "1"): None, ("U", "2"): None, ("U", "3"): None})
    assert len(cache) == 2


async def test_bulk_upsert_is_batched(db_url: str) -> None:
    """20,000 entities load in one transaction in a few seconds (100,000 in < 30 s: docs/performance.md)."""
    items = [entity(f"User:u{n}", {"n": n}, parents=(f"Group:g{n % 50}",)) for n in range(20_000)]
    start = time.perf_counter()
    await _seed(db_url, items)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=10), ref_depth=0, max_depth=1)
    found = await loader.load("s", [("User", "u19999")])
    await engine.dispose()
    assert b'"n":19999' in found[("User", "u19999")].json


class _PausingConnection:
    """A connection whose queries return their rows, then wait for ``release`` (after ``read``)."""

    def __init__(self, conn: Any, read: asyncio.Event, release: asyncio.Event) -> None:
        self._conn, self._read, self._release = conn, read, release

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._conn.execute(*args, **kwargs)
        rows = list(result)
        self._read.set()
        await self._release.wait()
        return rows


class _PausingEngine:
    def __init__(self, engine: Any, read: asyncio.Event, release: asyncio.Event) -> None:
        self._engine, self._read, self._release = engine, read, release

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[_PausingConnection]:
        async with self._engine.connect() as conn:
            yield _PausingConnection(conn, self._read, self._release)


async def test_read_overtaken_by_a_write_does_not_cache_the_old_row(db_url: str) -> None:
    """A cache miss whose query ran before a write (which dropped the uid) must not put the old row
    in the cache after the write: the next load reads the new row."""
    await _seed(db_url, [entity("User:a", {"n": 1})])
    engine = create_engine(db_url)
    cache = EntityCache(max_entries=100)
    read, release = asyncio.Event(), asyncio.Event()
    slow = EntityLoader(_PausingEngine(engine, read, release), cache, ref_depth=0, max_depth=8)  # type: ignore[arg-type]
    pending = asyncio.create_task(slow.load("s", [("User", "a")]))
    await read.wait()  # the old row has been read, not yet cached
    async with engine.begin() as conn:
        await upsert_entities(conn, "s", normalize_upload([entity("User:a", {"n": 2})]))
    cache.drop("s", [("User", "a")])  # what the admin API does after committing
    release.set()
    assert b'"n":1' in (await pending)[("User", "a")].json  # that read itself saw the old row
    fresh = await EntityLoader(engine, cache, ref_depth=0, max_depth=8).load("s", [("User", "a")])
    await engine.dispose()
    assert b'"n":2' in fresh[("User", "a")].json


async def test_loader_follows_references_only_as_deep_as_asked(db_url: str) -> None:
    """With ``ref_hops`` (what the policies can reach) the loader stops there; parents are still
    followed to the top."""
    await _seed(db_url, BOSS_CHAIN)
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=0, max_depth=8)
    found = await loader.load("s", [("User", "a")], ref_hops=1)
    await engine.dispose()
    assert set(found) == {("User", "a"), ("Group", "g1"), ("Group", "g2"), ("User", "b")}


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

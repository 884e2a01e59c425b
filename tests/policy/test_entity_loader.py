"""The batch loader: one query per graph level, cache first, never caching a row a write overtook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from meshauth.db import create_engine
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_loader import EntityLoader
from meshauth.policy.entity_store import upsert_entities
from meshauth.policy.entity_upload import normalize_upload
from tests.policy.conftest import entity, seed_entities

# User a (in g1, in g2) → boss b → boss c
BOSS_CHAIN = [
    entity("User:a", {"boss": {"__entity": {"type": "User", "id": "b"}}}, parents=("Group:g1",)),
    entity("Group:g1", parents=("Group:g2",)),
    entity("Group:g2"),
    entity("User:b", {"boss": {"__entity": {"type": "User", "id": "c"}}}),
    entity("User:c"),
]


async def test_loader_follows_parents_and_refs(db_url: str) -> None:
    """The loader returns the roots, all their ancestors, and entities they reference, transitively
    (a policy may follow ``principal.boss.boss``), one query per level."""
    await seed_entities(db_url, BOSS_CHAIN)
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=1, max_depth=8)
    found = await loader.load("s", [("User", "a")])
    await engine.dispose()
    assert set(found) == {("User", "a"), ("Group", "g1"), ("Group", "g2"), ("User", "b"), ("User", "c")}
    assert loader.queries == 3  # one per level: a; g1 + b; g2 + c


async def test_loader_caches_hits_and_misses(db_url: str) -> None:
    """A second load of the same uids, present or absent, makes no query."""
    await seed_entities(db_url, [entity("User:a")])
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=0, max_depth=8)
    await loader.load("s", [("User", "a"), ("User", "missing")])
    before = loader.queries
    found = await loader.load("s", [("User", "a"), ("User", "missing")])
    await engine.dispose()
    assert loader.queries == before
    assert set(found) == {("User", "a")}


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
    await seed_entities(db_url, [entity("User:a", {"n": 1})])
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
    await seed_entities(db_url, BOSS_CHAIN)
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=100), ref_depth=0, max_depth=8)
    found = await loader.load("s", [("User", "a")], ref_hops=1)
    await engine.dispose()
    assert set(found) == {("User", "a"), ("Group", "g1"), ("Group", "g2"), ("User", "b")}

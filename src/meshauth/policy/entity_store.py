"""A store's entities in SQL: reads, bulk writes, deletes, and the ``entities_version`` bump.

Every write to a store's entities bumps ``entities_version`` in the writer's transaction, through
:func:`bump_entities_version` alone: replicas, caches and snapshots compare that number to know
whether what they hold is current.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.db.tables import policy_entities, policy_stores
from meshauth.policy.cedar import Uid
from meshauth.policy.entity_record import EntityRecord, uid_key


class _Ref(msgspec.Struct):
    type: str
    id: str


class _Parents(msgspec.Struct):
    parents: list[_Ref] = []


_parents_decoder = msgspec.json.Decoder(_Parents)


def parents_of(data: bytes) -> tuple[Uid, ...]:
    """The parents of an entity in the upload form (``normalize_upload``), read without its attributes:
    ~3x faster than :meth:`EntityRecord.from_json` (0.14 s against 0.48 s for 100,000 entities)."""
    return tuple((p.type, p.id) for p in _parents_decoder.decode(data).parents)


QUERY_CHUNK = 2000  # uids per IN (…): under SQLite's and asyncpg's bind-parameter limits
WRITE_CHUNK = 10_000  # rows per executemany round trip


async def read_records(conn: AsyncConnection, store: str, keys: Sequence[str]) -> list[tuple[str, EntityRecord]]:
    """The stored entities among ``keys`` (:func:`uid_key` form), as ``(key, record)``; absent keys
    are left out. Chunked under the databases' bind-parameter limits."""
    found: list[tuple[str, EntityRecord]] = []
    for i in range(0, len(keys), QUERY_CHUNK):
        rows = await conn.execute(
            sa.select(policy_entities.c.uid, policy_entities.c.data).where(
                policy_entities.c.store == store, policy_entities.c.uid.in_(keys[i : i + QUERY_CHUNK])
            )
        )
        found.extend((key, EntityRecord.from_json(data)) for key, data in rows)
    return found


async def read_records_at(
    conn: AsyncConnection, store: str, keys: Sequence[str]
) -> tuple[set[int | None], list[tuple[str, EntityRecord]]]:
    """:func:`read_records`, with the store's ``entities_version`` each statement read them at (one
    per chunk; None when the store row is missing). The version comes from the same statement, so it
    is the version of exactly those rows, found or absent: a reader whose statements all saw one
    version read one committed state (every entity write bumps it in its transaction)."""
    versions: set[int | None] = set()
    found: list[tuple[str, EntityRecord]] = []
    for i in range(0, len(keys), QUERY_CHUNK):
        on = sa.and_(
            policy_entities.c.store == policy_stores.c.name, policy_entities.c.uid.in_(keys[i : i + QUERY_CHUNK])
        )
        rows = await conn.execute(
            sa.select(policy_stores.c.entities_version, policy_entities.c.uid, policy_entities.c.data)
            .select_from(policy_stores.outerjoin(policy_entities, on))
            .where(policy_stores.c.name == store)
        )
        seen = False
        for version, key, data in rows:
            seen = True
            versions.add(int(version))
            if key is not None:
                found.append((key, EntityRecord.from_json(data)))
        if not seen:
            versions.add(None)
    return versions, found


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def upsert_entities(conn: AsyncConnection, store: str, entities: Sequence[tuple[Uid, bytes]]) -> int:
    """Write ``entities`` in the caller's transaction; returns the store's new ``entities_version``.

    One parameterised ``INSERT … ON CONFLICT DO UPDATE`` run with executemany: measured 2.6 s for
    100,000 rows on SQLite, against 14.6 s for the same rows as 1,000-row multi-VALUES statements.
    """
    now = int(time.time())
    insert = _upsert(conn.dialect.name)
    stmt = insert(policy_entities)
    stmt = stmt.on_conflict_do_update(
        index_elements=[policy_entities.c.store, policy_entities.c.uid],
        set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
    )
    for i in range(0, len(entities), WRITE_CHUNK):
        rows = [
            {"store": store, "uid": uid_key(uid), "data": data.decode(), "updated_at": now}
            for uid, data in entities[i : i + WRITE_CHUNK]
        ]
        await conn.execute(stmt, rows)
    return await bump_entities_version(conn, store)


async def delete_entity(conn: AsyncConnection, store: str, uid: Uid) -> int | None:
    """Delete one entity; returns the new ``entities_version``, or None when there was no such entity."""
    result = await conn.execute(
        sa.delete(policy_entities).where(policy_entities.c.store == store, policy_entities.c.uid == uid_key(uid))
    )
    if result.rowcount == 0:
        return None
    return await bump_entities_version(conn, store)


async def bump_entities_version(conn: AsyncConnection, store: str) -> int:
    """The store's entities changed (in the caller's transaction): returns the new version."""
    row = await conn.execute(
        sa.update(policy_stores)
        .where(policy_stores.c.name == store)
        .values(entities_version=policy_stores.c.entities_version + 1)
        .returning(policy_stores.c.entities_version)
    )
    return int(row.scalar_one())


async def read_entity(engine: AsyncEngine, store: str, uid: Uid) -> bytes | None:
    async with engine.connect() as conn:
        data = await conn.scalar(
            sa.select(policy_entities.c.data).where(
                policy_entities.c.store == store, policy_entities.c.uid == uid_key(uid)
            )
        )
    return None if data is None else str(data).encode()


async def find_cycle(conn: AsyncConnection, store: str, uploaded: Mapping[Uid, Sequence[Uid]]) -> list[Uid] | None:
    """A parent cycle reachable from an uploaded entity once ``uploaded`` (uid → parents) replaces what is
    stored, as ``[u, …, u]``; None when there is none. Cedar checks an upload's own entities only, so
    a cycle closed across uploads (``a → b`` stored, ``b → a`` uploaded) would be written, and every
    decision reaching it then fails. Reads the stored ancestors level by level (one chunked query per
    level), then walks without recursion."""
    graph: dict[Uid, Sequence[Uid]] = dict(uploaded)
    frontier = {p for parents in uploaded.values() for p in parents if p not in graph}
    while frontier:
        keys = [uid_key(u) for u in frontier]
        found = {record.uid: record.parents for _, record in await read_records(conn, store, keys)}
        for uid in frontier:
            graph[uid] = found.get(uid, ())  # a parent not stored has no parents
        frontier = {p for uid in frontier for p in graph[uid] if p not in graph}
    # Depth-first from each uploaded entity; a parent on the current path closes a cycle. A cycle
    # among stored entities that the upload reaches is refused too: the uploaded entity's decisions
    # would fail on it all the same (an upload that re-parents one of them breaks it, and passes).
    done: set[Uid] = set()
    for start in uploaded:
        if start in done:
            continue
        path: list[Uid] = [start]
        on_path = {start}
        stack = [iter(graph[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(graph.get(nxt, ())))
    return None

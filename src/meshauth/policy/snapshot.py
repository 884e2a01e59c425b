"""Whole-store entity snapshots: one parsed Cedar ``Entities`` handle per (store, entities version).

Parsing entities is the largest per-request cost after the engine itself (~10 µs per entity), and
a handle's size barely changes the cost of a decision (docs/performance.md). So a store with at
most ``max_entities`` entities is also kept whole, parsed once, and requests without
``properties`` are evaluated against it with no loading or parsing at all — and with exactly the
store's data, not just what the loader reached.

Freshness: a snapshot is used only while its ``entities_version`` and ``revision`` (the schema
decides how entities parse) equal what this process knows the store is at. After any write the
snapshot is stale and requests go through the loader (always current) until the rebuild lands.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.db.tables import policy_entities, policy_stores
from meshauth.policy.cedar import Entities, Schema, Uid

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder()
REBUILD_PAUSE_SECONDS = 0.2  # between back-to-back rebuilds of a store under a stream of writes


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    entities_version: int
    handle: Entities
    # Parents of every stored entity whose type is an action type (``Action``, ``App::Action``).
    action_parents: dict[Uid, tuple[Uid, ...]]
    size: int


async def read_snapshot(
    engine: AsyncEngine, store: str, *, max_entities: int, revision: int, schema: Schema | None
) -> Snapshot | None:
    """Read and parse the store's entities; None when the store is too big or changed meanwhile."""

    async def version() -> int | None:
        async with engine.connect() as conn:
            v = await conn.scalar(sa.select(policy_stores.c.entities_version).where(policy_stores.c.name == store))
        return None if v is None else int(v)

    before = await version()
    if before is None:
        return None
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(policy_entities).where(policy_entities.c.store == store)
        )
        if int(count or 0) > max_entities:
            return None
        rows = (await conn.execute(sa.select(policy_entities.c.data).where(policy_entities.c.store == store))).all()
    # A writer bumps entities_version in the same transaction as its rows: equal versions before and
    # after the read mean no write committed in between, so the rows are one consistent state.
    if await version() != before:
        return None
    return await _snapshot(store, [r[0] for r in rows], revision=revision, entities_version=before, schema=schema)


async def read_small_snapshot(
    engine: AsyncEngine, store: str, *, limit: int, revision: int, entities_version: int, schema: Schema | None
) -> Snapshot | None:
    """At a store's first load: its entities when there are at most ``limit`` (two queries: at most
    ``limit + 1`` rows, then the version again). ``entities_version`` is what the load read before
    these rows; None when there are more entities or a write came between."""
    async with engine.connect() as conn:
        query = sa.select(policy_entities.c.data).where(policy_entities.c.store == store).limit(limit + 1)
        rows = (await conn.execute(query)).all()
        if len(rows) > limit:
            return None
        after = await conn.scalar(sa.select(policy_stores.c.entities_version).where(policy_stores.c.name == store))
    if after is None or int(after) != entities_version:
        return None
    return await _snapshot(
        store, [r[0] for r in rows], revision=revision, entities_version=entities_version, schema=schema
    )


async def _snapshot(
    store: str, rows: list[str], *, revision: int, entities_version: int, schema: Schema | None
) -> Snapshot | None:
    document = "[" + ",".join(rows) + "]"
    actions: dict[Uid, tuple[Uid, ...]] = {}
    for data in rows:
        if '"Action"' in data or '::Action"' in data:
            entity = _decoder.decode(data)
            uid = entity["uid"]
            if uid["type"] == "Action" or uid["type"].endswith("::Action"):
                actions[(uid["type"], uid["id"])] = tuple((p["type"], p["id"]) for p in entity.get("parents", ()))
    try:
        handle = await asyncio.to_thread(_parse, document, schema)
    except ValueError:
        log.warning("entities of store %r do not parse as a whole; serving them through the loader", store)
        return None
    return Snapshot(revision, entities_version, handle, actions, len(rows))


def _parse(document: str, schema: Schema | None) -> Entities:
    return Entities.from_json_str(document, schema, release_gil=True)

"""Policy stores in SQL: versions, activation, schema, deletion. Every function runs inside the
caller's transaction, so an operation either fully happens or not at all.

Revisions come from ``UPDATE … SET revision = revision + 1 … RETURNING``: atomic on SQLite and
PostgreSQL alike, so two replicas (or the CLI and a replica) can never hand out the same revision.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from meshauth.db.tables import policy_entities, policy_stores, policy_versions
from meshauth.policy.entity_store import bump_entities_version

DEFAULT_STORE = "default"
# Whose attribute wins when a decision request's ``properties`` name one the stored entity holds.
# "request" (the default, and the AuthZEN reading: the caller describes the entity as it is now) or
# "stored" (the store is the authority: a caller cannot undo a stored ``suspended: true``).
PRECEDENCES = ("request", "stored")


@dataclass(frozen=True, slots=True)
class StoreRow:
    name: str
    revision: int
    active_version: int | None
    schema_text: str | None
    schema_format: str | None
    entities_version: int
    deleted: bool
    attribute_precedence: str = "request"


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    author: str
    sha256: str
    created_at: int

    def as_json(self, active: int | None) -> dict[str, Any]:
        return {
            "version": self.version,
            "author": self.author,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "active": self.version == active,
        }


_STORE_COLS = (
    policy_stores.c.name,
    policy_stores.c.revision,
    policy_stores.c.active_version,
    policy_stores.c.schema_text,
    policy_stores.c.schema_format,
    policy_stores.c.entities_version,
    policy_stores.c.deleted,
    policy_stores.c.attribute_precedence,
)


def _row(r: Any) -> StoreRow:
    # Fail closed on a value this code does not know (written by hand, or by a newer release).
    precedence = r[7] if r[7] in PRECEDENCES else "stored"
    return StoreRow(r[0], int(r[1]), r[2], r[3], r[4], int(r[5]), bool(r[6]), precedence)


async def lock(conn: AsyncConnection, name: str) -> None:
    """Take the store row's write lock before the transaction reads anything: PostgreSQL's row lock
    (every later statement of the transaction then sees the writes committed before it), SQLite's
    writer lock. A no-op update, so it changes nothing. Every admin write takes it first: an
    activation that read the store before a deletion committed activated a version of a deleted
    store (or a version the new schema refuses), a state neither order gives."""
    await conn.execute(
        sa.update(policy_stores).where(policy_stores.c.name == name).values(revision=policy_stores.c.revision)
    )


async def get(conn: AsyncConnection, name: str) -> StoreRow | None:
    """The store, or None when it does not exist or was deleted (``default`` always exists)."""
    r = (await conn.execute(sa.select(*_STORE_COLS).where(policy_stores.c.name == name))).first()
    if r is None or r[6]:
        if name == DEFAULT_STORE:
            return await ensure(conn, name)
        return None
    return _row(r)


async def get_with_text(conn: AsyncConnection, name: str) -> tuple[StoreRow, str] | None:
    """The store and its active version's text ("" when none is active), in one round trip: what a
    worker reads to load a store (None as :func:`get` answers None)."""
    active = policy_versions.alias("active")
    on = sa.and_(active.c.store == policy_stores.c.name, active.c.version == policy_stores.c.active_version)
    r = (
        await conn.execute(
            sa.select(*_STORE_COLS, active.c.text)
            .select_from(policy_stores.outerjoin(active, on))
            .where(policy_stores.c.name == name)
        )
    ).first()
    if r is None or r[6]:
        if name != DEFAULT_STORE:
            return None
        row = await ensure(conn, name)
        text = await version_text(conn, name, row.active_version) if row.active_version is not None else None
        return row, text or ""
    return _row(r), "" if r[8] is None else str(r[8])


async def ensure(conn: AsyncConnection, name: str) -> StoreRow:
    """The store, created (or brought back from deletion) when needed."""
    now = int(time.time())
    r = (await conn.execute(sa.select(*_STORE_COLS).where(policy_stores.c.name == name))).first()
    if r is None:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    sa.insert(policy_stores).values(
                        name=name,
                        revision=0,
                        active_version=None,
                        last_version=0,
                        entities_version=0,
                        deleted=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            pass  # created concurrently by another writer: fine, read it below
    elif r[6]:
        await conn.execute(
            sa.update(policy_stores).where(policy_stores.c.name == name).values(deleted=False, updated_at=now)
        )
    r = (await conn.execute(sa.select(*_STORE_COLS).where(policy_stores.c.name == name))).one()
    return _row(r)


async def add_version(conn: AsyncConnection, name: str, text: str, author: str) -> int:
    version = await conn.scalar(
        sa.update(policy_stores)
        .where(policy_stores.c.name == name)
        .values(last_version=policy_stores.c.last_version + 1)
        .returning(policy_stores.c.last_version)
    )
    assert version is not None
    await conn.execute(
        sa.insert(policy_versions).values(
            store=name,
            version=version,
            text=text,
            author=author[:128],
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            created_at=int(time.time()),
        )
    )
    return int(version)


async def version_text(conn: AsyncConnection, name: str, version: int) -> str | None:
    text = await conn.scalar(
        sa.select(policy_versions.c.text).where(policy_versions.c.store == name, policy_versions.c.version == version)
    )
    return None if text is None else str(text)


async def versions(conn: AsyncConnection, name: str) -> list[VersionRow]:
    rows = await conn.execute(
        sa.select(
            policy_versions.c.version,
            policy_versions.c.author,
            policy_versions.c.sha256,
            policy_versions.c.created_at,
        )
        .where(policy_versions.c.store == name)
        .order_by(policy_versions.c.version)
    )
    return [VersionRow(int(r[0]), r[1], r[2], int(r[3])) for r in rows]


async def _bump(conn: AsyncConnection, name: str, **values: Any) -> int:
    revision = await conn.scalar(
        sa.update(policy_stores)
        .where(policy_stores.c.name == name)
        .values(revision=policy_stores.c.revision + 1, updated_at=int(time.time()), **values)
        .returning(policy_stores.c.revision)
    )
    assert revision is not None
    return int(revision)


async def activate(conn: AsyncConnection, name: str, version: int) -> int:
    """Make ``version`` active (also a rollback); returns the new revision."""
    return await _bump(conn, name, active_version=version)


async def activated(conn: AsyncConnection, name: str, version: int) -> tuple[int, int]:
    """:func:`activate`, returning the new revision and the entities version of that very row
    (one ``UPDATE … RETURNING``): revision ``r`` differs from ``r - 1`` in its active version alone,
    which is what lets clients use answers staged at ``r - 1`` (``staged.py``)."""
    r = (
        await conn.execute(
            sa.update(policy_stores)
            .where(policy_stores.c.name == name)
            .values(revision=policy_stores.c.revision + 1, updated_at=int(time.time()), active_version=version)
            .returning(policy_stores.c.revision, policy_stores.c.entities_version)
        )
    ).one()
    return int(r[0]), int(r[1])


async def set_attribute_precedence(conn: AsyncConnection, name: str, precedence: str) -> int:
    """A new revision, like an activation: the same request may now get another answer, so no
    decision cached under the old revision (and no worker still on it) may answer for the new one."""
    return await _bump(conn, name, attribute_precedence=precedence)


async def set_schema(conn: AsyncConnection, name: str, text: str | None, fmt: str | None) -> int:
    return await _bump(conn, name, schema_text=text, schema_format=fmt)


async def delete(conn: AsyncConnection, name: str) -> int:
    """Drop versions, entities and schema; the row stays as a tombstone so revisions never repeat."""
    await conn.execute(sa.delete(policy_versions).where(policy_versions.c.store == name))
    await conn.execute(sa.delete(policy_entities).where(policy_entities.c.store == name))
    await bump_entities_version(conn, name)
    return await _bump(
        conn,
        name,
        active_version=None,
        schema_text=None,
        schema_format=None,
        deleted=name != DEFAULT_STORE,  # ``default`` always exists: deleting it empties it
    )


async def list_stores(conn: AsyncConnection) -> list[StoreRow]:
    rows = await conn.execute(
        sa.select(*_STORE_COLS).where(policy_stores.c.deleted.is_(False)).order_by(policy_stores.c.name)
    )
    return [_row(r) for r in rows]


async def heads(conn: AsyncConnection, names: list[str]) -> dict[str, tuple[int, int, bool]]:
    """``name → (revision, entities_version, deleted)``: the cheap check the refresh loop runs."""
    rows = await conn.execute(
        sa.select(
            policy_stores.c.name,
            policy_stores.c.revision,
            policy_stores.c.entities_version,
            policy_stores.c.deleted,
        ).where(policy_stores.c.name.in_(names))
    )
    return {r[0]: (int(r[1]), int(r[2]), bool(r[3])) for r in rows}

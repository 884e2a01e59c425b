"""Bulk account writes: many users or clients created or updated in one transaction, batched.

Names are looked up with one ``IN (…)`` query per chunk (existing accounts of the kind: updated;
accounts of the other kind: refused, as users and clients share one namespace), then written with
one executemany ``INSERT`` and one executemany ``UPDATE`` per chunk.

An update changes the password (secret) hash and the attributes (scopes, grant types); it never
touches ``disabled`` or ``created_at``: a bulk racing an admin's disable leaves the account disabled,
whichever commits first. A concurrent create of one of the same names makes the insert fail: the
whole transaction is rolled back and :class:`Conflict` raised (the caller answers 409; retrying is
safe, the bulk is idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.auth.bulk import ClientItem, Refusal, UserItem
from meshauth.db.tables import clients, users

__all__ = ["CHUNK", "Conflict", "Written", "write_clients", "write_users"]

CHUNK = 2000  # names per IN (…) and rows per executemany: under SQLite's and asyncpg's parameter limits
Progress = Callable[[int], None]  # rows written so far


class Conflict(Exception):
    """Another writer created one of the names meanwhile; nothing was written."""


@dataclass(slots=True)
class Written:
    committed: bool
    created: list[tuple[int, str]] = field(default_factory=list)
    updated: list[tuple[int, str]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


async def _present(conn: AsyncConnection, key: sa.Column[Any], names: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(names), CHUNK):
        rows = await conn.execute(sa.select(key).where(key.in_(names[i : i + CHUNK])))
        found.update(r[0] for r in rows)
    return found


async def _write(
    engine: AsyncEngine,
    *,
    key: sa.Column[Any],
    other: sa.Column[Any],
    other_kind: str,
    items: Sequence[UserItem | ClientItem],
    insert_rows: Callable[[int], dict[str, Any]],
    update: sa.Update,
    update_rows: Callable[[int], dict[str, Any]],
    partial: bool,
    progress: Progress | None,
) -> Written:
    """``insert_rows(n)`` / ``update_rows(n)``: the row of ``items[n]`` for an insert or an update."""
    names = [item.name for item in items]
    try:
        async with engine.begin() as conn:
            taken = await _present(conn, other, names)
            existing = await _present(conn, key, names)
            out = Written(committed=True)
            creates: list[int] = []
            updates: list[int] = []
            for n, item in enumerate(items):
                if item.name in taken:
                    out.refused.append(Refusal(item.index, f"{item.name!r} is already taken by a {other_kind}"))
                elif item.name in existing:
                    updates.append(n)
                else:
                    creates.append(n)
            if out.refused and not partial:
                return Written(committed=False, refused=out.refused)  # nothing was written: nothing to undo
            done = 0
            for i in range(0, len(creates), CHUNK):
                chunk = creates[i : i + CHUNK]
                await conn.execute(key.table.insert(), [insert_rows(n) for n in chunk])
                done += len(chunk)
                if progress is not None:
                    progress(done)
            for i in range(0, len(updates), CHUNK):
                chunk = updates[i : i + CHUNK]
                await conn.execute(update, [update_rows(n) for n in chunk])
                done += len(chunk)
                if progress is not None:
                    progress(done)
    except IntegrityError:
        raise Conflict("another writer created some of these accounts meanwhile; nothing was written") from None
    out.created = [(items[n].index, names[n]) for n in creates]
    out.updated = [(items[n].index, names[n]) for n in updates]
    return out


async def write_users(
    engine: AsyncEngine,
    items: Sequence[UserItem],
    hashes: Sequence[str],
    *,
    partial: bool,
    progress: Progress | None = None,
) -> Written:
    """Create or update ``items`` with their password hashes (``hashes[n]`` for ``items[n]``)."""
    now = int(time.time())

    def insert_row(n: int) -> dict[str, Any]:
        item = items[n]
        return {
            "username": item.username,
            "password_hash": hashes[n],
            "attributes": item.attributes,
            "disabled": False,
            "created_at": now,
        }

    def update_row(n: int) -> dict[str, Any]:
        return {"b_name": items[n].username, "b_hash": hashes[n], "b_attributes": items[n].attributes}

    update = (
        sa.update(users)
        .where(users.c.username == sa.bindparam("b_name"))
        .values(password_hash=sa.bindparam("b_hash"), attributes=sa.bindparam("b_attributes", type_=sa.JSON))
    )
    return await _write(
        engine,
        key=users.c.username,
        other=clients.c.client_id,
        other_kind="client",
        items=items,
        insert_rows=insert_row,
        update=update,
        update_rows=update_row,
        partial=partial,
        progress=progress,
    )


async def write_clients(
    engine: AsyncEngine,
    items: Sequence[ClientItem],
    hashes: Sequence[str],
    *,
    partial: bool,
    progress: Progress | None = None,
) -> Written:
    """Create or update ``items`` with their secret hashes (``hashes[n]`` for ``items[n]``)."""
    now = int(time.time())

    def insert_row(n: int) -> dict[str, Any]:
        item = items[n]
        return {
            "client_id": item.client_id,
            "secret_hash": hashes[n],
            "scopes": list(item.scopes),
            "grant_types": list(item.grant_types),
            "disabled": False,
            "created_at": now,
        }

    def update_row(n: int) -> dict[str, Any]:
        item = items[n]
        return {
            "b_name": item.client_id,
            "b_hash": hashes[n],
            "b_scopes": list(item.scopes),
            "b_grants": list(item.grant_types),
        }

    update = (
        sa.update(clients)
        .where(clients.c.client_id == sa.bindparam("b_name"))
        .values(
            secret_hash=sa.bindparam("b_hash"),
            scopes=sa.bindparam("b_scopes", type_=sa.JSON),
            grant_types=sa.bindparam("b_grants", type_=sa.JSON),
        )
    )
    return await _write(
        engine,
        key=clients.c.client_id,
        other=users.c.username,
        other_kind="user",
        items=items,
        insert_rows=insert_row,
        update=update,
        update_rows=update_row,
        partial=partial,
        progress=progress,
    )

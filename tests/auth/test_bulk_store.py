"""Bulk account writes: what concurrent writers of the same names see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.auth.bulk import ClientItem, UserItem
from meshauth.auth.bulk_store import write_clients, write_users
from meshauth.db import create_engine
from meshauth.db.tables import clients, users
from tests.bus.helpers import until


@pytest.mark.postgres
async def test_writers_in_opposite_orders_do_not_deadlock(pg_database: str) -> None:
    """A bulk naming its users in the opposite order to another transaction's waits for it, never
    deadlocks: rows are locked in one order, whatever order the items came in. Before, PostgreSQL
    aborted the bulk (answered 503 "a backing store is unavailable")."""
    engine = create_engine(pg_database)
    names = [f"order{n}" for n in range(10)]
    try:
        async with engine.begin() as conn:
            await conn.execute(
                users.insert(),
                [
                    {"username": n, "password_hash": "h", "attributes": {}, "disabled": False, "created_at": 0}
                    for n in names
                ],
            )
        items = [UserItem(i, n, None, "new", {"v": 1}) for i, n in enumerate(reversed(names))]
        async with engine.connect() as other:
            tx = await other.begin()
            # Another writer, in name order: holds the first row when the bulk starts.
            await other.execute(users.update().where(users.c.username == names[0]).values(attributes={"v": 2}))
            bulk = asyncio.create_task(write_users(engine, items, ["new"] * len(items), partial=False))
            await until(lambda: _waiting(engine, 1, bulk), what="the bulk waits on a row the other writer holds")
            await other.execute(users.update().where(users.c.username == names[-1]).values(attributes={"v": 2}))
            await tx.commit()
        written = await bulk
        assert written.committed and len(written.updated) == len(names)
        # The report keeps the items' order, not the order they were written in.
        assert [i for i, _ in written.updated] == list(range(len(names)))
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(users.c.password_hash).where(users.c.username.in_(names)))).all()
        assert {r[0] for r in rows} == {"new"}
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_name_never_becomes_both_a_user_and_a_client(pg_database: str) -> None:
    """A users bulk racing a clients bulk of the same name: the second to check waits for the first to
    commit and refuses the name. Before, neither saw the other's uncommitted row and both committed —
    one name both a user and a client, whose tokens then carry the same ``sub``."""
    engine = create_engine(pg_database)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                clients.insert().values(
                    client_id="held", secret_hash="h", scopes=[], grant_types=[], disabled=False, created_at=0
                )
            )
        new = ClientItem(0, "both", None, "h", (), ("client_credentials",))
        held = ClientItem(1, "held", None, "h", (), ("client_credentials",))
        async with engine.connect() as other:
            tx = await other.begin()
            # Holds "held": the clients bulk inserts "both", then waits here before it can commit.
            await other.execute(clients.update().where(clients.c.client_id == "held").values(disabled=True))
            client_bulk = asyncio.create_task(write_clients(engine, [new, held], ["h", "h"], partial=False))
            await until(lambda: _waiting(engine, 1), what="the clients bulk waits on the held client")
            user_bulk = asyncio.create_task(
                write_users(engine, [UserItem(0, "both", None, "h", {})], ["h"], partial=False)
            )
            await until(lambda: _waiting(engine, 2, user_bulk), what="the users bulk waits or ends")
            await tx.commit()
        assert (await client_bulk).committed
        written = await user_bulk
        assert not written.committed
        assert [r.reason for r in written.refused] == ["'both' is already taken by a client"]
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).where(users.c.username == "both")) == 0
    finally:
        await engine.dispose()


async def _waiting(engine: AsyncEngine, count: int, task: asyncio.Task[Any] | None = None) -> bool:
    """Whether ``count`` sessions wait on a lock (or ``task`` ended, waiting on nothing)."""
    async with engine.connect() as probe:
        n = await probe.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
    return bool(n and n >= count) or (task is not None and task.done())

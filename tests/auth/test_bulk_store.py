"""Bulk account writes: what concurrent writers of the same names see."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from meshauth.auth.bulk import UserItem
from meshauth.auth.bulk_store import write_users
from meshauth.db import create_engine
from meshauth.db.tables import users
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

            async def waiting() -> bool:
                async with engine.connect() as probe:
                    n = await probe.scalar(
                        sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    )
                return bool(n) or bulk.done()

            await until(waiting, what="the bulk waits on a row the other writer holds")
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

"""Alembic environment: runs migrations over the async engine the services use."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from meshauth.db.engine import create_engine
from meshauth.db.tables import metadata

# Any fixed 64-bit number, the same in every process: "meshauth" in ASCII.
MIGRATION_LOCK_KEY = 0x6D65736861757468


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together against one database migrate one at a time; the others then
            # find the schema at head and do nothing. (SQLite serialises writers by itself.)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_engine(url, poolclass=NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `meshauth db upgrade`")
asyncio.run(_run_async())

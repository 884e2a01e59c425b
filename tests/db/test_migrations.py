import asyncio

import sqlalchemy as sa
from alembic import command

from meshauth.db import create_engine, metadata, migrate
from meshauth.db.engine import alembic_config


async def test_migrations_create_every_table(db_url: str) -> None:
    """Alembic's head has every table the code declares, on SQLite and PostgreSQL."""
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    await engine.dispose()
    assert set(metadata.tables) <= names


def test_attribute_precedence_migration_keeps_existing_stores_as_they_were(db_url: str) -> None:
    """0003 on a database with stores: each gets ``attribute_precedence = 'request'`` (today's
    behaviour); the column takes ``'stored'``; the downgrade drops it. SQLite and PostgreSQL."""

    async def run(*statements: str) -> list[tuple[object, ...]]:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                rows: list[tuple[object, ...]] = []
                for statement in statements:
                    result = await conn.execute(sa.text(statement))
                    if result.returns_rows:
                        rows = [tuple(r) for r in result]
                return rows
        finally:
            await engine.dispose()

    try:
        migrate(db_url, "0002_policy")
        asyncio.run(
            run(
                "INSERT INTO policy_stores (name, revision, last_version, entities_version, deleted, created_at,"
                " updated_at) VALUES ('old', 7, 0, 0, false, 0, 0)"
            )
        )
        migrate(db_url, "0003_attribute_precedence")
        rows = asyncio.run(
            run(
                "INSERT INTO policy_stores (name, revision, last_version, entities_version, deleted, created_at,"
                " updated_at, attribute_precedence) VALUES ('new', 0, 0, 0, false, 0, 0, 'stored')",
                "SELECT name, revision, attribute_precedence FROM policy_stores ORDER BY name",
            )
        )
        assert rows == [("new", 0, "stored"), ("old", 7, "request")]
        command.downgrade(alembic_config(db_url), "0002_policy")
        columns = asyncio.run(run("SELECT * FROM policy_stores WHERE name = 'old'"))
        assert len(columns[0]) == 10
    finally:
        migrate(db_url)
        asyncio.run(run("DELETE FROM policy_stores"))

import sqlalchemy as sa

from meshauth.db import create_engine, metadata


async def test_migrations_create_every_table(db_url: str) -> None:
    """Alembic's head has every table the code declares, on SQLite and PostgreSQL."""
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    await engine.dispose()
    assert set(metadata.tables) <= names

"""Policy stores in SQL: what a worker reads to load a store."""

from __future__ import annotations

from meshauth.db import create_engine
from meshauth.policy import stores


async def test_get_with_text_reads_the_store_and_its_active_text(db_url: str) -> None:
    """One read gives the store row and its active version's text; no active version gives ""."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await stores.ensure(conn, "s")
            assert await stores.get_with_text(conn, "s") == (await stores.get(conn, "s"), "")
            first = await stores.add_version(conn, "s", "permit(principal, action, resource);", "me")
            await stores.add_version(conn, "s", "forbid(principal, action, resource);", "me")
            await stores.activate(conn, "s", first)
            found = await stores.get_with_text(conn, "s")
            assert found is not None
            row, text = found
            assert row == await stores.get(conn, "s") and row.active_version == first
            assert text == "permit(principal, action, resource);"
    finally:
        await engine.dispose()


async def test_get_with_text_of_missing_deleted_and_default_stores(db_url: str) -> None:
    """A store that does not exist or was deleted is None; ``default`` always exists (created here)."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            assert await stores.get_with_text(conn, "nope") is None
            await stores.ensure(conn, "gone")
            await stores.delete(conn, "gone")
            assert await stores.get_with_text(conn, "gone") is None
            found = await stores.get_with_text(conn, stores.DEFAULT_STORE)
            assert found is not None and found[0].name == stores.DEFAULT_STORE and found[1] == ""
    finally:
        await engine.dispose()

"""Token-endpoint account and client lookups batched DataLoader-style (issue 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from meshauth.auth.accounts import Accounts
from meshauth.db import create_engine
from tests.auth.conftest import SECRET, Harness, basic, make_settings, start_harness


async def test_concurrent_lookups_share_one_query(auth: Harness) -> None:
    """Twenty concurrent lookups (present, absent, repeated, impossible names) cost one query per kind
    and each gets its own answer."""
    await auth.add_user("alice")
    await auth.add_user("bob")
    await auth.add_client("svc")
    accounts = auth.app.service.accounts
    assert accounts.loader is not None
    before = accounts.loader.queries
    names = ["alice", "bob", "nobody", "alice", "a\x00b", "x" * 500] * 3 + ["bob", "carol"]
    users, (client, missing) = await asyncio.gather(
        asyncio.gather(*(accounts.get_user(n) for n in names)),
        asyncio.gather(accounts.get_client("svc"), accounts.get_client("none")),
    )
    assert [u.username if u else None for u in users] == [n if n in ("alice", "bob") else None for n in names]
    assert client is not None and client.client_id == "svc" and missing is None
    assert accounts.loader.queries - before == 2  # one for users, one for clients


async def test_token_requests_under_concurrency_share_queries(auth: Harness) -> None:
    """Sixteen concurrent token requests from different clients read their client rows in fewer queries."""
    for n in range(16):
        await auth.add_client(f"c{n}")
    loader = auth.app.service.accounts.loader
    assert loader is not None
    before = loader.queries
    answers = await asyncio.gather(
        *(
            auth.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic(f"c{n}", SECRET))
            for n in range(16)
        )
    )
    assert all(r.status_code == 200 for r in answers)
    assert loader.queries - before < 16


async def test_switched_off(db_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """auth_lookup_batching_enabled=false reads each account on its own."""
    settings = make_settings(db_url, valkey_url, tmp_path, auth_lookup_batching_enabled=False)
    async for h in start_harness(settings):
        assert h.app.service.accounts.loader is None
        await h.add_user("alice")
        user = await h.app.service.accounts.get_user("alice")
        assert user is not None and user.username == "alice"


async def test_database_failure_fails_the_batch_only(sqlite_url: str) -> None:
    """A query that fails fails that batch's lookups (as each would alone); the next batch works again."""
    engine = create_engine(sqlite_url)
    accounts = Accounts(engine, batch_lookups=True)
    try:
        assert await accounts.get_user("alice") is None
        await engine.dispose()
        broken = create_engine("sqlite+aiosqlite:////nonexistent-dir/x.db")
        assert accounts.loader is not None
        accounts.loader._engine = broken  # the database goes away under the loader
        results = await asyncio.gather(accounts.get_user("a"), accounts.get_user("b"), return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results)
        await broken.dispose()
        accounts.loader._engine = engine
        assert await accounts.get_user("alice") is None
    finally:
        await engine.dispose()

"""Refresh token families: a replay revokes the family, including a successor being minted meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import sqlalchemy as sa

from meshauth.auth.refresh import RefreshError, RefreshGrant, RefreshTokens, Reused
from meshauth.db import create_engine
from meshauth.db.tables import refresh_tokens
from tests.bus.helpers import until


async def _redeemed(tokens: RefreshTokens, subject: str) -> tuple[str, RefreshGrant]:
    """A family's first token, and the grant its redemption gave."""
    first = await tokens.issue(None, client_id="app", subject=subject, scope="s", access_jti="j1", access_exp=2**40)
    grant = await tokens.redeem(first, "app")
    assert isinstance(grant, RefreshGrant)
    return first, grant


def _successor(tokens: RefreshTokens, grant: RefreshGrant) -> Coroutine[Any, Any, str]:
    return tokens.issue(grant, client_id="app", subject=grant.subject, scope="s", access_jti="j2", access_exp=2**40)


async def test_a_successor_minted_after_its_family_was_revoked_is_refused(db_url: str) -> None:
    """The refresh grant's steps in the order a race gives them: the holder redeems R; before its
    successor is stored, the other holder replays R, which revokes the family (the successor is not
    in it yet); then the successor is stored. It must not outlive the revocation — else a stolen
    token's family survives the reuse detection meant to end it."""
    engine = create_engine(db_url)
    tokens = RefreshTokens(engine, ttl=3600)
    try:
        first, grant = await _redeemed(tokens, "alice")
        replay = await tokens.redeem(first, "app")
        assert isinstance(replay, Reused)
        with pytest.raises(RefreshError):
            await _successor(tokens, grant)
    finally:
        await engine.dispose()


async def test_successors_of_a_live_family_are_issued_and_redeemed_once(db_url: str) -> None:
    engine = create_engine(db_url)
    tokens = RefreshTokens(engine, ttl=3600)
    try:
        _, grant = await _redeemed(tokens, "bob")
        second = await _successor(tokens, grant)
        assert isinstance(await tokens.redeem(second, "app"), RefreshGrant)
        assert isinstance(await tokens.redeem(second, "app"), Reused)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_successor_waits_for_a_revocation_in_flight_and_is_refused(pg_database: str) -> None:
    """The race itself, on PostgreSQL: a revocation of the family holds its rows when the successor's
    insert starts. The insert waits on the redeemed token's row, then sees it revoked."""
    engine = create_engine(pg_database)
    tokens = RefreshTokens(engine, ttl=3600)
    try:
        _, grant = await _redeemed(tokens, "carol")
        async with engine.connect() as revoker:
            tx = await revoker.begin()
            # What _revoke_where does first: lock every row of the family.
            await revoker.execute(
                sa.select(refresh_tokens.c.token_hash)
                .where(refresh_tokens.c.family_id == grant.family_id)
                .with_for_update()
            )
            successor = asyncio.create_task(_successor(tokens, grant))

            async def waiting() -> bool:
                async with engine.connect() as probe:
                    n = await probe.scalar(
                        sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    )
                return bool(n) or successor.done()

            await until(waiting, what="the successor's insert waits on the family's lock")
            assert not successor.done()
            await revoker.execute(
                refresh_tokens.update().where(refresh_tokens.c.family_id == grant.family_id).values(revoked_at=1)
            )
            await tx.commit()
        with pytest.raises(RefreshError):
            await successor
        async with engine.connect() as conn:
            rows = await conn.scalar(sa.select(sa.func.count()).where(refresh_tokens.c.family_id == grant.family_id))
        assert rows == 1  # no successor was stored
    finally:
        await engine.dispose()


async def test_on_sqlite_a_successor_waits_for_a_revocation_in_flight_and_is_refused(sqlite_url: str) -> None:
    """The race on SQLite, which has no row locks: a revocation of the family has written (and holds
    the write lock) when the successor is minted. The successor must wait and then see the family
    revoked. Its check used to read the redeemed row outside any transaction (the driver begins one at
    the first write), so it saw the row live and stored the successor once the revocation committed:
    a refresh racing a replay or a revoke came back 200 with tokens that outlived the revocation."""
    engine = create_engine(sqlite_url)
    tokens = RefreshTokens(engine, ttl=3600)
    statements: list[str] = []
    try:
        _, grant = await _redeemed(tokens, "dave")
        async with engine.connect() as revoker:
            tx = await revoker.begin()
            await revoker.execute(
                refresh_tokens.update().where(refresh_tokens.c.family_id == grant.family_id).values(revoked_at=1)
            )

            def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                statements.append(statement)

            sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)
            successor = asyncio.create_task(_successor(tokens, grant))

            async def writing() -> bool:
                # The successor has sent its first write: it now waits on the revocation's lock.
                return any(s.lstrip().upper().startswith(("INSERT", "UPDATE")) for s in statements)

            await until(writing, what="the successor's first write")
            assert not successor.done()
            await tx.commit()
        with pytest.raises(RefreshError):
            await successor
        async with engine.connect() as conn:
            rows = await conn.scalar(sa.select(sa.func.count()).where(refresh_tokens.c.family_id == grant.family_id))
        assert rows == 1  # no successor was stored
    finally:
        await engine.dispose()

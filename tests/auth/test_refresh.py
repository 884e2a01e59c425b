"""Refresh token families: a replay revokes the family, including a successor being minted meanwhile."""

from __future__ import annotations

import pytest

from meshauth.auth.refresh import RefreshError, RefreshGrant, RefreshTokens, Reused
from meshauth.db import create_engine


async def test_a_successor_minted_after_its_family_was_revoked_is_refused(db_url: str) -> None:
    """The refresh grant's steps in the order a race gives them: the holder redeems R; before its
    successor is stored, the other holder replays R, which revokes the family (the successor is not
    in it yet); then the successor is stored. It must not outlive the revocation — else a stolen
    token's family survives the reuse detection meant to end it."""
    engine = create_engine(db_url)
    tokens = RefreshTokens(engine, ttl=3600)
    try:
        first = await tokens.issue(None, client_id="app", subject="alice", scope="s", access_jti="j1", access_exp=2**40)
        grant = await tokens.redeem(first, "app")
        assert isinstance(grant, RefreshGrant)
        replay = await tokens.redeem(first, "app")
        assert isinstance(replay, Reused)
        with pytest.raises(RefreshError):
            await tokens.issue(grant, client_id="app", subject="alice", scope="s", access_jti="j2", access_exp=2**40)
    finally:
        await engine.dispose()


async def test_successors_of_a_live_family_are_issued_and_redeemed_once(db_url: str) -> None:
    engine = create_engine(db_url)
    tokens = RefreshTokens(engine, ttl=3600)
    try:
        first = await tokens.issue(None, client_id="app", subject="bob", scope="s", access_jti="j1", access_exp=2**40)
        grant = await tokens.redeem(first, "app")
        assert isinstance(grant, RefreshGrant)
        second = await tokens.issue(grant, client_id="app", subject="bob", scope="s", access_jti="j2", access_exp=2**40)
        assert isinstance(await tokens.redeem(second, "app"), RefreshGrant)
        assert isinstance(await tokens.redeem(second, "app"), Reused)
    finally:
        await engine.dispose()

"""Cutting a user off: what disabling or deleting a user must end besides the SQL row.

Their refresh tokens, the access tokens minted beside them, and their sessions (with each session's
access token). Access tokens from a client that authenticated a user some other way are not tracked by
jti; they live out their (short) lifetime.
"""

from __future__ import annotations

from meshauth.auth.refresh import RefreshTokens
from meshauth.auth.revocation import Denylist
from meshauth.auth.sessions import SessionStore


async def cut_off(username: str, *, refresh: RefreshTokens, denylist: Denylist, sessions: SessionStore) -> int:
    """End everything ``username`` holds; returns how many tokens and sessions were ended."""
    ended = 0
    for jti, exp in await refresh.revoke_subject(username):
        await denylist.revoke(jti, exp)
        ended += 1
    for session in await sessions.end_all(username):
        if session.access_jti:
            await denylist.revoke(session.access_jti, session.access_exp)
        ended += 1
    return ended

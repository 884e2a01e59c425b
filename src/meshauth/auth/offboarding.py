"""Cutting a user off: what disabling or deleting a user must end besides the SQL row.

Every access token issued to them so far (a subject cut-off), their refresh tokens, and their sessions.
A disabled client is cut off the same way, by client id.
"""

from __future__ import annotations

from meshauth.auth.refresh import RefreshTokens
from meshauth.auth.revocation import Denylist
from meshauth.auth.sessions import SessionStore


async def cut_off(username: str, *, refresh: RefreshTokens, denylist: Denylist, sessions: SessionStore) -> int:
    """End everything ``username`` holds; returns how many tokens and sessions were ended."""
    await denylist.cut_off("sub", username)
    ended = 0
    for jti, exp in await refresh.revoke_subject(username):
        await denylist.revoke(jti, exp)
        ended += 1
    for session in await sessions.end_all(username):
        if session.access_jti:
            await denylist.revoke(session.access_jti, session.access_exp)
        ended += 1
    return ended


async def cut_off_client(client_id: str, *, refresh: RefreshTokens, denylist: Denylist) -> None:
    """Refuse every token issued to ``client_id`` so far and end its refresh tokens."""
    await denylist.cut_off("client", client_id)
    for jti, exp in await refresh.revoke_client(client_id):
        await denylist.revoke(jti, exp)

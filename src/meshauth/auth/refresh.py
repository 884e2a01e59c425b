"""Rotating refresh tokens with reuse detection (OAuth 2.0 Security BCP §4.14).

Each refresh token is single-use. Using one marks it used and mints its successor in the same *family*.
Presenting a token that was already used means two parties hold it: the whole family is revoked, and
the access tokens minted with it are handed back so the caller can deny them too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.db.tables import refresh_tokens

MAX_REFRESH_TOKEN_CHARS = 256


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    family_id: str
    client_id: str
    subject: str
    scope: str
    token_hash: str  # of the token redeemed: its row is what a successor's insert locks and checks


@dataclass(frozen=True, slots=True)
class Reused:
    """A used or revoked token came back: its family is now revoked, with these access tokens."""

    access_tokens: list[tuple[str, int]]


class RefreshError(Exception):
    pass


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    def __init__(self, engine: AsyncEngine, *, ttl: int) -> None:
        self._engine = engine
        self._ttl = ttl

    async def issue(
        self, grant: RefreshGrant | None, *, client_id: str, subject: str, scope: str, access_jti: str, access_exp: int
    ) -> str:
        """A new refresh token: the first of a family (``grant`` None) or the successor in ``grant``'s family.

        RefreshError if that family was revoked since ``grant`` was redeemed: a replay between the
        redemption and this insert revoked the family without the successor, which would otherwise
        outlive the reuse detection (and so would the access token recorded with it). The redeemed
        token's row is locked first (PostgreSQL): every revocation of the family locks all its rows,
        that one included, before it revokes, so whichever comes second sees what the first wrote — a
        revocation that waited revokes the successor too, an insert that waited sees the row revoked.
        Only that row, not the whole family: refresh rows are kept, and a long-lived session's family
        grows by one row per refresh."""
        token = secrets.token_urlsafe(32)
        now = int(time.time())
        async with self._engine.begin() as conn:
            if grant is not None:
                if conn.dialect.name == "sqlite":
                    # SQLite has no row locks, and its driver begins the transaction only at the first
                    # write: the select below ran outside it, saw the row live while a revocation held
                    # the write lock, and the insert then stored the successor after the revocation
                    # committed. A write that changes nothing takes the lock first (as
                    # ``accounts.lock_names``): a revocation that wrote first is seen below, and one
                    # that comes later waits for this insert and revokes the successor too.
                    await conn.execute(
                        refresh_tokens.update()
                        .where(refresh_tokens.c.token_hash == grant.token_hash)
                        .values(revoked_at=refresh_tokens.c.revoked_at)
                    )
                redeemed = (
                    await conn.execute(
                        sa.select(refresh_tokens.c.revoked_at)
                        .where(refresh_tokens.c.token_hash == grant.token_hash)
                        .with_for_update()
                    )
                ).first()
                if redeemed is None or redeemed.revoked_at is not None:
                    raise RefreshError("refresh token family was revoked")
            await conn.execute(
                refresh_tokens.insert().values(
                    token_hash=token_hash(token),
                    family_id=grant.family_id if grant else secrets.token_hex(16),
                    client_id=client_id,
                    subject=subject,
                    scope=scope,
                    created_at=now,
                    expires_at=now + self._ttl,
                    used_at=None,
                    revoked_at=None,
                    access_jti=access_jti,
                    access_exp=access_exp,
                )
            )
        return token

    async def redeem(self, token: str, client_id: str) -> RefreshGrant | Reused:
        """Spend ``token`` once. RefreshError for unknown/expired/foreign tokens; Reused for a replay."""
        if len(token) > MAX_REFRESH_TOKEN_CHARS:
            raise RefreshError("refresh token is malformed")
        digest = token_hash(token)
        now = int(time.time())
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == digest))).first()
            if row is None:
                raise RefreshError("refresh token is unknown")
            if row.client_id != client_id:
                # Not this client's token: do not reveal or touch it (RFC 6749 §6).
                raise RefreshError("refresh token was not issued to this client")
            if row.expires_at <= now:
                raise RefreshError("refresh token has expired")
            if row.used_at is None and row.revoked_at is None:
                # Conditional update: of two concurrent redemptions exactly one wins; the other is a reuse.
                spent = await conn.execute(
                    refresh_tokens.update()
                    .where(
                        refresh_tokens.c.token_hash == digest,
                        refresh_tokens.c.used_at.is_(None),
                        refresh_tokens.c.revoked_at.is_(None),
                    )
                    .values(used_at=now)
                )
                if spent.rowcount == 1:
                    return RefreshGrant(row.family_id, row.client_id, row.subject, row.scope, digest)
        return Reused(await self.revoke_family(row.family_id))

    async def give_back(self, grant: RefreshGrant, successor: str | None) -> None:
        """Undo a redemption whose answer never left (a dependency failed after ``redeem``): end the
        successor stored for it, if any — it was handed to no one — and make ``grant``'s token
        redeemable again, unless its family was revoked meanwhile. Without this the client's retry
        of its one refresh token was a replay, and revoked the family: a Redis failover logged users
        out. One transaction: the successor is never live beside its given-back parent."""
        now = int(time.time())
        async with self._engine.begin() as conn:
            if successor is not None:
                await conn.execute(
                    refresh_tokens.update()
                    .where(refresh_tokens.c.token_hash == token_hash(successor))
                    .values(used_at=now, revoked_at=now)
                )
            await conn.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.token_hash == grant.token_hash, refresh_tokens.c.revoked_at.is_(None))
                .values(used_at=None)
            )

    async def revoke_family(self, family_id: str) -> list[tuple[str, int]]:
        """Revoke every token of a family; returns the (jti, exp) of its access tokens still alive."""
        return await self._revoke_where(refresh_tokens.c.family_id == family_id)

    async def revoke_subject(self, subject: str) -> list[tuple[str, int]]:
        """Revoke every refresh token of a user; returns the (jti, exp) of access tokens still alive."""
        return await self._revoke_where(refresh_tokens.c.subject == subject)

    async def revoke_client(self, client_id: str) -> list[tuple[str, int]]:
        """Revoke every refresh token of a client; returns the (jti, exp) of access tokens still alive."""
        return await self._revoke_where(refresh_tokens.c.client_id == client_id)

    async def _revoke_where(self, condition: sa.ColumnElement[bool]) -> list[tuple[str, int]]:
        now = int(time.time())
        async with self._engine.begin() as conn:
            # Wait for a successor being stored in these families (``issue`` holds their rows), so the
            # update below — a new statement, a new snapshot — revokes it too. Same order: no deadlock.
            await conn.execute(
                sa.select(refresh_tokens.c.token_hash)
                .where(condition)
                .order_by(refresh_tokens.c.token_hash)
                .with_for_update()
            )
            await conn.execute(
                refresh_tokens.update().where(condition, refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            rows = (
                await conn.execute(
                    sa.select(refresh_tokens.c.access_jti, refresh_tokens.c.access_exp).where(
                        condition, refresh_tokens.c.access_exp > now
                    )
                )
            ).all()
        return [(r.access_jti, r.access_exp) for r in rows]

    async def lookup(self, token: str) -> sa.Row[tuple[object, ...]] | None:
        if len(token) > MAX_REFRESH_TOKEN_CHARS:
            return None
        async with self._engine.connect() as conn:
            return (
                await conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(token)))
            ).first()

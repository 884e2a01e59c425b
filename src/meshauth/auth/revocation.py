"""Revoked access tokens: a jti denylist in Redis (TTL = remaining lifetime) mirrored in every replica.

The hot path asks only the local mirror. It is filled from a Redis snapshot at start and after any
reconnect, and kept current by ``jti`` entries on the invalidation stream.

An entry lives until the token's ``exp`` plus the verification leeway: verifiers accept a token that
long, so the denial must last as long (RFC 7009 §2.1).

Besides single tokens, a whole subject or client can be *cut off*: every token it was issued up to that
second is refused (a disabled user or client), and so is every session of a cut-off subject created up
to that second. A cut-off lives for one token lifetime plus leeway, after which every token it covers has
expired anyway.

A cut-off by time cannot cover what is issued *after* it by a request that read the account before the
disable: a login whose password check straddles the disable. Each cut-off therefore also bumps the
account's *generation* in Redis, and whatever issues credentials to an account reads the generation
before it reads the account from SQL (:meth:`Denylist.stamp`) and again after it has stored what it
issued (:meth:`Denylist.unchanged`). If the generation moved, a disable raced the request: it withdraws
what it stored and refuses. If it did not, any disable still to come will find what was stored (the
session index, the refresh-token rows with their access-token ids) and end it. The order of the
offboarding steps makes this airtight: SQL first, then the generation, then ending what is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshauth.auth.tokens import Identity
from meshauth.bus.invalidations import append
from meshauth.redis_client import Keys, RedisConn

KIND = "jti"
CUTOFF_KIND = "cutoff"
# A generation must outlive any request that read it (seconds); one key per account offboarded that day.
GENERATION_TTL = 86_400


@dataclass(frozen=True, slots=True)
class Stamp:
    """An account's cut-off generation, read before the account row itself was read."""

    key: str  # "sub:<subject>" / "client:<client_id>"
    generation: bytes | str | None


class Denylist:
    def __init__(
        self, redis: RedisConn, keys: Keys, *, leeway: int, token_ttl: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._clock = clock  # unix seconds; injected by tests
        self._keys = keys
        self._leeway = leeway
        self._horizon = token_ttl + leeway
        # jti -> unix time until which it is denied (token exp + leeway)
        self._local: dict[str, int] = {}
        # "sub:<subject>" / "client:<client_id>" -> tokens issued at or before this second are refused
        self._cutoffs: dict[str, int] = {}

    def refuses(self, identity: Identity) -> bool:
        """True when this token was revoked, or its subject or client was cut off after it was issued."""
        if identity.jti in self:
            return True
        if not self._cutoffs:
            return False
        iat = identity.claims.get("iat", 0)
        for key in (f"sub:{identity.subject}", f"client:{identity.client_id}"):
            cutoff = self._cutoffs.get(key)
            if cutoff is not None and iat <= cutoff:
                return True
        return False

    def refuses_session(self, subject: str, created_at: int) -> bool:
        """True when ``subject`` was cut off at or after the second this session was created."""
        cutoff = self._cutoffs.get(f"sub:{subject}")
        return cutoff is not None and created_at <= cutoff

    def __contains__(self, jti: str) -> bool:
        until = self._local.get(jti)
        if until is None:
            return False
        if until < self._clock():
            # Past exp + leeway the verifier refuses the token anyway; forget the entry.
            self._local.pop(jti, None)
            return False
        return True

    def __len__(self) -> int:
        return len(self._local)

    def add_local(self, jti: str, until: int) -> None:
        self._local[jti] = until

    def add_cutoff_local(self, key: str, at: int) -> None:
        self._cutoffs[key] = max(at, self._cutoffs.get(key, 0))

    def sweep(self) -> None:
        """Drop entries whose tokens can no longer verify, so the mirror does not grow forever."""
        now = self._clock()
        self._local = {jti: until for jti, until in self._local.items() if until >= now}
        self._cutoffs = {k: at for k, at in self._cutoffs.items() if at + self._horizon >= now}

    async def sweep_forever(self, interval: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``sweep`` every ``interval`` seconds until cancelled (the service runs this as a task)."""
        while True:
            await sleep(interval)
            self.sweep()

    def cutoff_count(self) -> int:
        return len(self._cutoffs)

    async def cut_off(self, kind: str, name: str) -> None:
        """Refuse every token issued so far to subject (``kind="sub"``) or client (``kind="client"``) ``name``."""
        key = f"{kind}:{name}"
        at = int(self._clock())
        self.add_cutoff_local(key, at)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.cutoff(key), str(at), ex=self._horizon)
            pipe.incr(self._keys.generation(key))
            pipe.expire(self._keys.generation(key), GENERATION_TTL)
            append(pipe, self._keys.invalidations, CUTOFF_KIND, key, at)
            await pipe.execute()

    async def stamp(self, kind: str, name: str) -> Stamp:
        """Read before reading the account from SQL; see the module docstring."""
        key = f"{kind}:{name}"
        return Stamp(key, await self._redis.get(self._keys.generation(key)))

    async def unchanged(self, *stamps: Stamp) -> bool:
        """True when no stamped account was cut off since its stamp was read (one round trip)."""
        now = await self._redis.mget([self._keys.generation(s.key) for s in stamps])
        return all(s.generation == value for s, value in zip(stamps, now, strict=True))

    async def revoke(self, jti: str, exp: int) -> None:
        """Deny ``jti`` everywhere until its token cannot verify: write the key, announce it, apply it here."""
        until = exp + self._leeway
        self.add_local(jti, until)
        if until <= self._clock():
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.revoked(jti), str(until), exat=until)
            append(pipe, self._keys.invalidations, KIND, jti, until)
            await pipe.execute()

    async def revoke_many(self, entries: list[tuple[str, int]]) -> None:
        """:meth:`revoke` for many ``(jti, exp)`` at once: one pipelined transaction (bulk revoke)."""
        now = self._clock()
        live: list[tuple[str, int]] = []
        for jti, exp in entries:
            until = exp + self._leeway
            self.add_local(jti, until)
            if until > now:
                live.append((jti, until))
        if not live:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for jti, until in live:
                pipe.set(self._keys.revoked(jti), str(until), exat=until)
                append(pipe, self._keys.invalidations, KIND, jti, until)
            await pipe.execute()

    async def snapshot(self) -> None:
        """Replace the mirror with what Redis holds now."""
        fresh = await self._scan(self._keys.revoked(""))
        cutoffs = await self._scan(self._keys.cutoff(""))
        # Keep local additions made while the snapshot ran; they were written to Redis too.
        now = self._clock()
        fresh.update((jti, until) for jti, until in self._local.items() if until >= now)
        for key, at in self._cutoffs.items():
            cutoffs[key] = max(at, cutoffs.get(key, 0))
        self._local = fresh
        self._cutoffs = cutoffs

    async def _scan(self, prefix: str) -> dict[str, int]:
        # scan_iter, not SCAN with a cursor: on a Redis Cluster it walks every primary in turn.
        found: dict[str, int] = {}
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self._read(prefix, batch, found)
                batch = []
        await self._read(prefix, batch, found)
        return found

    async def _read(self, prefix: str, batch: list[bytes], found: dict[str, int]) -> None:
        if not batch:
            return
        values = await self._redis.mget(batch)
        for key, value in zip(batch, values, strict=True):
            if value is not None:
                name = key.decode() if isinstance(key, bytes) else key
                found[name[len(prefix) :]] = int(value)

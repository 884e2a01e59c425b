"""Revoked access tokens: a jti denylist in Redis (TTL = remaining lifetime) mirrored in every replica.

The hot path asks only the local mirror. It is filled from a Redis snapshot at start and after any
reconnect, and kept current by ``jti`` entries on the invalidation stream.

An entry lives until the token's ``exp`` plus the verification leeway: verifiers accept a token that
long, so the denial must last as long (RFC 7009 §2.1).
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from meshauth.bus.invalidations import STREAM_MAXLEN, entry
from meshauth.kv import Keys

KIND = "jti"


class Denylist:
    def __init__(self, redis: Redis, keys: Keys, *, leeway: int) -> None:
        self._redis = redis
        self._keys = keys
        self._leeway = leeway
        # jti -> unix time until which it is denied (token exp + leeway)
        self._local: dict[str, int] = {}

    def __contains__(self, jti: str) -> bool:
        until = self._local.get(jti)
        if until is None:
            return False
        if until < time.time():
            # Past exp + leeway the verifier refuses the token anyway; forget the entry.
            self._local.pop(jti, None)
            return False
        return True

    def __len__(self) -> int:
        return len(self._local)

    def add_local(self, jti: str, until: int) -> None:
        self._local[jti] = until

    def sweep(self) -> None:
        """Drop entries whose tokens can no longer verify, so the mirror does not grow forever."""
        now = time.time()
        self._local = {jti: until for jti, until in self._local.items() if until >= now}

    async def revoke(self, jti: str, exp: int) -> None:
        """Deny ``jti`` everywhere until its token cannot verify: write the key, announce it, apply it here."""
        until = exp + self._leeway
        self.add_local(jti, until)
        if until <= time.time():
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.revoked(jti), str(until), exat=until)
            pipe.xadd(self._keys.invalidations, entry(KIND, jti, until), maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()

    async def snapshot(self) -> None:
        """Replace the mirror with what Redis holds now."""
        fresh: dict[str, int] = {}
        cursor = 0
        prefix_len = len(self._keys.revoked(""))
        while True:
            cursor, batch = await self._redis.scan(cursor, match=self._keys.revoked_pattern(), count=1000)
            if batch:
                values = await self._redis.mget(batch)
                for key, value in zip(batch, values, strict=True):
                    if value is not None:
                        name = key.decode() if isinstance(key, bytes) else key
                        fresh[name[prefix_len:]] = int(value)
            if cursor == 0:
                break
        # Keep local additions made while the snapshot ran; they were written to Redis too.
        now = time.time()
        fresh.update((jti, until) for jti, until in self._local.items() if until >= now)
        self._local = fresh

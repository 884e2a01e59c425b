"""Throttling of password and client-secret guessing, per account and per client address, in Redis.

Fixed windows: each failure increments a counter whose TTL is the window; once a counter reaches its
limit, attempts are refused with 429 and ``Retry-After`` (the counter's remaining TTL) before any hash
is computed. Counters live in Redis so every replica sees the same count. A success clears the account's
counter, never the address's.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from meshauth.kv import Keys


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after: int


class Throttle:
    def __init__(self, redis: Redis, keys: Keys, *, window: int, per_account: int, per_address: int) -> None:
        self._redis = redis
        self._keys = keys
        self._window = window
        self._per_account = per_account
        self._per_address = per_address

    def _pair(self, kind: str, account: str, address: str) -> tuple[str, str]:
        return self._keys.throttle(kind, account), self._keys.throttle("addr", address)

    async def check(self, kind: str, account: str, address: str) -> Throttled | None:
        """None when an attempt may proceed; otherwise how long to wait."""
        acct_key, addr_key = self._pair(kind, account, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(acct_key)
            pipe.get(addr_key)
            pipe.ttl(acct_key)
            pipe.ttl(addr_key)
            acct, addr, acct_ttl, addr_ttl = await pipe.execute()
        waits = []
        if acct is not None and int(acct) >= self._per_account:
            waits.append(acct_ttl)
        if addr is not None and int(addr) >= self._per_address:
            waits.append(addr_ttl)
        if not waits:
            return None
        return Throttled(retry_after=max(1, max(waits)))

    async def failed(self, kind: str, account: str, address: str) -> None:
        acct_key, addr_key = self._pair(kind, account, address)
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in (acct_key, addr_key):
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            await pipe.execute()

    async def succeeded(self, kind: str, account: str) -> None:
        await self._redis.delete(self._keys.throttle(kind, account))

"""Throttling of password and client-secret guessing, in Redis so every replica shares the count.

Each attempt is *reserved* before any hash is computed: the counters are incremented first and the
attempt refused (429, ``Retry-After`` = the counter's remaining window) when a count passes its limit.
Checking first and counting after the hash would let every guess already in flight through.
A success clears the account's counter and gives its reservation on the address counter back.

Users are counted per account and per client address; clients per (client id, address) and per
address, so that nobody can lock a service out of its tokens by guessing its (public) client id.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from meshauth.kv import Keys

# DECR only a counter that still exists: a DECR after expiry would create a counter with no TTL.
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


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
        self._release = redis.register_script(_RELEASE)

    def _pair(self, kind: str, account: str, address: str) -> tuple[str, str]:
        return self._keys.throttle(kind, account), self._keys.throttle("addr", address)

    async def attempt(self, kind: str, account: str, address: str) -> Throttled | None:
        """Count one attempt. None: go ahead. Otherwise the attempt is refused; wait ``retry_after`` s."""
        acct_key, addr_key = self._pair(kind, account, address)
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in (acct_key, addr_key):
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            pipe.ttl(acct_key)
            pipe.ttl(addr_key)
            acct, _, addr, _, acct_ttl, addr_ttl = await pipe.execute()
        waits = []
        if acct > self._per_account:
            waits.append(acct_ttl)
        if addr > self._per_address:
            waits.append(addr_ttl)
        return Throttled(retry_after=max(1, *waits)) if waits else None

    async def succeeded(self, kind: str, account: str, address: str) -> None:
        acct_key, addr_key = self._pair(kind, account, address)
        await self._redis.delete(acct_key)
        await self._release(keys=[addr_key])

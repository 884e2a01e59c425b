"""Partition leases: each partition of a stream is read, within a group, by one consumer at a time.

A lease is a Redis key holding the consumer's name with a TTL. Holders renew theirs; a consumer that
dies stops renewing and its partitions go, one TTL later, to whoever asks next. Live consumers heartbeat
in a sorted set so each can aim at its fair share, ``ceil(partitions / live consumers)``, and give back
the rest: a second worker started beside a first one gets half of the partitions.
"""

from __future__ import annotations

import math
import time

from meshauth.bus.streams import StreamNames
from meshauth.redis_client import RedisConn

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
# Giving a lease back also records the giver in the partition's "released" set: it has stopped
# reading the partition, so a successor may claim what it left pending at once instead of after
# min_idle. (A consumer that dies records nothing; its entries wait for min_idle.)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('sadd', KEYS[2], ARGV[1])
  redis.call('pexpire', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class Leases:
    def __init__(self, names: StreamNames, group: str, consumer: str, ttl: float) -> None:
        self._names = names
        self._group = group
        self._me = consumer
        self._ttl_ms = max(1, int(ttl * 1000))
        self._ttl = ttl
        self.owned: set[int] = set()

    async def refresh(self, redis: RedisConn) -> tuple[set[int], set[int]]:
        """Heartbeat, renew, give back beyond the fair share, take free ones up to it.
        Returns (gained, lost) partitions."""
        members = self._names.members(self._group)
        now = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(members, {self._me: now})
            pipe.zremrangebyscore(members, "-inf", now - self._ttl)
            pipe.zcard(members)
            pipe.pexpire(members, self._ttl_ms * 10)
            for n in sorted(self.owned):
                pipe.eval(_RENEW, 1, self._names.lease(self._group, n), self._me, self._ttl_ms)
            replies = await pipe.execute()
        alive = max(1, int(replies[2]))
        lost = {n for n, ok in zip(sorted(self.owned), replies[4:], strict=True) if not ok}
        self.owned -= lost
        share = math.ceil(self._names.partitions / alive)
        for n in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            await self._release(redis, n)
            lost.add(n)
        gained: set[int] = set()
        for n in range(self._names.partitions):
            if len(self.owned) >= share:
                break
            if n in self.owned:
                continue
            if await redis.set(self._names.lease(self._group, n), self._me, nx=True, px=self._ttl_ms):
                await redis.srem(self._names.released(self._group, n), self._me)  # reading it again
                self.owned.add(n)
                gained.add(n)
        return gained, lost

    async def release_all(self, redis: RedisConn) -> None:
        for n in list(self.owned):
            await self._release(redis, n)
        await redis.zrem(self._names.members(self._group), self._me)

    async def _release(self, redis: RedisConn, n: int) -> None:
        lease, released = self._names.lease(self._group, n), self._names.released(self._group, n)
        await redis.eval(_RELEASE, 2, lease, released, self._me, self._ttl_ms * 10)
        self.owned.discard(n)

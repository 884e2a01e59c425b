"""Which questions are hot: sampled counts in process, and shared through a Redis sorted set.

Counting must not slow an L1 hit, so only every ``sample_every``-th check is counted (a countdown:
one decrement per check); over many checks the samples rank questions as their frequency does.
The local table is bounded (``hot_keys`` × 4 questions; past that the colder half is dropped, and
every count halves, so hotness follows the workload). What was counted since the last push goes to
Redis (``ZINCRBY``, pipelined, every ``flush_every`` seconds) and the set is trimmed to the same
bound, so a new process can read the fleet's hottest questions (``ZREVRANGE``). Members are request
keys — the canonical encoding of the question itself (``_keys.request_key``), so a hot question can
be asked again; one over ``MAX_KEY_BYTES`` is not counted (it would bloat Redis for little gain).
"""

from __future__ import annotations

import math

from redis.exceptions import RedisError

from meshauth.client._config import WarmConfig
from meshauth.redis_client import RedisConn

__all__ = ["MAX_KEY_BYTES", "HotKeys", "push", "top"]

MAX_KEY_BYTES = 512


class HotKeys:
    def __init__(self, config: WarmConfig) -> None:
        self._every = config.sample_every
        self._countdown = config.sample_every
        self._limit = config.hot_keys * 4
        self._counts: dict[bytes, int] = {}
        self._pending: dict[bytes, int] = {}  # counted since the last push to Redis

    def __len__(self) -> int:
        return len(self._counts)

    def seen(self, rkey: bytes) -> None:
        """Called for every check: counts one in ``sample_every``."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self._every
        if len(rkey) > MAX_KEY_BYTES:
            return
        self.add(rkey, 1)

    def add(self, rkey: bytes, count: int) -> None:
        counts = self._counts
        counts[rkey] = counts.get(rkey, 0) + count
        self._pending[rkey] = self._pending.get(rkey, 0) + count
        if len(counts) > self._limit:
            keep = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[: self._limit // 2]
            self._counts = {k: c // 2 or 1 for k, c in keep}
        if len(self._pending) > self._limit:
            self._pending = dict(sorted(self._pending.items(), key=lambda kv: kv[1], reverse=True)[: self._limit // 2])

    def hottest(self, n: int) -> list[bytes]:
        return [k for k, _ in sorted(self._counts.items(), key=lambda kv: kv[1], reverse=True)[:n]]

    def take_pending(self) -> dict[bytes, int]:
        out, self._pending = self._pending, {}
        return out


async def push(redis: RedisConn, zset: bytes, counts: dict[bytes, int], *, keep: int) -> bool:
    """Add ``counts`` to the shared set and trim it to the ``keep`` hottest; False on a Redis error."""
    if not counts:
        return True
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for member, count in counts.items():
                pipe.zincrby(zset, count, member)
            pipe.zremrangebyrank(zset, 0, -(keep + 1))
            await pipe.execute()
    except (RedisError, OSError):
        return False
    return True


async def top(redis: RedisConn, zset: bytes, n: int) -> list[tuple[bytes, int]]:
    """The ``n`` hottest questions in the shared set with their counts (empty on a Redis error). A
    score that is no count (infinite: anyone sharing the Redis can ``ZADD +inf``) skips its member:
    ``int()`` of it raised out of warming on start, and every new client failed to start."""
    try:
        got = await redis.zrevrange(zset, 0, n - 1, withscores=True)
    except (RedisError, OSError):
        return []
    out: list[tuple[bytes, int]] = []
    for pair in got:
        if isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], bytes):
            score = pair[1]
            if isinstance(score, int | float) and math.isfinite(score):
                out.append((pair[0], int(score)))
    return out

"""The two decision cache levels.

L1 (:class:`DecisionL1`): in process, bounded, entries with their own deadlines (a dict lookup, a
clock read and a set insertion: the ≤ 1 µs hit path), evicted by CLOCK. Each entry also keeps its
*fresh* deadline; past it the entry may still answer, only as a fallback under ``stale_if_error``.

L2 (:class:`DecisionL2`): RedisConn, shared by every replica; its two hot commands (the batch's
``MGET`` and the fill's ``EVALSHA``) go over ``_resp.RawRedis`` when the connection is a plain single
server (2.5× less CPU than redis-py, ``_resp.py``), over redis-py otherwise (Cluster, Sentinel, TLS).
Values are MessagePack (msgspec) — never
pickle: Redis is shared, and unpickling what another process wrote runs its code. Every Redis error
or slow answer counts as a miss (or a skipped write): the cache can make checks faster, never fail
them. The stored value carries its absolute expiry so an L2 hit fills L1 only for what remains.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from meshauth.client._keys import L1Key, l2_key
from meshauth.client._models import Decision
from meshauth.client._resp import RawRedis, raw_for
from meshauth.redis_client import RedisConn
from meshauth.redis_urls import hash_tag

__all__ = ["DecisionL1", "DecisionL2"]


class DecisionL1:
    """Bounded; entries carry their own deadlines; eviction by CLOCK ("second chance").

    Why not the project's ``ExpiringMap`` (oldest insertions out first): under a skewed load the
    hottest decisions are also among the oldest entries, so FIFO keeps evicting exactly what is
    asked most. Here a hit marks its key (one set insertion); eviction walks from the oldest entry,
    gives a marked one a second chance (moved to the newest end, mark cleared) and drops unmarked
    ones — an approximation of LRU at FIFO's cost. Simulated on Zipf s=1.1 over 100,000 keys with
    10,000 entries: FIFO 81.5 %, this 84.9 %, true LRU 84.5 % (bench: docs/performance.md).
    """

    def __init__(self, *, maxsize: int, stale_for: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        # key → (decision, fresh until, kept until): kept past freshness only for stale_if_error.
        self._data: dict[L1Key, tuple[Decision, float, float]] = {}
        self._used: set[L1Key] = set()
        self._maxsize = maxsize
        self._evict_batch = max(1, maxsize // 20)
        self._soonest = float("inf")  # no entry is kept past this (or an entry since removed was)
        self._stale_for = stale_for
        self.clock = clock

    def __len__(self) -> int:
        return len(self._data)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def get(self, key: L1Key) -> Decision | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            return None
        self._used.add(key)
        return entry[0]

    def get_stale(self, key: L1Key) -> Decision | None:
        """A decision past its freshness but within ``stale_for`` of it (only for a fallback)."""
        entry = self._data.get(key)
        if entry is None or entry[2] <= self.clock():
            return None
        return entry[0]

    def put(self, key: L1Key, decision: Decision, fresh_until: float) -> None:
        now = self.clock()
        keep_until = fresh_until + self._stale_for
        if keep_until <= now:
            return
        data = self._data
        if key not in data and len(data) >= self._maxsize:
            self._evict(now)
        data[key] = (decision, fresh_until, keep_until)
        if keep_until < self._soonest:
            self._soonest = keep_until

    def _evict(self, now: float) -> None:
        data, used = self._data, self._used
        if self._soonest <= now:
            # Some entry may be dead: drop every dead one first (the walk also finds the next death).
            # Skipped while none can be: it read the whole cache at each eviction, ~1 µs per insert
            # of a cold gate whose L1 is always full (docs/performance.md, "Stop 21, branch client4").
            soonest, dead = float("inf"), []
            for k, entry in data.items():
                if entry[2] <= now:
                    dead.append(k)
                elif entry[2] < soonest:
                    soonest = entry[2]
            for k in dead:
                del data[k]
                used.discard(k)
            self._soonest = soonest
        need = len(data) - self._maxsize + self._evict_batch
        if need <= 0:
            return
        # One walk from the oldest entry: unmarked ones are the victims, marked ones get a second
        # chance (moved to the newest end, mark cleared). If the walk runs out, the second-chance
        # keys go next, oldest first — as popping the front until ``need`` were dropped would. (That
        # loop also rescanned the dict's freed front slots at each pop: quadratic in ``need``.)
        victims: list[L1Key] = []
        spared: list[L1Key] = []
        for k in data:
            if k in used:
                spared.append(k)
            else:
                victims.append(k)
                if len(victims) == need:
                    break
        else:
            more = need - len(victims)
            victims += spared[:more]
            spared = spared[more:]
        for k in victims:
            del data[k]
            used.discard(k)
        for k in spared:
            used.discard(k)
            data[k] = data.pop(k)

    def keys_at(self, revision: int, entities_version: int | None, limit: int) -> list[bytes]:
        """Up to ``limit`` questions held at that state: the ones hit since the last eviction pass
        first, then the newest (what staged warming asks after the hot set)."""
        marked: list[bytes] = []
        rest: list[bytes] = []
        for k in reversed(self._data):
            if k[0] == revision and k[1] == entities_version:
                (marked if k in self._used else rest).append(k[2])
                if len(marked) >= limit:
                    break
        return (marked + rest)[:limit]

    def keep_only(self, revision: int, entities_version: int | None) -> int:
        """Drop every entry not at that state (after a move to it nothing older can answer: they
        would only take the room of entries at it). How many were dropped."""
        dead = [k for k in self._data if k[0] != revision or k[1] != entities_version]
        for k in dead:
            del self._data[k]
            self._used.discard(k)
        return len(dead)

    def clear(self) -> None:
        self._data.clear()
        self._used.clear()
        self._soonest = float("inf")


# Exactly this layout (``forbid_unknown_fields``): a value with a field more — another version of the
# client writing its own layout under the same prefix — was read as this one, the field dropped.
class _Stored(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    decision: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    revision: int
    entities_version: int | None
    expires_at: float


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Stored).decode

# Many fills in one command: redis-py spends ~50 µs of CPU per command of a pipeline (packing and
# parsing each reply), so one EVALSHA for a write of 5 entries cost about half a pipeline of 5 SETs
# (~150 vs ~270 µs, measured). Redis reloads the script by itself after a restart (NOSCRIPT → load).
_PUT_MANY = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return #KEYS
"""


class DecisionL2:
    def __init__(
        self,
        redis: RedisConn,
        *,
        prefix: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
        lifetimes: tuple[float, float] = (math.inf, math.inf),
    ) -> None:
        if isinstance(redis, RedisCluster) and hash_tag(prefix) is None:
            # MGET of a batch's keys must stay in one slot (Cluster refuses CROSSSLOT).
            raise ValueError(f"l2_prefix {prefix!r} needs a hash tag on a Redis Cluster, e.g. '{{meshauth}}:decision:'")
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout
        self._clock = clock
        # The longest a deny and an allow read here may live on (``CacheConfig.deny_ttl``, ``ttl``).
        self._lifetimes = lifetimes
        self._put_many = redis.register_script(_PUT_MANY)
        self._raw: RawRedis | None = raw_for(redis)
        # False from a lost connection of the state follower until the client has a fresh answer
        # from the service (``_client.py``): what Redis holds may predate a change nobody announced.
        self.trusted = True

    async def get_many(self, keys: list[L1Key], *, budget: float | None = None) -> list[tuple[Decision, float] | None]:
        """Each key's decision and absolute expiry, or None (a miss, a Redis error, an unreadable
        value, or L2 not trusted now), in one ``MGET`` within ``budget`` seconds (default
        ``timeout``): a check's batch of misses, and warming."""
        if not keys:
            return []
        if not self.trusted:
            return [None] * len(keys)
        if budget is None:
            budget = self._timeout
        raws: Sequence[object]
        try:
            if self._raw is not None:
                raws = await self._raw.mget([l2_key(self._prefix, k) for k in keys], within=budget)
            else:
                async with asyncio.timeout(budget):
                    raws = await self._redis.mget([l2_key(self._prefix, k) for k in keys])
        except (RedisError, OSError, TimeoutError):
            return [None] * len(keys)
        if not isinstance(raws, list) or len(raws) != len(keys):
            # Not an MGET's reply (a nil, an integer: len() of it raised, failing the batch's checks):
            # a miss, like any other Redis failure.
            return [None] * len(keys)
        return [self._read(raw) for raw in raws]

    def _read(self, raw: object) -> tuple[Decision, float] | None:
        if not isinstance(raw, bytes):
            return None
        try:
            s = _decode(raw)
        except msgspec.DecodeError:
            return None
        # No check of the value's revision against the key's: an entry is keyed by the state it was
        # *asked* at, which may be newer than the one the answer reports (an announced
        # entities_version); the key is a SHA-256 of that state and the question, so it cannot
        # collide with another question's.
        # An expiry that is no time (NaN is never "past") makes the value unreadable; one further
        # ahead than this client's own TTL (another host's clock, a writer's garbage) is cut to it:
        # either made the entry answer from L1 for as long as the client stayed at that state.
        now = self._clock()
        if not math.isfinite(s.expires_at) or s.expires_at <= now:
            return None
        expires_at = min(s.expires_at, now + self._lifetimes[s.decision])
        d = Decision(
            decision=s.decision,
            reasons=s.reasons,
            errors=s.errors,
            revision=s.revision,
            entities_version=s.entities_version,
            source="l2",
        )
        return d, expires_at

    async def put_many(self, entries: list[tuple[L1Key, Decision, float]]) -> None:
        """Store ``(key, decision, ttl)`` entries in one command (a script of ``SET … PX``); a Redis
        error or a write slower than ``timeout`` drops them (the cache is an optimisation)."""
        if not entries:
            return
        now = self._clock()
        keys: list[bytes] = []
        args: list[bytes | int] = []
        for key, d, ttl in entries:
            assert d.revision is not None
            keys.append(l2_key(self._prefix, key))
            args.append(_encode(_Stored(d.decision, d.reasons, d.errors, d.revision, d.entities_version, now + ttl)))
            args.append(max(1, int(ttl * 1000)))
        try:
            if self._raw is not None:
                await self._raw.eval(_PUT_MANY, keys, args, within=self._timeout)
            else:
                async with asyncio.timeout(self._timeout):
                    await self._put_many(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError):
            return

    async def aclose(self) -> None:
        """Close the hot-path connection (the redis-py client belongs to the caller)."""
        if self._raw is not None:
            await self._raw.aclose()

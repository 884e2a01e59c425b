"""Server-side sessions in Redis, with idle and absolute timeouts, cached briefly in each replica.

The cookie holds an opaque random id; Redis holds the session under the id's SHA-256 (a dump of Redis
yields no usable cookie). Idle timeout is the key's TTL, refreshed when a replica reads the session from
Redis; the absolute deadline is stored in the session and checked on every use. Logout deletes the key
and announces it on the invalidation stream, so every replica drops its cached copy at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import msgspec
from cachetools import TTLCache

from meshauth.bus.invalidations import append
from meshauth.redis_client import Keys, RedisConn

KIND = "session"
SESSION_ID_BYTES = 32
MAX_COOKIE_CHARS = 128


class Session(msgspec.Struct, frozen=True):
    subject: str
    scope: str
    created_at: int
    absolute_exp: int
    access_jti: str = ""
    access_exp: int = 0


@dataclass(frozen=True, slots=True)
class NewSession:
    session_id: str
    session: Session


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(
        self, redis: RedisConn, keys: Keys, *, idle_timeout: int, absolute_timeout: int, cache_ttl: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._idle = idle_timeout
        self._absolute = absolute_timeout
        self._cache: TTLCache[str, Session] | None = TTLCache(maxsize=100_000, ttl=cache_ttl) if cache_ttl > 0 else None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Session)

    async def create(self, *, subject: str, scope: str, access_jti: str, access_exp: int) -> NewSession:
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = int(time.time())
        session = Session(
            subject=subject,
            scope=scope,
            created_at=now,
            absolute_exp=now + self._absolute,
            access_jti=access_jti,
            access_exp=access_exp,
        )
        ttl = min(self._idle, self._absolute)
        digest = session_hash(session_id)
        index = self._keys.user_sessions(subject)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.session(digest), self._encoder.encode(session), ex=ttl)
            # Per-user index, so disabling a user can end every session they have.
            pipe.sadd(index, digest)
            pipe.expire(index, self._absolute, gt=True)
            pipe.expire(index, self._absolute, nx=True)
            await pipe.execute()
        return NewSession(session_id=session_id, session=session)

    async def get(self, session_id: str) -> Session | None:
        """The live session for a cookie value, or None (unknown, idle too long, past its absolute deadline)."""
        if not session_id or len(session_id) > MAX_COOKIE_CHARS:
            return None
        digest = session_hash(session_id)
        now = time.time()
        if self._cache is not None:
            cached = self._cache.get(digest)
            if cached is not None:
                return cached if cached.absolute_exp > now else None
        key = self._keys.session(digest)
        raw = await self._redis.get(key)
        if raw is None:
            return None
        session = self._decoder.decode(raw)
        remaining = session.absolute_exp - int(now)
        if remaining <= 0:
            return None
        still_there = await self._redis.expire(key, min(self._idle, remaining))
        # Cache only if the session outlived the round trip: a logout between GET and EXPIRE would
        # otherwise be cached away until the cache TTL ran out.
        if self._cache is not None and still_there:
            self._cache[digest] = session
        return session

    async def stored(self, session_id: str) -> Session | None:
        """What Redis holds for a cookie value, as is: no cache, no deadline check, no TTL refresh
        (logout reads it to revoke the session's token before ending it)."""
        if not session_id or len(session_id) > MAX_COOKIE_CHARS:
            return None
        raw = await self._redis.get(self._keys.session(session_hash(session_id)))
        return self._decoder.decode(raw) if raw is not None else None

    async def end(self, session_id: str) -> Session | None:
        """Delete the session everywhere; returns what it was, if it existed."""
        if not session_id or len(session_id) > MAX_COOKIE_CHARS:
            return None
        return await self._end_digest(session_hash(session_id))

    async def end_all(self, subject: str) -> list[Session]:
        """End every session of ``subject`` (a disabled or deleted user); returns those that were live."""
        index = self._keys.user_sessions(subject)
        digests = await self._redis.smembers(index)
        ended = []
        for digest in digests:
            session = await self._end_digest(digest.decode() if isinstance(digest, bytes) else digest)
            if session is not None:
                ended.append(session)
        await self._redis.delete(index)
        return ended

    async def _end_digest(self, digest: str) -> Session | None:
        key = self._keys.session(digest)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.getdel(key)
            append(pipe, self._keys.invalidations, KIND, digest)
            raw, _ = await pipe.execute()
        self.evict_local(digest)
        return self._decoder.decode(raw) if raw is not None else None

    def evict_local(self, digest: str) -> None:
        if self._cache is not None:
            self._cache.pop(digest, None)

    def clear_local(self) -> None:
        if self._cache is not None:
            self._cache.clear()

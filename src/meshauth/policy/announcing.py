"""Telling the decision caches of every client (``meshauth.client``) that a store changed, and
following the announcements of the other replicas — both only when Redis is configured.

Publishing: after an admin write is committed *and this worker serves it* (the registry reloaded),
:meth:`StateAnnouncer.changed` publishes the store's new state ``(revision, entities_version)``
with ``meshauth.client.announce`` (a hash entry and a stream entry). Clients following the stream
move to it within milliseconds, and the state is exactly what this service's decisions report.
A failed publish (Redis down, slow past ``PUBLISH_TIMEOUT``) is logged and does not fail the write:
clients then see the change at their next answer from the new state, or after the cache TTL.

Following: a client that moved to a new state refuses answers from an older one (a lagging replica),
so every replica of the service also reads the stream and re-reads the database at once on an
announcement (``Registry.refresh(force=True)``), instead of at its next refresh tick.

Without Redis both are off (``None``): the service works as before, replicas follow the database
every ``policy_refresh_interval``, and clients rely on the state in answers and their TTLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from meshauth.client import State, StateFollower, announce
from meshauth.client._invalidation import announce_staged
from meshauth.redis_client import RedisConn

__all__ = ["PUBLISH_TIMEOUT", "StateAnnouncer", "following"]

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 0.5


class StateAnnouncer:
    def __init__(self, redis: RedisConn, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.published = 0  # for tests and operators

    async def changed(self, store: str, revision: int, entities_version: int, *, activated: int | None = None) -> None:
        """``activated``: the revision is that version activated on the one before, nothing else."""
        state = State(revision, entities_version)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await announce(self._redis, store, state, prefix=self._prefix, activated=activated)
        except Exception:  # the write is committed: a lost announcement only delays caches
            log.warning("could not announce the new state of policy store %r", store, exc_info=True)
            return
        self.published += 1

    async def staged(self, store: str, version: int) -> bool:
        """Tell clients to warm for ``version`` (``meshauth.client``'s staged warming); False when
        that could not be said (then there is no point waiting for them)."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await announce_staged(self._redis, store, version, prefix=self._prefix)
        except Exception:  # warming is an optimisation: the activation goes ahead cold
            log.warning("could not announce staged version %s of policy store %r", version, store, exc_info=True)
            return False
        return True

    async def aclose(self) -> None:
        await self._redis.aclose()


@contextlib.asynccontextmanager
async def following(redis_url: str, prefix: str, refresh: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """While open, every announcement makes this worker re-read the database (``refresh``)."""
    due = asyncio.Event()

    async def refresh_when_due() -> None:
        # Coalesced: announcements arriving during a refresh cause one more, not one each.
        while True:
            await due.wait()
            due.clear()
            try:
                await refresh()
            except Exception:  # keep serving what is loaded; the refresh loop retries
                log.warning("policy store refresh on an announcement failed", exc_info=True)

    follower = StateFollower(redis_url, [], prefix=prefix, on_state=lambda _store, _state: due.set())
    loop = asyncio.get_running_loop()
    refresher = loop.create_task(refresh_when_due())
    # In the background: a Redis that is down at start must not hold the service's start-up.
    starting = loop.create_task(follower.start())
    try:
        yield
    finally:
        for task in (starting, refresher):
            task.cancel()
        await asyncio.gather(starting, refresher, return_exceptions=True)
        await follower.stop()

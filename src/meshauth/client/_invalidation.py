"""Telling every replica's client that a store changed: announcements on a Redis stream.

Publisher (the policy service, after it activates a version or writes entities, when it has Redis):
:func:`announce` stores the store's new state in a Redis hash *and* appends it to a stream.
Subscriber (every process with a :class:`PolicyClient`): :class:`StateFollower` reads the stream
with the project's ``InvalidationListener`` (XREAD BLOCK: an entry arrives one round trip after it
is written) and calls ``client.announced(state)`` (warming first, when on: ``_tracking.py``).
Because cache keys hold the state, advancing makes every entry made at an older state unreachable
at once, in L1 *and* L2 — nothing is deleted.

Redis away: the listener reconnects, and resyncs when the stream lost entries. On every
reconnection, resync or not, the follower calls ``invalidate()``: it **flushes L1** and makes the
client **distrust L2 until the service has answered again** — a change made while Redis was away was
announced to nobody (the announcement failed), so the state the client knows may be old, and L2
(kept across a restart by Valkey's append-only file) holds entries under that old state. The first
answer from the service after the reconnection carries the current state; from then on L2 is
consulted again, under that state. So nothing cached before the outage answers after the follower
is back (while Redis is away, L1 keeps serving what it has — the price of staying up). On a resync
the follower also reads the hash (the newest state of every store). Announcements are JSON arrays
``[store, revision, entities_version]`` (``_announcements.py``); a malformed one is ignored and logged.
Followers are anything with ``store``, ``announced(state)`` and ``invalidate()`` (:class:`Follows`),
so this module does not import the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from meshauth.bus.invalidations import InvalidationListener, publish
from meshauth.client._announcements import (
    DEFAULT_PREFIX,
    KIND,
    KIND_ACTIVATED,
    KIND_STAGED,
    decode_activated,
    decode_staged,
)
from meshauth.client._announcements import decode as _decode
from meshauth.client._announcements import encode as _encode
from meshauth.client._announcements import names as _names
from meshauth.client._models import State
from meshauth.redis_client import RedisConn, connect

__all__ = ["KIND", "Follows", "StateFollower", "announce", "announce_staged"]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0


class Follows(Protocol):
    """What a follower keeps current (a :class:`PolicyClient`)."""

    @property
    def store(self) -> str: ...

    def announced(self, state: State) -> None: ...

    def invalidate(self) -> None: ...


async def announce(
    redis: RedisConn, store: str, state: State, *, prefix: str = DEFAULT_PREFIX, activated: int | None = None
) -> None:
    """Publish ``store``'s new state to every follower (and keep it for followers that resync).
    ``activated``: the state is that policy version activated on the revision before and nothing
    else (``policy_activated``, for staged warming; published first)."""
    stream, states = _names(prefix)
    value = _encode(store, state)
    await redis.hset(states, store, value)
    if activated is not None and state.entities_version is not None:
        doc = [store, state.revision, state.entities_version, activated]
        await publish(redis, stream, KIND_ACTIVATED, json.dumps(doc, separators=(",", ":")))
    await publish(redis, stream, KIND, value)


async def announce_staged(redis: RedisConn, store: str, version: int, *, prefix: str = DEFAULT_PREFIX) -> None:
    """Tell every follower that ``version`` of ``store`` is about to be activated (``policy_staged``)."""
    await publish(redis, _names(prefix)[0], KIND_STAGED, json.dumps([store, version], separators=(",", ":")))


class StateFollower:
    """Keeps ``clients`` (any number, any stores) at the newest announced state of their stores."""

    def __init__(
        self,
        redis_url: str,
        clients: Sequence[Follows],
        *,
        prefix: str = DEFAULT_PREFIX,
        on_state: Callable[[str, State], None] | None = None,
    ) -> None:
        self._clients = list(clients)
        self._url = redis_url
        self._stream, self._states = _names(prefix)
        self._on_state = on_state
        self._listener = InvalidationListener(
            redis_url, self._stream, self._handle, self._resync, on_connect=self._reconnected
        )
        self.resyncs = 0
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._listener.connected

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        # Bounded: in tests, stopping the project's stream listener very rarely hung (a cancelled
        # redis-py read; reported, not fixed here). Shutdown must not hang with it.
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self._listener.stop()
        except TimeoutError:
            log.warning("policy state follower did not stop within %.1fs", STOP_TIMEOUT)

    def _apply(self, raw: str | bytes) -> None:
        parsed = _decode(raw)
        if parsed is None:
            log.warning("ignoring malformed policy state announcement %.200r", raw)  # never a huge line
            return
        store, state = parsed
        for client in self._clients:
            if client.store == store:
                client.announced(state)
        if self._on_state is not None:
            self._on_state(store, state)

    def _handle(self, kind: str, value: str, _exp: int) -> None:
        if kind == KIND:
            self._apply(value)
        elif kind in (KIND_STAGED, KIND_ACTIVATED):
            try:
                self._warming(kind, value)
            except Exception:  # warming is an optimisation: it must never stop the follower
                log.warning("handling a %s announcement failed", kind, exc_info=True)

    def _warming(self, kind: str, value: str) -> None:
        """Staged warming's announcements (``_staging.py``), for clients that know them."""
        if kind == KIND_STAGED:
            staged = decode_staged(value)
            if staged is None:
                log.warning("ignoring malformed staged version announcement %.200r", value)
                return
            for client in self._clients:
                if client.store == staged[0] and hasattr(client, "staged"):  # any Follows may lack it
                    client.staged(staged[1])
            return
        activated = decode_activated(value)
        if activated is None:
            log.warning("ignoring malformed activation announcement %.200r", value)
            return
        for client in self._clients:
            if client.store == activated[0] and hasattr(client, "activated"):
                client.activated(activated[1], activated[2])

    def _reconnected(self) -> None:
        if self.connects:  # after a lost connection: a change may have been made meanwhile
            for client in self._clients:
                client.invalidate()
        self.connects += 1

    async def _resync(self) -> None:
        redis = connect(self._url)
        try:
            states = await redis.hgetall(self._states)
        finally:
            await redis.aclose()
        for client in self._clients:
            client.invalidate()
        for value in states.values():
            self._apply(value)
        self.resyncs += 1

"""Where decisions are kept and found again: both cache levels behind one object, and the fallback
when the service cannot answer.

An answer is kept under the state it stands for, in L1 at once and in L2 by a background write (a
check never waits for Redis to store). Allows live ``ttl``, denies ``deny_ttl``. The fallback is a
cached decision expired less than ``stale_if_error`` ago, for exactly that question at that state
(default off), else a deny with reason ``policy_unavailable`` — never an allow.
"""

from __future__ import annotations

import asyncio

import msgspec

from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._config import CacheConfig
from meshauth.client._keys import L1Key
from meshauth.client._metrics import CACHE, FALLBACKS
from meshauth.client._models import Decision, State, unavailable

__all__ = ["DecisionStore"]

_STALE_SOURCE = "stale"


class DecisionStore:
    def __init__(self, l1: DecisionL1 | None, l2: DecisionL2 | None, config: CacheConfig) -> None:
        self._l1 = l1
        self._l2 = l2
        self._cfg = config
        self._background: set[asyncio.Task[None]] = set()

    async def from_l2(self, key: L1Key) -> Decision | None:
        """An L2 hit (also put into L1 for what remains of its life), or None."""
        if self._l2 is None:
            return None
        got = await self._l2.get(key)
        if got is None:
            CACHE.add("l2", "miss")
            return None
        d, expires_at = got
        CACHE.add("l2", "hit")
        if self._l1 is not None:
            self._l1.put(key, msgspec.structs.replace(d, source="l1"), expires_at)
        return d

    def put(self, rkey: bytes, d: Decision, state: State) -> None:
        ttl = self._cfg.ttl if d.decision else self._cfg.deny_ttl
        key: L1Key = (state.revision, state.entities_version, rkey)
        if self._l1 is not None:
            self._l1.put(key, msgspec.structs.replace(d, source="l1"), self._l1.clock() + ttl)
        if self._l2 is not None:
            task = asyncio.get_running_loop().create_task(self._l2.put(key, d, ttl))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def fallback(self, key: L1Key | None, detail: str) -> Decision:
        if key is not None and self._l1 is not None and self._cfg.stale_if_error > 0:
            stale = self._l1.get_stale(key)
            if stale is not None:
                FALLBACKS.add("stale")
                return msgspec.structs.replace(stale, source=_STALE_SOURCE)
        return self.deny(detail)

    @staticmethod
    def deny(detail: str) -> Decision:
        FALLBACKS.add("deny")
        return unavailable(detail)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

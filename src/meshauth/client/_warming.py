"""Cache warming, so neither a start nor a change of state is a cache cliff.

- **On start** (:meth:`Warmer.start`): read the store's announced state (the announcements hash) and
  the fleet's hottest questions (the shared sorted set, ``_hot.py``), and fill L1 with what L2 holds
  for them at that state — one ``ZREVRANGE`` and one ``MGET``, no call to the service.
- **On an announced new policy revision** (:meth:`Warmer.rewarm`): this process's hottest questions are
  looked up in L2 at the new state (another replica may have asked them already) and the rest are
  asked of the service, in batches, before the client moves to that state; the answers fill L1 (and
  L2) under it. It stops at ``budget`` seconds: what is not warm by then is asked on first use, as
  without warming. An answer from a state older than the target (a lagging replica) is not kept.

Warming never answers a check itself and never keeps an answer under a state older than the one it
was made at, so it changes when a change shows (at most ``budget`` later), not what is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from redis.exceptions import RedisError

from meshauth.client._announcements import decode, names
from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._config import CacheConfig, WarmConfig
from meshauth.client._hot import HotKeys, push, top
from meshauth.client._keys import L1Key
from meshauth.client._metrics import WARMED
from meshauth.client._models import Decision, State
from meshauth.client._request import Pending, from_key
from meshauth.redis_client import RedisConn

__all__ = ["Warmer"]

log = logging.getLogger(__name__)

Ask = Callable[[list[Pending]], Coroutine[Any, Any, list[Decision | BaseException]]]
Keep = Callable[[bytes, Decision, State], None]


class Warmer:
    def __init__(
        self,
        store: str,
        config: WarmConfig,
        cache: CacheConfig,
        l1: DecisionL1,
        l2: DecisionL2 | None,
        redis: RedisConn | None,
        ask: Ask,
        keep: Keep,
        max_batch: int,
    ) -> None:
        self.hot = HotKeys(config)
        self._store = store
        self._cfg = config
        self._l1 = l1
        self._l2 = l2
        self._redis = redis
        self._hot_set = f"{cache.l2_prefix}hot:{store}".encode()  # never a 64-hex L2 key
        self._ask = ask
        self._keep = keep
        self._max_batch = max_batch
        self._pusher: asyncio.Task[None] | None = None
        # After aclose nothing starts again: a check arriving then (a shutdown under traffic) restarted
        # the pusher, a task pushing to Redis every ``flush_every`` for as long as the loop ran.
        self._closed = False

    def ensure_pushing(self) -> None:
        """Start the periodic push of hot counts to Redis (once; needs a running loop; never after aclose)."""
        if self._pusher is None and self._redis is not None and not self._closed:
            self._pusher = asyncio.get_running_loop().create_task(self._push_forever())

    async def _push_forever(self) -> None:
        assert self._redis is not None
        while True:
            await asyncio.sleep(self._cfg.flush_every)
            await push(self._redis, self._hot_set, self.hot.take_pending(), keep=self._cfg.hot_keys * 4)

    async def aclose(self) -> None:
        self._closed = True
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
            self._pusher = None
            assert self._redis is not None
            with contextlib.suppress(TimeoutError):  # what was counted since the last push, briefly
                async with asyncio.timeout(self._cfg.budget * 5):
                    await push(self._redis, self._hot_set, self.hot.take_pending(), keep=self._cfg.hot_keys * 4)

    async def start(self) -> tuple[State | None, int]:
        """The store's announced state and how many decisions L1 got from L2 at it."""
        if self._redis is None:
            return None, 0
        try:
            async with asyncio.timeout(self._cfg.budget * 5):
                raw = await self._redis.hget(names(self._cfg.state_prefix)[1], self._store)
                hottest = await top(self._redis, self._hot_set, self._cfg.hot_keys)
        except (RedisError, OSError, TimeoutError):
            return None, 0
        parsed = decode(raw) if raw is not None else None
        if parsed is None or parsed[0] != self._store:
            return None, 0
        state = parsed[1]
        for rkey, count in hottest:
            self.hot.add(rkey, max(1, count))
        self.hot.take_pending()  # already in Redis
        return state, await self._from_l2(state, [k for k, _ in hottest])

    async def _from_l2(self, state: State, rkeys: list[bytes]) -> int:
        if self._l2 is None or not rkeys:
            return 0
        keys: list[L1Key] = [(state.revision, state.entities_version, k) for k in rkeys]
        found = 0
        for key, got in zip(keys, await self._l2.get_many(keys, budget=self._cfg.budget), strict=True):
            if got is not None:
                d, expires_at = got
                self._l1.put(key, msgspec.structs.replace(d, source="l1"), expires_at)
                found += 1
        WARMED.add_many(found, "l2")
        return found

    async def rewarm(self, state: State) -> int:
        """Ask this process's hottest questions again at ``state`` (L2 first), within the budget.
        Each batch is kept as soon as it is answered: what the budget allows is warm, the rest is
        asked on first use."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.budget
        at = (state.revision, state.entities_version)
        rkeys = [k for k in self.hot.hottest(self._cfg.hot_keys) if self._l1.get((*at, k)) is None]
        if not rkeys:
            return 0
        warmed = 0
        if self._l2 is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    warmed = await self._from_l2(state, rkeys)
            rkeys = [k for k in rkeys if self._l1.get((*at, k)) is None]
        asks = [(k, p) for k in rkeys if (p := from_key(self._store, k, deadline)) is not None]
        chunks = [asks[i : i + self._max_batch] for i in range(0, len(asks), self._max_batch)]
        tasks: dict[asyncio.Task[list[Decision | BaseException]], list[tuple[bytes, Pending]]] = {
            loop.create_task(self._ask([p for _, p in c])): c
            for c in chunks  # hottest first
        }
        asked = 0
        pending = set(tasks)
        try:
            while pending and (left := deadline - loop.time()) > 0:
                done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is None:  # a failed batch warms nothing
                        asked += self._keep_answers(tasks[task], task.result(), state)
        finally:
            for task in pending:
                task.cancel()  # the rest is asked on first use
        WARMED.add_many(asked, "service")
        return warmed + asked

    def _keep_answers(
        self, chunk: list[tuple[bytes, Pending]], result: list[Decision | BaseException], state: State
    ) -> int:
        kept = 0
        for (rkey, _), d in zip(chunk, result, strict=True):
            if isinstance(d, BaseException) or d.error is not None or d.state is None:
                continue
            if not d.state.covers(state):
                continue  # a replica behind the announcement: its answer is not for this state
            self._keep(rkey, d, d.state.join(state))
            kept += 1
        return kept

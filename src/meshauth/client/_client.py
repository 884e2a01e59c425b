"""``PolicyClient``: checks against the policy service's AuthZEN API, through (in this order)
**L1** (in process; a hit answers at once) → **single-flight** (an identical check in flight is
joined) → **L2** (Redis, shared by replicas; a hit fills L1) → the **batcher** (concurrent misses go
out as one ``evaluations`` call, a lone one at once) → the **call** (``_call.py``: breaker, endpoint
choice and ejection, transport, retries within the budget and the caller's deadline).

Any failure is a deny with reason ``policy_unavailable`` (or, with ``stale_if_error`` on, a recently
expired cached decision for that question). Never an allow.

Cache keys hold the store state (``revision``, ``entities_version``) the client answers at
(``_tracking.py``): every answer carries the state it was made at and is cached under it, so a
newer state (from an answer, :meth:`PolicyClient.advance`, or an announcement) retires every older
entry at once. The client never answers from a state older than one it adopted (an answer from an
older state, from a lagging replica, is refused as unavailable); unannounced changes wait for the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshauth import wire
from meshauth.batching import Batcher
from meshauth.client._asking import Asking
from meshauth.client._breaker import CircuitBreaker, StateName
from meshauth.client._cache import DecisionL1, DecisionL2
from meshauth.client._call import MAX_REQUEST_BYTES, Caller
from meshauth.client._config import (
    DEFAULT_TIMEOUT,
    BalanceConfig,
    BatchConfig,
    BreakerConfig,
    CacheConfig,
    EjectionConfig,
    PoolConfig,
    RetryConfig,
    WarmConfig,
    check_client_args,
)
from meshauth.client._endpoints import Endpoints
from meshauth.client._flight import FlightKey, Flights
from meshauth.client._front import L1Front
from meshauth.client._keys import request_key
from meshauth.client._many import ManyParts, check_many
from meshauth.client._metrics import BREAKER_STATE, BREAKER_TRANSITIONS, STATE_CODE
from meshauth.client._models import MINIMIZE_LATENCY, Check, Consistency, Decision, State
from meshauth.client._request import Pending, Question, checked, deadline_after, question
from meshauth.client._retry import RetryBudget
from meshauth.client._staging import Stager
from meshauth.client._stored import DecisionStore
from meshauth.client._tracking import StateTracker
from meshauth.client._transport import Transport
from meshauth.client._transport_h1 import default_transport
from meshauth.client._warming import Warmer
from meshauth.redis_client import RedisConn

__all__ = ["PolicyClient"]


class PolicyClient(Asking):
    """An asyncio client for the meshauth policy service (AuthZEN 1.0 decision API).

    ``urls``: policy service replicas (one inside a mesh); ``store``: the store asked; ``token``:
    ``Authorization: Bearer`` for a protected decision API; ``timeout``: a check's default deadline
    (seconds). Every other keyword configures one feature, and ``None`` switches it off. ``redis``
    enables L2 (with ``cache`` on) and shares hotness for warming. ``transport`` replaces the default
    (``H1Transport`` for http:// URLs, else aiohttp: ``PoolConfig.transport``); ``clock`` drives the breaker and the
    endpoints (ejection, latency), ``wall_clock`` expiry. ``max_request_bytes``: the largest request
    body the service takes (its ``policy_max_request_bytes``): a check whose question alone is larger
    is answered ``invalid_request`` without a call, and never fails the checks batched with it."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        store: str = "default",
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        batching: BatchConfig | None = BatchConfig(),
        singleflight: bool = True,
        cache: CacheConfig | None = CacheConfig(),
        redis: RedisConn | None = None,
        breaker: BreakerConfig | None = BreakerConfig(),
        retry: RetryConfig | None = RetryConfig(),
        pool: PoolConfig | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ejection: EjectionConfig | None = EjectionConfig(),
        balancing: BalanceConfig | None = BalanceConfig(),
        warming: WarmConfig | None = WarmConfig(),
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        clean = check_client_args(urls, store, token, timeout)
        if not (type(max_request_bytes) is int and max_request_bytes >= 1024):
            raise ValueError(f"max_request_bytes must be an integer >= 1024, not {max_request_bytes!r}")
        self.store = store
        self._timeout = float(timeout)
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        self._own_transport = transport is None
        self._caller = Caller(
            transport if transport is not None else default_transport(clean, pool),
            Endpoints(clean, ejection, clock=clock, balance=balancing),
            store=store,
            headers=headers,
            breaker=CircuitBreaker(breaker, clock=clock, on_transition=self._transition) if breaker else None,
            budget=RetryBudget(retry) if retry else None,
            max_request_bytes=max_request_bytes,
        )
        self._batcher: Batcher[Pending, Decision] | None = (
            Batcher(self._flush, max_batch=batching.max_batch, max_wait=batching.max_wait, linger=batching.linger)
            if batching
            else None
        )
        self._sf: Flights[FlightKey, Decision] | None = Flights() if singleflight else None
        self._cache = cache
        l1 = DecisionL1(maxsize=cache.l1_size, stale_for=cache.stale_if_error, clock=wall_clock) if cache else None
        l2 = (
            DecisionL2(
                redis,
                prefix=cache.l2_prefix,
                timeout=cache.l2_timeout,
                clock=wall_clock,
                lifetimes=(cache.deny_ttl, cache.ttl),
            )
            if cache and redis is not None
            else None
        )
        self._stored = stored = DecisionStore(l1, l2, cache) if cache else None
        self._l1 = l1
        self._warmer: Warmer | None = None
        if warming is not None and cache is not None and l1 is not None and stored is not None:
            batch = batching.max_batch if batching else BatchConfig().max_batch
            self._warmer = Warmer(store, warming, cache, l1, l2, redis, self._caller.flush, stored.put, batch)
        self._tracker = StateTracker(store, self._warmer)
        self._stager: Stager | None = None
        if self._warmer is not None and warming is not None and warming.stage and l1 is not None and cache is not None:
            self._stager = Stager(store, warming, cache, l1, l2, self._caller, self._warmer.hot, self._tracker)
        self._front = L1Front(l1, self._warmer.hot if self._warmer is not None else None, self._tracker)
        BREAKER_STATE.labels(store).set(0)

    @property
    def state(self) -> State | None:
        """The newest store state this client has seen (None before the first answer)."""
        return self._tracker.seen

    @property
    def breaker_state(self) -> StateName:
        breaker = self._caller.breaker
        return breaker.state if breaker else "closed"

    @property
    def ejected(self) -> list[str]:
        """The URLs ejected right now (consecutive failures), sorted."""
        return self._caller.endpoints.ejected

    def advance(self, state: State) -> None:
        """Learn of a newer store state (e.g. from an invalidation message): from now on no cache
        entry made at an older state answers, and no answer from an older state is accepted."""
        self._tracker.advance(state)

    def announced(self, state: State) -> None:
        """A newer state was announced (what :class:`StateFollower` calls): with warming on, the
        hottest questions are asked at it first (at most ``WarmConfig.budget`` seconds), then the
        client moves to it; without warming, as :meth:`advance`."""
        self._tracker.announced(state)

    def staged(self, version: int) -> None:
        """Policy ``version`` was announced as staged (what :class:`StateFollower` calls): with staged
        warming on, this process's hottest questions are asked of it ahead of its activation."""
        if self._stager is not None:
            self._stager.staged(version)

    def activated(self, state: State, version: int) -> None:
        """``state`` was announced as ``version`` activated on the revision before (what
        :class:`StateFollower` calls): answers staged for exactly that fill L1 and the client moves
        to ``state``; otherwise nothing here (the state's own announcement follows)."""
        if self._stager is not None:
            self._stager.activated(state, version)

    async def warm(self) -> int:
        """Warm L1 from L2's hottest questions at the store's announced state (on start; ``async
        with`` runs it). Returns how many decisions L1 got; 0 without Redis or warming."""
        return await self._tracker.warm_on_start()

    def invalidate(self) -> None:
        """Drop every L1 entry and stop trusting L2 until the service has answered again (for a
        change the state may not capture: what :class:`StateFollower` calls when its connection to
        Redis is lost or comes back — a change made meanwhile was announced to nobody)."""
        if self._stager is not None:
            self._stager.cancel_promotion()
        if self._l1 is not None:
            self._l1.clear()
        if self._stored is not None and self._stored.l2 is not None:
            self._stored.l2.trusted = False

    async def check(
        self,
        subject: wire.Subject | Mapping[str, Any],
        action: str,
        resource: wire.Resource | Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        consistency: Consistency = MINIMIZE_LATENCY,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline travels into shared batch calls
    ) -> Decision:
        """Is ``subject`` allowed to ``action`` on ``resource``? Always returns a :class:`Decision`
        within ``timeout`` seconds (default: the client's): on any failure, a deny."""
        if not isinstance(consistency, Consistency):
            raise TypeError("consistency must be MINIMIZE_LATENCY, FULLY_CONSISTENT or at_least(state)")
        p = checked(subject, action, resource, context, timeout, self._timeout)
        rkey = b""
        if self._cache is not None or self._sf is not None:
            rkey = request_key(self.store, p.subject, p.action, p.resource, p.context)
        return await self._ask(p, rkey, consistency)

    async def check_question(
        self,
        q: Question,
        *,
        consistency: Consistency = MINIMIZE_LATENCY,
        timeout: float | None = None,  # noqa: ASYNC109 - as check()
    ) -> Decision:
        """:meth:`check` of a :meth:`question` (one this client's store made: else ``ValueError``),
        without validating or encoding its arguments again — a cold gate's path after :meth:`cached`."""
        if not isinstance(consistency, Consistency):
            raise TypeError("consistency must be MINIMIZE_LATENCY, FULLY_CONSISTENT or at_least(state)")
        p = q.pending(self.store, deadline_after(timeout, self._timeout)) if isinstance(q, Question) else None
        if p is None:
            raise ValueError("not a question made by a client of this store")
        return await self._ask(p, q.key, consistency)

    def question(
        self,
        subject: wire.Subject | Mapping[str, Any],
        action: str,
        resource: wire.Resource | Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> Question:
        """A check's arguments validated (as :meth:`check` does) and encoded once, for :meth:`cached`."""
        return question(self.store, subject, action, resource, context)

    def cached(self, q: Question) -> Decision | None:
        """What :meth:`check` would answer from L1 for a :meth:`question` right now, or None — then ask
        :meth:`check` (which counts the miss). No coroutine, no validation, no encoding: a warm gate's path."""
        return self._front.hit(q.key)

    async def check_many(
        self,
        checks: Sequence[Check],
        *,
        consistency: Consistency = MINIMIZE_LATENCY,
        timeout: float | None = None,  # noqa: ASYNC109 - as check()
    ) -> list[Decision]:
        """Several checks in one pass (``_many.py``): answers as ``check()``'s, misses in batched calls."""
        b, c = self._batcher, self._caller
        parts = ManyParts(self.store, self._timeout, b.max_batch if b else 1, self._cache is not None, c.flush,
                          c.breaker, self._stored, self._l1, self._sf, self._warmer, self._tracker)  # fmt: skip
        return await check_many(parts, checks, consistency, timeout)

    async def aclose(self) -> None:
        if self._stager is not None:
            await self._stager.aclose()
        await self._tracker.aclose()
        if self._batcher is not None:
            await self._batcher.aclose()
        if self._stored is not None:
            await self._stored.aclose()
        if self._own_transport:
            await self._caller.transport.aclose()

    async def __aenter__(self) -> PolicyClient:
        await self.warm()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _transition(self, was: StateName, to: StateName) -> None:
        BREAKER_TRANSITIONS.add(self.store, to)
        BREAKER_STATE.labels(self.store).set(STATE_CODE[to])

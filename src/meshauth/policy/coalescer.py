"""Coalesced evaluation: concurrent single ``evaluation`` requests answered as one batch (issue 11).

Callers that send one check per request (Envoy, curl, other languages) get the batch path's
evaluation: the requests a worker has parsed and not yet answered go through
:class:`meshauth.batching.Batcher` (the client's batcher: size, time and idle flush), and each
gathered batch is evaluated with one :meth:`Evaluator.decide` per (store state, snapshot) — one
entity load (one SQL query per hierarchy level for the whole group, DataLoader-style) and one
``is_authorized_batch`` per policy subset.

What a caller sees does not change:

- a lone request waits for nothing: when no other single evaluation is in progress in this worker
  (``Activity``, counted by the decision front from before the body is read), nothing is queued or
  being evaluated, it is evaluated in its own task — exactly the uncoalesced path: at once when the
  worker decided nothing in the last ``max_wait`` (it was idle), else after letting the loop turn
  once (requests the loop has scheduled but not started may follow) if nobody came meanwhile.
  Otherwise it queues: with no batch in flight the batcher flushes on the next loop turn, so the
  requests parsed meanwhile join;
- parse errors, unknown stores and guard refusals never reach the coalescer (each request's own
  400/404/401, answered before it is queued);
- each request gets its own decision (its own revision, policies and errors); a forbid that
  errors still denies (``evaluator._decision`` is the same code on both paths);
- a group whose evaluation raises is answered again one request at a time, so one request's
  failure (a poisoned entity document, a database error on its rows) stays its own.

Metrics: batch sizes, how long the oldest request of a batch waited, and requests decided at once
alone (``policy.metrics``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from meshauth import wire
from meshauth.batching import Batcher
from meshauth.policy.authzen import Query
from meshauth.policy.evaluator import Evaluator
from meshauth.policy.metrics import COALESCED_BATCH_SIZE, COALESCED_INLINE, COALESCED_WAIT_SECONDS
from meshauth.policy.snapshot import Snapshot
from meshauth.policy.state import StoreState

__all__ = ["Activity", "Coalescer"]


class Activity:
    """Single ``evaluation`` requests in progress in this worker (body being read, parsed, decided).

    Why: deferring a request to the next loop turn pays only when another request can join it; at
    low load (one request at a time) the deferral, the extra task and the extra loop turns are CPU
    spent for nothing (docs/performance.md, issue 11). The front counts requests from before their
    body is read, so one still on its way to the coalescer keeps the others queueing for it. It
    cannot count requests whose task granian has scheduled but the loop has not started yet (under
    load, a turn's worth of them), hence the idle gap in ``Coalescer.decide`` as well.
    """

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0


class _Pending:
    """One queued request: what it is evaluated against, and when it was queued."""

    __slots__ = ("query", "queued", "snapshot", "state")

    def __init__(self, state: StoreState, snapshot: Snapshot | None, query: Query) -> None:
        self.state = state
        self.snapshot = snapshot
        self.query = query
        self.queued = time.perf_counter()


class Coalescer:
    def __init__(
        self,
        evaluator: Evaluator,
        *,
        max_batch: int,
        max_wait: float,
        activity: Activity | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._evaluator = evaluator
        # None: every request queues (unit tests drive the batcher alone); see ``Activity``.
        self._activity = activity
        self._clock = clock
        # A worker that decided something less than this long ago is busy, not idle: requests its
        # loop has scheduled but not started may follow in the same turn, so queue for them.
        self._idle_gap = max_wait
        self._last_decided = -float("inf")
        self._batcher: Batcher[_Pending, wire.Decision] = Batcher(self._flush, max_batch=max_batch, max_wait=max_wait)
        self.batches = 0  # for tests: how many batches went out
        self.largest = 0  # for tests: the largest batch so far
        self.inline = 0  # for tests: requests evaluated at once, alone

    async def decide(self, state: StoreState, query: Query, snapshot: Snapshot | None) -> wire.Decision:
        """``query``'s decision at ``state`` (and ``snapshot``), evaluated with whatever else is pending."""
        if self._nobody_else():
            if self._clock() - self._last_decided < self._idle_gap:
                # Alone by every count, but the worker decided something within ``max_wait``: requests
                # its loop has scheduled and not started may be about to follow. Let them start (one
                # loop turn), then go alone if nobody came. The batcher's path for a request that
                # ends up alone is a callback, a task, a future and three loop turns: +8-18 % of a
                # request's instructions, +15-133 µs of CPU served (docs/performance.md, stop 22).
                await asyncio.sleep(0)
                if not self._nobody_else():
                    return await self._batcher.submit(_Pending(state, snapshot, query))
            self.inline += 1
            COALESCED_INLINE.add()
            try:
                (decision,) = await self._evaluator.decide(state, [query], snapshot)
            finally:
                self._last_decided = self._clock()
            return decision
        return await self._batcher.submit(_Pending(state, snapshot, query))

    def _nobody_else(self) -> bool:
        """No other single evaluation in progress (the front's count), none queued or being evaluated."""
        activity, batcher = self._activity, self._batcher
        return activity is not None and activity.active <= 1 and batcher.in_flight == 0 and batcher.pending == 0

    async def aclose(self) -> None:
        """Answer what is pending (at shutdown)."""
        await self._batcher.aclose()

    async def _flush(self, items: list[_Pending]) -> list[wire.Decision | BaseException]:
        try:
            return await self._flush_group(items)
        finally:
            self._last_decided = self._clock()

    async def _flush_group(self, items: list[_Pending]) -> list[wire.Decision | BaseException]:
        size = len(items)
        self.batches += 1
        self.largest = max(self.largest, size)
        COALESCED_BATCH_SIZE.observe(size)
        COALESCED_WAIT_SECONDS.observe(time.perf_counter() - items[0].queued)
        if size == 1:
            only = items[0]
            try:
                (decision,) = await self._evaluator.decide(only.state, [only.query], only.snapshot)
            except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                return [exc]
            return [decision]
        # Requests evaluated against the same compiled store and snapshot form one group; ids are
        # stable here because ``items`` holds every state and snapshot alive until we return.
        groups: dict[tuple[int, int], list[int]] = {}
        for n, item in enumerate(items):
            groups.setdefault((id(item.state), id(item.snapshot)), []).append(n)
        out: list[wire.Decision | BaseException | None] = [None] * size
        for members in groups.values():
            first = items[members[0]]
            try:
                decisions = await self._evaluator.decide(first.state, [items[n].query for n in members], first.snapshot)
            except Exception:  # noqa: BLE001 - isolate: each request answered (or failed) on its own
                for n in members:
                    out[n] = await self._alone(items[n])
                continue
            for n, decision in zip(members, decisions, strict=True):
                out[n] = decision
        return [r for r in out if r is not None]

    async def _alone(self, item: _Pending) -> wire.Decision | BaseException:
        try:
            (decision,) = await self._evaluator.decide(item.state, [item.query], item.snapshot)
        except Exception as exc:  # noqa: BLE001 - handed to that request's caller
            return exc
        return decision

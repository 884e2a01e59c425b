"""Micro-batching: many concurrent ``submit(item)`` calls become one ``flush(items)`` call.

Shared by the policy client (checks → one AuthZEN ``evaluations`` call), and meant for the bus and
the policy service as well, so it knows nothing about what it batches.

When a batch goes out (the three flush triggers):

- **size**: ``max_batch`` items are pending → flush now;
- **idle**: no flush is in flight → flush on the next turn of the event loop. Everything submitted
  in the current turn (``asyncio.gather`` of many checks, or many requests parsed from one read)
  still joins, but a lone call waits for nothing: batching adds no latency at low load;
- **time**: a flush is in flight (the service is busy with our last batch) → wait at most
  ``max_wait`` for more items. Under load batches grow by themselves while the previous one is out.

When the batch in flight answers, the items that queued behind it go out at once — or, with
``linger`` > 0, once the first of them has waited ``linger`` (still at ``max_batch`` items, and never
later than ``max_wait``). Without it a batch holds what arrived during one round trip, so a fast
round trip makes many small calls; where each call costs the receiver far more than each item (the
policy service: ~280 µs a call), holding them a little makes fewer, bigger calls. Idle flushes are
untouched: a lone check still waits for nothing.

Results: ``flush`` returns one entry per item, in order; an entry that is an exception fails only
that item's caller. An exception raised by ``flush`` itself, or a result list of the wrong length,
fails every caller of the batch (fail closed: nobody gets someone else's answer or a made-up one).
A caller that stops waiting (cancelled, timed out) leaves the others untouched.

Deadlines (:meth:`Batcher.enqueue`): an item may carry a deadline (event-loop time); if its result
has not come by then its future fails with :class:`DeadlinePassed` (the batch goes on for the
others). One timer per batch — at the earliest deadline still waiting in it, moved on when it fires —
instead of one per item: a per-item timer (``call_at`` and its cancellation, with the task bookkeeping
of a cancelling deadline) was ~1.5 µs of a micro-batched check's ~12 µs of client CPU
(docs/performance.md, "Stop 20, branch batch3").

The timer is injectable (``call_later``) so tests drive the time trigger without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["BatchSizeError", "Batcher", "DeadlinePassed", "Flush"]

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class _Handle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], _Handle]


class BatchSizeError(RuntimeError):
    """``flush`` answered a different number of results than items it was given."""


class DeadlinePassed(Exception):
    """An item's deadline passed before its batch answered (:meth:`Batcher.enqueue`)."""


class _Due:
    """The deadlines of one group of items (pending, then in flight), watched by one timer."""

    __slots__ = ("at", "deadlines", "futures", "handle")

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []
        self.deadlines: list[float] = []
        self.at = float("inf")  # when the timer fires (inf: no timer)
        self.handle: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any], deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        self.futures.append(future)
        self.deadlines.append(deadline)
        if deadline < self.at:  # the first item, or one with a shorter timeout than those before it
            if self.handle is not None:
                self.handle.cancel()
            self.at = deadline
            self.handle = loop.call_at(deadline, self.expire, loop)

    def expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail every waiting item whose deadline has come; the timer moves to the next one."""
        cutoff = max(loop.time(), self.at)  # a timer may fire a hair early (clock resolution)
        nxt = float("inf")
        for f, d in zip(self.futures, self.deadlines, strict=True):
            if f.done():
                continue
            if d <= cutoff:
                f.set_exception(DeadlinePassed())
            elif d < nxt:
                nxt = d
        self.at = nxt
        self.handle = loop.call_at(nxt, self.expire, loop) if nxt != float("inf") else None

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        linger: float = 0.0,
        call_later: CallLater | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not max_wait >= 0:  # also refuses NaN
            raise ValueError("max_wait must be a number of seconds >= 0")
        if not 0 <= linger <= max_wait:
            raise ValueError("linger must be a number of seconds in 0..max_wait")
        self._linger = linger
        self._first_at = 0.0  # loop time the first pending item came (kept only with a linger)
        self._flush = flush
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._call_later = call_later
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._due: _Due | None = None  # the pending items' deadlines (enqueue), if any has one
        # Pending items are waiting for exactly one scheduled trigger (next turn or timer), or none.
        self._scheduled: _Handle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def in_flight(self) -> int:
        """Batches handed to ``flush`` and not yet answered."""
        return self._in_flight

    @property
    def pending(self) -> int:
        """Items waiting for the next batch."""
        return len(self._items)

    async def submit(self, item: T) -> R:
        return await self.enqueue(item)

    def enqueue(self, item: T, deadline: float | None = None) -> asyncio.Future[R]:
        """:meth:`submit` without a coroutine: the future the caller awaits (cancelling it abandons
        the item, as cancelling ``submit`` does). With ``deadline`` (event-loop time) the future
        fails with :class:`DeadlinePassed` then if its batch has not answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if deadline is not None:
            due = self._due
            if due is None:
                due = self._due = _Due()
            due.watch(future, deadline, loop)
        if len(self._items) >= self._max_batch:
            self._go()
        elif self._scheduled is None:
            if self._in_flight == 0:
                self._scheduled = loop.call_soon(self._go)
            else:
                later = self._call_later or loop.call_later
                self._scheduled = later(self._max_wait, self._go)
                if self._linger:
                    self._first_at = loop.time()
        return future

    def _go(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self._items:
            return
        items, futures, due = self._items, self._futures, self._due
        self._items, self._futures, self._due = [], [], None
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(items, futures, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]], due: _Due | None) -> None:
        try:
            results = await self._flush(items)
            if len(results) != len(items):
                raise BatchSizeError(f"flush answered {len(results)} results for {len(items)} items")
        except BaseException as exc:  # every caller must hear of it, whatever it is
            for f in futures:
                if not f.done():
                    f.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            return
        finally:
            if due is not None:
                due.stop()
            self._in_flight -= 1
            # Items that queued behind this batch now go out at once (we are idle again, or the
            # timer would only have delayed them further) — or at their linger's end.
            if self._items and self._in_flight == 0:
                self._after_flight()
        for f, r in zip(futures, results, strict=True):
            if f.done():
                continue  # the caller stopped waiting
            if isinstance(r, BaseException):
                f.set_exception(r)
            else:
                f.set_result(r)

    def _after_flight(self) -> None:
        if self._linger and self._scheduled is not None and len(self._items) < self._max_batch:
            wait = self._first_at + self._linger - asyncio.get_running_loop().time()
            if wait > 0:
                self._scheduled.cancel()
                later = self._call_later or asyncio.get_running_loop().call_later
                self._scheduled = later(wait, self._go)
                return
        self._go()

    async def aclose(self) -> None:
        """Flush what is pending and wait for every batch in flight."""
        self._go()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

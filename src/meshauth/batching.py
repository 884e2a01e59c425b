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

Results: ``flush`` returns one entry per item, in order; an entry that is an exception fails only
that item's caller. An exception raised by ``flush`` itself, or a result list of the wrong length,
fails every caller of the batch (fail closed: nobody gets someone else's answer or a made-up one).
A caller that stops waiting (cancelled, timed out) leaves the others untouched.

The timer is injectable (``call_later``) so tests drive the time trigger without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["BatchSizeError", "Batcher", "Flush"]

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class _Handle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], _Handle]


class BatchSizeError(RuntimeError):
    """``flush`` answered a different number of results than items it was given."""


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        call_later: CallLater | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not max_wait >= 0:  # also refuses NaN
            raise ValueError("max_wait must be a number of seconds >= 0")
        self._flush = flush
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._call_later = call_later
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self._max_batch:
            self._go()
        elif self._scheduled is None:
            if self._in_flight == 0:
                self._scheduled = loop.call_soon(self._go)
            else:
                later = self._call_later or loop.call_later
                self._scheduled = later(self._max_wait, self._go)
        return await future

    def _go(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(items, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
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
            self._in_flight -= 1
            # Items that queued behind this batch now go out at once (we are idle again, or the
            # timer would only have delayed them further).
            if self._items and self._in_flight == 0:
                self._go()
        for f, r in zip(futures, results, strict=True):
            if f.done():
                continue  # the caller stopped waiting
            if isinstance(r, BaseException):
                f.set_exception(r)
            else:
                f.set_result(r)

    async def aclose(self) -> None:
        """Flush what is pending and wait for every batch in flight."""
        self._go()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

"""Handing what a consumer read to the handler, and sorting out a failure entry by entry.

A read (one ``Work`` per partition) is handed over in one call when it can be (one database
transaction for every partition read together). When the handler raises, the entries are tried one at
a time, in order: those before the failing one are done; the failing one is retried after
``retry_delay``, and after ``max_attempts`` failures it is dead-lettered with the error (so the
partition moves on). ``TransientError`` (the handler's database is away) retries without counting an
attempt. What is done and what is dead is collected in each ``Work``; the consumer acks and
dead-letters it (``entries.settle``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from meshauth.bus.entries import DeadLetter, Delivery, Partition, Work
from meshauth.bus.events import encode

log = logging.getLogger(__name__)


Handler = Callable[[Sequence[Delivery]], Awaitable[None]]


class TransientError(Exception):
    """Raised by a handler whose dependency is unavailable: retry later, without counting an attempt."""


class Handling:
    """Runs ``handler`` over reads of ``stream`` for ``group``; keeps no state but the partitions'."""

    def __init__(self, handler: Handler, *, stream: str, group: str, max_attempts: int, retry_delay: float) -> None:
        self.handler = handler
        self.stream = stream
        self.group = group
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay

    async def handle(self, works: list[Work]) -> None:
        """One handler call for every partition read together (one database transaction, not one per
        partition); a failure there is sorted out partition by partition."""
        together = [w for w in works if len(w.batch) > 1 and not w.part.failures]
        if len(together) > 1:
            try:
                await self.handler([delivery for w in together for _, delivery in w.batch])
            except TransientError as exc:
                log.warning("bus %s/%s: handler unavailable (%s); retrying", self.stream, self.group, exc)
                for w in together:
                    self._retry_later(w.part)
                    w.batch = []
            except Exception as exc:  # noqa: BLE001 - sorted out below, partition by partition
                log.debug("bus %s/%s: batch failed (%r); per partition now", self.stream, self.group, exc)
            else:
                for w in together:
                    w.done.extend(entry_id for entry_id, _ in w.batch)
                    w.batch = []
        for w in works:
            await self._handle_partition(w)

    async def _handle_partition(self, w: Work) -> None:
        if not w.batch:
            return
        if w.part.failures or len(w.batch) == 1:
            # Retrying after a failure: one at a time straight away (the batch would fail again).
            await self._one_by_one(w.stream, w.part, w.batch, w.done, w.dead)
            return
        try:
            await self.handler([delivery for _, delivery in w.batch])
            w.done.extend(entry_id for entry_id, _ in w.batch)
        except TransientError as exc:
            log.warning("bus %s/%s: handler unavailable (%s); retrying", w.stream, self.group, exc)
            self._retry_later(w.part)
        except Exception:  # noqa: BLE001 - any handler failure is retried one entry at a time
            await self._one_by_one(w.stream, w.part, w.batch, w.done, w.dead)

    async def _one_by_one(
        self,
        stream: str,
        part: Partition,
        batch: list[tuple[bytes, Delivery]],
        done: list[bytes],
        dead: list[DeadLetter],
    ) -> None:
        for entry_id, delivery in batch:
            try:
                await self.handler([delivery])
            except TransientError:
                self._retry_later(part)
                return
            except Exception as exc:  # noqa: BLE001 - counted, then dead-lettered with its text
                attempts = part.failures.get(entry_id, 0) + 1
                part.failures[entry_id] = attempts
                log.warning("bus %s/%s: entry %s failed (attempt %d): %r", stream, self.group, entry_id, attempts, exc)
                if attempts < self.max_attempts:
                    self._retry_later(part)
                    return
                part.failures.pop(entry_id, None)
                dead.append((entry_id, encode(delivery.event), f"{type(exc).__name__}: {exc}", attempts))
                continue
            part.failures.pop(entry_id, None)
            done.append(entry_id)

    def _retry_later(self, part: Partition) -> None:
        part.backlog = part.retry = True
        part.retry_at = time.monotonic() + self.retry_delay

"""Handing what a consumer read to the handler, and sorting out a failure event by event.

A read (one ``Work`` per partition) is handed over in one call when it can be (one database
transaction for every partition read together). When the handler raises, the events are tried one at
a time, in order (a batch entry's events each on their own): those before the failing one are done;
the failing one is retried after ``retry_delay``, and after ``max_attempts`` failures it is
dead-lettered alone with the error (so the partition moves on). An entry is acked once all its events
are handled or dead-lettered. ``TransientError`` (the handler's database is away) retries without counting an
attempt. What is done and what is dead is collected in each ``Work``; the consumer acks and
dead-letters it (``entries.settle``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from meshauth.bus.entries import Delivery, Partition, Work
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
        together = [w for w in works if len(w.batch) > 1 and not w.part.failures and not w.part.progress]
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
                    _all_done(w)
        for w in works:
            await self._handle_partition(w)

    async def _handle_partition(self, w: Work) -> None:
        if not w.batch:
            return
        if w.part.failures or w.part.progress or len(w.batch) == 1:
            # Retrying after a failure: one at a time straight away (the batch would fail again).
            await self._one_by_one(w)
            return
        try:
            await self.handler([delivery for _, delivery in w.batch])
            _all_done(w)
        except TransientError as exc:
            log.warning("bus %s/%s: handler unavailable (%s); retrying", w.stream, self.group, exc)
            self._retry_later(w.part)
        except Exception:  # noqa: BLE001 - any handler failure is retried one event at a time
            await self._one_by_one(w)

    async def _one_by_one(self, w: Work) -> None:
        """Event by event, in order. A batch entry is acknowledged once each of its events is handled
        or dead-lettered (its dead letters are written then); a retry resumes after its settled events."""
        part = w.part
        for i, (entry_id, delivery) in enumerate(w.batch):
            if delivery.place < part.progress.get(entry_id, 0):
                continue  # settled before this retry of its entry
            key = (entry_id, delivery.place)
            try:
                await self.handler([delivery])
            except TransientError:
                self._retry_later(part)
                return
            except Exception as exc:  # noqa: BLE001 - counted, then dead-lettered with its text
                attempts = part.failures.get(key, 0) + 1
                part.failures[key] = attempts
                log.warning(
                    "bus %s/%s: entry %s event %d failed (attempt %d): %r",
                    w.stream, self.group, entry_id, delivery.place, attempts, exc,
                )  # fmt: skip
                if attempts < self.max_attempts:
                    self._retry_later(part)
                    return
                letter = (entry_id, encode(delivery.event), f"{type(exc).__name__}: {exc}", attempts)
                part.letters.setdefault(entry_id, []).append(letter)
            else:
                w.handled += 1
            part.failures.pop(key, None)
            part.progress[entry_id] = delivery.place + 1
            if i + 1 == len(w.batch) or w.batch[i + 1][0] != entry_id:  # the entry's last event
                part.progress.pop(entry_id, None)
                letters = part.letters.pop(entry_id, [])
                w.dead.extend(letters)
                if not letters:
                    w.done.append(entry_id)

    def _retry_later(self, part: Partition) -> None:
        part.backlog = part.retry = True
        part.retry_at = time.monotonic() + self.retry_delay


def _all_done(w: Work) -> None:
    w.done.extend(dict.fromkeys(entry_id for entry_id, _ in w.batch))
    w.handled += len(w.batch)
    w.batch = []

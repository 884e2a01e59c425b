"""What a consumer reads and writes back: stream entries decoded into deliveries, one partition's
share of a read, and the acks and dead letters that settle it.

Kept apart from ``consumer`` (which decides what to read and when) so each stays small.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from meshauth.bus.events import MAX_PAYLOAD_BYTES, AuditEvent, MalformedEvent, decode_batch
from meshauth.redis_client import RedisConn

Entry = tuple[bytes, dict[bytes, bytes] | None]
DeadLetter = tuple[bytes, bytes, str, int]  # entry id, payload, error, attempts
DEAD_MAXLEN = 100_000  # dead-letter stream, approximate
ERROR_CHARS = 2000


class Delivery(NamedTuple):
    """One event as a handler gets it: its stream entry id (ordered within a partition), partition, and
    place in the entry (a batch entry holds a flush's events of one partition, in publish order)."""

    entry_id: str
    partition: int
    event: AuditEvent
    place: int = 0


@dataclass
class Partition:
    """A leased partition's state in the consumer (see ``consumer``'s docstring for the three states);
    ``failures`` counts handler failures per event (entry id, place) for the dead-letter decision;
    ``progress`` and ``letters``: of a batch entry retried event by event, how many of its events are
    settled and the dead letters held until the whole entry is (then it is acknowledged)."""

    recovering: bool = True
    backlog: bool = False
    careful: bool = False  # a holder died with this backlog: re-read and settle it one entry at a time
    retry: bool = False  # the backlog is this holder's own retry (a failure, the database away): not a delivery
    retry_at: float = 0.0
    failures: dict[tuple[bytes, int], int] = field(default_factory=dict)
    progress: dict[bytes, int] = field(default_factory=dict)
    letters: dict[bytes, list[DeadLetter]] = field(default_factory=dict)

    def forget(self, settled: Iterable[bytes]) -> None:
        """Drop the retry state of entries that are settled — acked, dead-lettered, or found gone from
        the stream (trimmed or deleted while pending) — so that it does not outlive them."""
        if not (self.failures or self.progress or self.letters):
            return
        gone = set(settled)
        for entry_id in gone:
            self.progress.pop(entry_id, None)
            self.letters.pop(entry_id, None)
        if self.failures:
            self.failures = {key: n for key, n in self.failures.items() if key[0] not in gone}


@dataclass
class Work:
    """One partition's share of a read: what to hand over, what is done, what goes to dead letters."""

    stream: str
    n: int
    part: Partition
    batch: list[tuple[bytes, Delivery]]
    done: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    handled: int = 0  # events handled (``done`` counts entries)
    gone: list[bytes] = field(default_factory=list)  # pending entries found trimmed or deleted: lost


def decode_entries(
    stream: str, n: int, part: Partition, entries: list[Entry], group: str = "", groups: tuple[str, ...] = ()
) -> Work:
    """``entries`` as deliveries for ``group``; an entry for another group alone (a replayed dead
    letter, field ``g``: ``dead_letters``) is acknowledged unread — unless that group is not one of
    ``groups`` (the stream's): then no group would handle it, and it is dead-lettered."""
    w = Work(stream, n, part, [])
    mine = group.encode()
    declared = {g.encode() for g in groups}
    for entry_id, fields in entries:
        if fields is None:  # deleted or trimmed while pending: nothing left to handle
            w.gone.append(entry_id)
            letters = part.letters.pop(entry_id, None)  # but what a retry set aside is still written
            if letters:
                w.dead.extend(letters)
            else:
                w.done.append(entry_id)
            continue
        only = fields.get(b"g")
        payload = fields.get(b"d")
        if only is not None and only != mine:
            if not declared or only in declared:
                w.done.append(entry_id)
            else:
                error = f"for group {text(only)!r}, which does not read this stream: no group would handle it"
                w.dead.append((entry_id, _kept(payload, fields), error, 0))
            continue
        try:
            if payload is None:
                raise MalformedEvent(f"no 'd' field (fields: {_names(fields)})")
            events = decode_batch(payload)
        except MalformedEvent as exc:
            w.dead.append((entry_id, _kept(payload, fields), str(exc), 0))
            continue
        if not events:
            w.done.append(entry_id)
            continue
        sid = entry_id.decode()
        w.batch.extend((entry_id, Delivery(sid, n, event, i)) for i, event in enumerate(events))
    return w


def _names(fields: dict[bytes, bytes], most: int = 8) -> str:
    """A few of an entry's field names, cut: a hostile entry's thousands of long names made the dead
    letter's reason (and the log line) as large as the entry."""
    names = sorted(k.decode("latin-1")[:64] for k in list(fields)[: most + 1])[:most]
    more = len(fields) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _kept(payload: bytes | None, fields: dict[bytes, bytes]) -> bytes:
    """What a malformed entry's dead letter keeps: its payload up to what a producer could write (more
    is no event: it cannot be replayed), or without one a sample of its fields. Whole, a neighbour's
    512 MiB entry was copied into the dead-letter stream, and ``dead-letters list`` read 100 at a time."""
    if payload is not None:
        return payload[:MAX_PAYLOAD_BYTES]
    return repr({k[:64]: v[:256] for k, v in itertools.islice(fields.items(), 32)}).encode()


async def settle(redis: RedisConn, works: list[Work], dead_stream: str, group: str) -> bool:
    """Dead letters and acks of a read in one MULTI: an entry is either still pending or dead-lettered.
    False when there was nothing to write."""
    if not any(w.done or w.dead for w in works):
        return False
    async with redis.pipeline(transaction=True) as pipe:
        for w in works:
            for entry_id, payload, error, attempts in w.dead:
                fields = {
                    "stream": w.stream,
                    "id": entry_id,
                    "group": group,
                    "error": error[:ERROR_CHARS],
                    "attempts": attempts,
                    "d": payload,
                }
                pipe.xadd(dead_stream, fields, maxlen=DEAD_MAXLEN, approximate=True)  # type: ignore[arg-type]
            if w.done or w.dead:
                pipe.xack(w.stream, group, *w.done, *(d[0] for d in w.dead))
        await pipe.execute()
    return True


async def oldest_pending(redis: RedisConn, stream: str, group: str, consumer: str) -> tuple[bytes, int] | None:
    """``consumer``'s oldest pending entry on ``stream`` and how often Redis delivered it, or None."""
    rows = await redis.xpending_range(stream, group, min="-", max="+", count=1, consumername=consumer)
    return (cast(bytes, rows[0]["message_id"]), cast(int, rows[0]["times_delivered"])) if rows else None


async def crash_letter(redis: RedisConn, stream: str, entry_id: bytes, times: int) -> DeadLetter:
    """The dead letter of an entry its holders kept dying with (its payload read back from the stream)."""
    got = cast(list[Entry], await redis.xrange(stream, entry_id, entry_id))
    fields = got[0][1] if got else None
    payload = fields.get(b"d", b"") if fields else b""
    error = f"delivered {times} times, never acknowledged: its holders died handling it (a handler exiting?)"
    return (entry_id, payload, error, times)


async def own_pending(redis: RedisConn, stream: str, group: str, consumer: str, count: int) -> list[Entry]:
    """Up to ``count`` of ``consumer``'s pending entries, read back with XRANGE: unlike XREADGROUP from 0,
    it does not count a delivery, so retries do not pass for holders that died (``Consumer._check_crashes``)."""
    rows = await redis.xpending_range(stream, group, min="-", max="+", count=count, consumername=consumer)
    if not rows:
        return []
    ids = [cast(bytes, row["message_id"]) for row in rows]
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id in ids:
            pipe.xrange(stream, entry_id, entry_id)
        found = cast(list[list[Entry]], await pipe.execute())
    return [(entry_id, got[0][1] if got else None) for entry_id, got in zip(ids, found, strict=True)]


def text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value  # names: any client's bytes


async def take_released(redis: RedisConn, stream: str, released: str, group: str, consumer: str) -> None:
    """Claim at once (XCLAIM, idle 0, JUSTID: a handover is not a delivery) what consumers that gave
    this partition back cleanly (the set ``released``) left pending; they no longer read it."""
    for raw in cast(set[bytes], await redis.smembers(released)):
        other = text(raw)
        if other == consumer:
            continue
        while rows := await redis.xpending_range(stream, group, "-", "+", 1000, consumername=other):
            ids: list[Any] = [row["message_id"] for row in rows]
            await redis.xclaim(stream, group, consumer, 0, ids, justid=True)

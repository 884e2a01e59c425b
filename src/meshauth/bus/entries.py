"""What a consumer reads and writes back: stream entries decoded into deliveries, one partition's
share of a read, and the acks and dead letters that settle it.

Kept apart from ``consumer`` (which decides what to read and when) so each stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, cast

from meshauth.bus.events import AuditEvent, MalformedEvent, decode_batch
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


def decode_entries(stream: str, n: int, part: Partition, entries: list[Entry]) -> Work:
    w = Work(stream, n, part, [])
    for entry_id, fields in entries:
        if fields is None:  # deleted or trimmed while pending: nothing left to handle
            w.done.append(entry_id)
            continue
        payload = fields.get(b"d")
        try:
            if payload is None:
                raise MalformedEvent(f"no 'd' field (fields: {sorted(k.decode('latin-1') for k in fields)})")
            events = decode_batch(payload)
        except MalformedEvent as exc:
            w.dead.append((entry_id, payload if payload is not None else repr(fields).encode(), str(exc), 0))
            continue
        if not events:
            w.done.append(entry_id)
            continue
        sid = entry_id.decode()
        w.batch.extend((entry_id, Delivery(sid, n, event, i)) for i, event in enumerate(events))
    return w


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

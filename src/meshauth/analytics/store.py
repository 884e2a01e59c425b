"""Writing ``analytics_minutes``: decision events folded into per-minute rows, exactly once.

Rows are per stream partition, and a partition is handled by one consumer at a time and in entry-id
order; each row remembers the newest event it counted (``last_entry``: entry id and place in a batch
entry), so an entry delivered again
after a failover, or a batch retried after a failure, is skipped rather than counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.analytics.histogram import bucket
from meshauth.bus.entries import Delivery
from meshauth.bus.handling import TransientError
from meshauth.db.tables import analytics_minutes

DECISION_TYPES = ("gate.decision", "policy.decision")
Key = tuple[int, str, str, int]  # minute, store, action, partition


def entry_order(position: str) -> tuple[int, int, int]:
    """``<ms>-<seq>`` (a stream entry id) or ``<ms>-<seq>.<place>`` (an event's place in a batch
    entry) as a sortable triple; an entry id alone is its first event."""
    entry_id, _, place = position.partition(".")
    ms, _, seq = entry_id.partition("-")
    if not ms.isdigit():
        return (0, 0, 0)
    return (int(ms), int(seq) if seq.isdigit() else 0, int(place) if place.isdigit() else 0)


def _text(value: str, width: int) -> str:
    """Cut to the column's width; NUL marked, as ``audit.store`` does: PostgreSQL text cannot hold it
    (an AuthZEN action name is the client's string), and a fold that fails is retried, then dead-lettered."""
    return value[:width].replace("\x00", "\ufffd")


@dataclass
class _Row:
    requests: int = 0
    allows: int = 0
    denies: int = 0
    cache_hits: int = 0
    cache_lookups: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    last_entry: str = ""


class AnalyticsWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.counted = 0

    async def close(self) -> None:
        """Nothing held between batches (the pool's connections go with the engine)."""

    async def __call__(self, deliveries: Sequence[Delivery]) -> None:
        by_key: dict[Key, list[Delivery]] = {}
        for d in deliveries:
            e = d.event
            if e.type in DECISION_TYPES:
                key = (int(e.time) // 60 * 60, _text(e.store, 64), _text(e.action, 256), d.partition)
                by_key.setdefault(key, []).append(d)
        if not by_key:
            return
        try:
            async with self._engine.begin() as conn:
                for key, items in by_key.items():
                    await self._fold(conn, key, items)
        except (OperationalError, InterfaceError) as exc:
            raise TransientError(f"analytics_minutes unavailable: {type(exc.orig).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise TransientError("analytics_minutes connection lost") from exc
            raise
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"analytics_minutes unavailable: {exc}") from exc

    async def _fold(self, conn: AsyncConnection, key: Key, items: list[Delivery]) -> None:
        t = analytics_minutes.c
        where = sa.and_(t.minute == key[0], t.store == key[1], t.action == key[2], t.partition == key[3])
        found = (await conn.execute(sa.select(analytics_minutes).where(where))).first()
        row = _Row()
        if found is not None:
            m = found._mapping
            row = _Row(
                m["requests"], m["allows"], m["denies"], m["cache_hits"], m["cache_lookups"],
                {int(k): int(v) for k, v in dict(m["latency"]).items()}, m["last_entry"],
            )  # fmt: skip
        last = entry_order(row.last_entry) if row.last_entry else (-1, -1, -1)
        added = 0
        for d in items:
            position = f"{d.entry_id}.{d.place}"
            if entry_order(position) <= last:
                continue  # counted before this delivery
            e = d.event
            row.requests += 1
            row.allows += e.decision == "allow"
            row.denies += e.decision == "deny"
            if e.cache:
                row.cache_lookups += 1
                row.cache_hits += e.cache == "hit"
            b = bucket(e.latency_us)
            row.latency[b] = row.latency.get(b, 0) + 1
            row.last_entry = position
            added += 1
        if not added:
            return
        values = {
            "requests": row.requests,
            "allows": row.allows,
            "denies": row.denies,
            "cache_hits": row.cache_hits,
            "cache_lookups": row.cache_lookups,
            "latency": {str(k): v for k, v in row.latency.items()},
            "last_entry": row.last_entry,
        }
        if found is None:
            keys = {"minute": key[0], "store": key[1], "action": key[2], "partition": key[3]}
            await conn.execute(analytics_minutes.insert().values(**keys, **values))
        else:
            await conn.execute(analytics_minutes.update().where(where).values(**values))
        self.counted += added

"""Reading ``analytics_minutes`` for ``GET /admin/analytics``: the partitions' rows summed per minute,
store and action, newest minute first."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.analytics.histogram import quantile_us
from meshauth.audit.query import BadFilter, parse_time, query_values, rfc3339
from meshauth.db.tables import analytics_minutes

FIELDS = ("since", "until", "store", "action")
DEFAULT_WINDOW = 3600  # seconds: the last hour when ``since`` is not given
MAX_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    since: int
    until: int | None
    store: str | None
    action: str | None


def parse_query(pairs: list[tuple[str, str]]) -> AnalyticsQuery:
    seen = query_values(pairs, FIELDS)
    for name, most in (("store", 64), ("action", 256)):
        if name in seen and not 0 < len(seen[name]) <= most:
            raise BadFilter(name, f"must be 1 to {most} characters")
    since_us = parse_time(seen, "since")
    until_us = parse_time(seen, "until")
    return AnalyticsQuery(
        since=int(time.time()) - DEFAULT_WINDOW if since_us is None else since_us // 1_000_000,
        until=None if until_us is None else until_us // 1_000_000,
        store=seen.get("store"),
        action=seen.get("action"),
    )


@dataclass(frozen=True, slots=True)
class Minutes:
    """The answer: ``minutes`` newest first; ``truncated`` when older minutes matched but were left out
    (the row limit), so a caller knows to narrow ``since``/``until``/``store``/``action``."""

    minutes: list[dict[str, Any]]
    truncated: bool


async def read(engine: AsyncEngine, q: AnalyticsQuery) -> Minutes:
    """At most ``MAX_ROWS`` rows, newest minute first, never part of a minute: a minute is one row per
    partition, store and action, so the limit could fall inside the oldest minute read and its totals
    come out too low without a sign; that minute is left out and the answer says ``truncated``."""
    t = analytics_minutes.c
    stmt = sa.select(analytics_minutes).where(t.minute >= q.since // 60 * 60)
    if q.until is not None:
        stmt = stmt.where(t.minute < q.until)
    if q.store is not None:
        stmt = stmt.where(t.store == q.store)
    if q.action is not None:
        stmt = stmt.where(t.action == q.action)
    stmt = stmt.order_by(t.minute.desc()).limit(MAX_ROWS + 1)
    async with engine.connect() as conn:
        rows = list(await conn.execute(stmt))
    truncated = len(rows) > MAX_ROWS
    if truncated:
        cut = rows[MAX_ROWS - 1].minute
        split = rows[MAX_ROWS].minute == cut  # the row left out belongs to the last minute kept
        rows = [r for r in rows[:MAX_ROWS] if not (split and r.minute == cut)]
    merged: dict[tuple[int, str, str], dict[str, Any]] = {}
    for r in rows:
        m = r._mapping
        agg = merged.setdefault(
            (m["minute"], m["store"], m["action"]),
            {"requests": 0, "allows": 0, "denies": 0, "cache_hits": 0, "cache_lookups": 0, "latency": {}},
        )
        for name in ("requests", "allows", "denies", "cache_hits", "cache_lookups"):
            agg[name] += m[name]
        for k, v in dict(m["latency"]).items():
            agg["latency"][int(k)] = agg["latency"].get(int(k), 0) + int(v)
    out = []
    for (minute, store, action), agg in sorted(merged.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2])):
        p95 = quantile_us(agg["latency"], 0.95)
        out.append(
            {
                "minute": rfc3339(minute * 1_000_000),
                "store": store,
                "action": action,
                "requests": agg["requests"],
                "allows": agg["allows"],
                "denies": agg["denies"],
                "p95_latency_ms": None if p95 is None else round(p95 / 1000, 3),
                "cache_hit_rate": round(agg["cache_hits"] / agg["cache_lookups"], 4) if agg["cache_lookups"] else None,
            }
        )
    return Minutes(out, truncated)

"""GET /admin/analytics's reading: minutes summed over partitions, and a cut that never halves a minute."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meshauth.analytics import query
from meshauth.db import create_engine
from meshauth.db.tables import analytics_minutes


def _row(minute: int, partition: int, requests: int) -> dict[str, object]:
    return {
        "minute": minute, "store": "s", "action": "read", "partition": partition, "requests": requests,
        "allows": requests, "denies": 0, "cache_hits": 0, "cache_lookups": 0, "latency": {}, "last_entry": "x",
    }  # fmt: skip


async def test_a_minute_the_row_limit_would_cut_is_left_out_and_the_answer_says_so(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each minute is several rows (one per partition); with the newest rows taken up to the limit, the
    oldest minute could be read in part and its totals come out too low, without a sign."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(analytics_minutes), [_row(60 * m, p, 10) for m in range(1, 4) for p in range(4)]
            )
        q = query.AnalyticsQuery(since=0, until=None, store=None, action=None)
        whole = await query.read(engine, q)
        assert [m["requests"] for m in whole.minutes] == [40, 40, 40] and not whole.truncated
        monkeypatch.setattr(query, "MAX_ROWS", 10)  # minutes 3 and 2 whole, minute 1 in part
        cut = await query.read(engine, q)
        assert [(m["minute"], m["requests"]) for m in cut.minutes] == [
            ("1970-01-01T00:03:00.000000Z", 40),
            ("1970-01-01T00:02:00.000000Z", 40),
        ]
        assert cut.truncated
    finally:
        await engine.dispose()

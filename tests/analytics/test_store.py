import sqlalchemy as sa

from meshauth.analytics.histogram import bucket, quantile_us, upper_us
from meshauth.analytics.store import AnalyticsWriter
from meshauth.bus.entries import Delivery
from meshauth.bus.events import audit
from meshauth.db import create_engine
from meshauth.db.tables import analytics_minutes


def _decisions(start: int, n: int, partition: int = 0) -> list[Delivery]:
    return [
        Delivery(
            f"1000-{i}",
            partition,
            audit(
                "policy.decision",
                store="s",
                action="view",
                decision="allow" if i % 4 else "deny",
                latency_us=100 + i,
                cache="hit" if i % 2 else "miss",
            ),
        )
        for i in range(start, start + n)
    ]


async def test_redelivered_entries_are_not_counted_twice(db_url: str) -> None:
    """A batch delivered again (after a failover or a failed ack) changes nothing; new entries add."""
    engine = create_engine(db_url)
    writer = AnalyticsWriter(engine)
    await writer(_decisions(0, 40))
    await writer(_decisions(20, 40))  # 20..39 again, 40..59 new
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(sa.select(analytics_minutes))]
    await engine.dispose()
    assert sum(r["requests"] for r in rows) == 60
    assert sum(r["denies"] for r in rows) == 15
    assert sum(r["cache_hits"] for r in rows) == 30
    assert sum(r["cache_lookups"] for r in rows) == 60


async def test_non_decision_events_are_ignored(db_url: str) -> None:
    engine = create_engine(db_url)
    await AnalyticsWriter(engine)([Delivery("1-0", 0, audit("token.issued", subject="x"))])
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(analytics_minutes))).scalar_one() == 0
    await engine.dispose()


def test_p95_comes_from_the_histogram_within_a_bucket() -> None:
    counts: dict[int, int] = {}
    for us in range(1, 1001):
        counts[bucket(us)] = counts.get(bucket(us), 0) + 1
    p95 = quantile_us(counts, 0.95)
    assert p95 is not None
    assert 950 <= p95 <= 950 * 1.2
    assert quantile_us({}, 0.95) is None
    assert upper_us(bucket(10**12)) > 3600e6 * 0.9


async def test_a_store_or_action_holding_nul_is_counted(db_url: str) -> None:
    """A decision event whose store or action holds NUL (an AuthZEN action name is a client's JSON
    string; any entry a neighbour writes). PostgreSQL's text refuses NUL: the fold failed, five attempts
    a retry delay apart (a second at the defaults, the partition waiting), then the decision was
    dead-lettered — the audit group kept it, its writer marks the character. Marked here as there."""
    engine = create_engine(db_url)
    writer = AnalyticsWriter(engine)
    event = audit("policy.decision", store="s\x00", action="read\x00", decision="allow", latency_us=5)
    await writer([Delivery("1-0", 0, event)])
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(sa.select(analytics_minutes))]
    await engine.dispose()
    assert [(r["store"], r["action"], r["requests"]) for r in rows] == [("s\ufffd", "read\ufffd", 1)]

"""Entities in SQL: bulk writes."""

from __future__ import annotations

import time

from meshauth.db import create_engine
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_loader import EntityLoader
from tests.policy.conftest import entity, seed_entities


async def test_bulk_upsert_is_batched(db_url: str) -> None:
    """20,000 entities load in one transaction in a few seconds (100,000 in < 30 s: docs/performance.md)."""
    items = [entity(f"User:u{n}", {"n": n}, parents=(f"Group:g{n % 50}",)) for n in range(20_000)]
    start = time.perf_counter()
    await seed_entities(db_url, items)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    engine = create_engine(db_url)
    loader = EntityLoader(engine, EntityCache(max_entries=10), ref_depth=0, max_depth=1)
    found = await loader.load("s", [("User", "u19999")])
    await engine.dispose()
    assert b'"n":19999' in found[("User", "u19999")].json

"""Redis stopped and restarted while the gate is under load: the gate keeps answering, the audit
events published meanwhile are spooled and arrive after recovery — published == stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from meshauth.audit.store import AuditWriter
from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.streams import AUDIT
from meshauth.db.tables import audit_log
from tests.auth.conftest import Harness, make_settings, start_harness
from tests.bus.helpers import restartable_valkey, until

FAST = ConsumerConfig(block=0.05, min_idle=0.5, lease_ttl=1.0, retry_delay=0.01)
CONCURRENCY = 20


async def _load(h: Harness, token: str, n: int) -> list[int]:
    async def one(_: int) -> int:
        return (await h.gate(token)).status_code

    statuses: list[int] = []
    for start in range(0, n, CONCURRENCY):
        statuses += await asyncio.gather(*(one(i) for i in range(start, min(n, start + CONCURRENCY))))
    return statuses


async def test_redis_restart_under_gate_load_loses_no_audit_event(
    db_url: str, valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    server = restartable_valkey(valkey_server_factory, tmp_path / "valkey")
    async for h in start_harness(make_settings(db_url, server.connection_url, tmp_path)):
        await _scenario(h, server)


async def _scenario(h: Harness, server: Any) -> None:
    await h.add_client()
    token = (await h.token())["access_token"]
    engine = h.app.service.engine
    writer = AuditWriter(engine)
    consumer = Consumer(server.connection_url, AUDIT, "audit", writer, FAST)
    consumer.start()
    bus = h.app.service.bus
    assert bus is not None

    async def stored() -> int:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.type == "gate.decision")
            return int((await conn.execute(query)).scalar_one())

    try:
        statuses = await _load(h, token, 200)
        server.stop()
        statuses += await _load(h, token, 400)  # Redis down: answered from the warm path, events spooled
        await until(lambda: bus.spooled > 0, what="events spooled while Redis is down")
        server.start()
        statuses += await _load(h, token, 200)
        await bus.flushed(within=60)
        await until(lambda: _equals(stored(), 800), within=60, what="all 800 gate decisions in audit_log")
    finally:
        await consumer.stop()
        await writer.close()
    assert statuses == [200] * 800
    assert bus.dropped == 0
    assert await stored() == 800  # published == stored, each once


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)

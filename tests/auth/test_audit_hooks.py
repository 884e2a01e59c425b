"""The auth service's audit hooks: one event per site, never in the request's way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from meshauth.bus.streams import AUDIT, StreamNames
from tests.auth.conftest import Harness, make_settings, start_harness
from tests.bus.helpers import read_all, until


async def _events(redis: Redis) -> list[Any]:
    return [event for _, _, event in await read_all(redis, StreamNames("meshauth:", AUDIT, 4).all())]


async def test_each_gate_decision_is_one_event(auth: Harness, redis: Redis) -> None:
    await auth.add_client()
    token = (await auth.token())["access_token"]
    for _ in range(3):
        assert (await auth.gate(token)).status_code == 200
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    gate = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert len(gate) == 3
    assert {(e.subject, e.client_id, e.decision, e.action) for e in gate} == {("svc", "svc", "allow", "http")}


async def test_a_huge_path_is_cut_not_refused(auth: Harness, redis: Redis) -> None:
    """The path is the caller's: cut to a size that keeps the event under the bus's limit."""
    r = await auth.http.get("/ext_authz/" + "p" * 60_000)
    assert r.status_code == 401
    bus = auth.app.service.bus
    assert bus is not None
    await bus.flushed()
    (event,) = [e for e in await _events(redis) if e.type == "gate.decision"]
    assert len(event.resource) == 1024


async def test_auditing_off_publishes_nothing(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path, audit_enabled=False)):
        assert h.app.service.bus is None
        await h.add_client()
        token = (await h.token())["access_token"]
        assert (await h.gate(token)).status_code == 200
    assert await _events(redis) == []


async def test_bus_full_drops_events_never_requests(
    sqlite_url: str, valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Redis gone, a tiny buffer and spool: the gate answers every request; the drops are counted."""
    server = valkey_server_factory()
    url = server.connection_url
    settings = make_settings(sqlite_url, url, tmp_path, bus_buffer_events=5, bus_spool_max_bytes=1)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token())["access_token"]
        assert (await h.gate(token)).status_code == 200
        server.stop()
        for _ in range(200):
            assert (await h.gate(token)).status_code == 200
        producer = h.app.service.bus
        assert producer is not None
        await until(lambda: producer.dropped > 0, what="drops counted")  # noqa: B023 - awaited here
        metrics = (await h.http.get("/metrics")).text
        assert 'meshauth_bus_dropped_total{reason="buffer_full",stream="audit"}' in metrics

"""The client's Prometheus metrics move with what happens (read back through the registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from meshauth.client import BreakerConfig, Check, PolicyClient, Response, TransportError
from tests.client.mock import MockTransport

DOC = {"type": "Doc", "id": "d"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_cache_batch_and_singleflight_are_counted() -> None:
    """L1 hits/misses, batch sizes and single-flight joins are exported."""
    before = {
        "hit": sample("meshauth_client_cache_total", level="l1", result="hit"),
        "joins": sample("meshauth_client_singleflight_joins_total"),
        "batches": sample("meshauth_client_batch_size_count"),
        "checks": sample("meshauth_client_batch_size_sum"),
        "calls": sample("meshauth_client_call_seconds_count", endpoint="evaluations", outcome="ok"),
    }
    async with PolicyClient(["http://pdp"], transport=MockTransport()) as c:
        await c.check_many([Check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(4)] * 2)
        await c.check({"type": "User", "id": "u0"}, "view", DOC)
    assert sample("meshauth_client_cache_total", level="l1", result="hit") - before["hit"] == 1
    assert sample("meshauth_client_singleflight_joins_total") - before["joins"] == 4
    assert sample("meshauth_client_batch_size_count") - before["batches"] == 1
    assert sample("meshauth_client_batch_size_sum") - before["checks"] == 4
    assert sample("meshauth_client_call_seconds_count", endpoint="evaluations", outcome="ok") - before["calls"] == 1


async def test_breaker_and_fallbacks_are_counted() -> None:
    """Breaker transitions, its state gauge and deny fallbacks are exported."""

    async def down(url: str, doc: dict[str, Any]) -> Response:
        raise TransportError("down")

    opened = sample("meshauth_client_breaker_transitions_total", store="metrics-store", to="open")
    denies = sample("meshauth_client_fallbacks_total", kind="deny")
    cfg = BreakerConfig(min_calls=2)
    async with PolicyClient(["http://pdp"], store="metrics-store", transport=MockTransport(down), breaker=cfg) as c:
        for i in range(3):
            await c.check({"type": "User", "id": f"u{i}"}, "view", DOC)
    assert sample("meshauth_client_breaker_transitions_total", store="metrics-store", to="open") - opened == 1
    assert sample("meshauth_client_breaker_state", store="metrics-store") == 2
    assert sample("meshauth_client_fallbacks_total", kind="deny") - denies == 3

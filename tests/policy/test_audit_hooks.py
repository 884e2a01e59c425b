"""The policy service's audit events: decisions, uploads and activations, on the audit stream."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from redis.asyncio import Redis
from starlette.applications import Starlette

from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.policy.api import PolicyApi
from meshauth.policy.decision_front import DecisionFront
from tests.bus.helpers import read_all
from tests.policy.conftest import ADMIN, ask, push, running, settings_for

POLICY = 'permit(principal == User::"alice", action == Action::"view", resource);'


async def _events(redis: Redis) -> list[object]:
    return [event for _, _, event in await read_all(redis, StreamNames("meshauth:", AUDIT, 4).all())]


async def test_decisions_uploads_and_activations_are_published(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running(settings_for(sqlite_url, tmp_path, redis_url=valkey_url)) as (app, client):
        first = await push(client, POLICY)
        await push(client, POLICY, activate=False)
        r = await client.post(f"/admin/stores/default/policies/{first['version']}/activate", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert (await client.post("/access/v1/evaluation", json=ask("User:alice", "view", "Doc:a"))).json()["decision"]
        batch = {"evaluations": [ask("User:bob", "view", "Doc:a"), ask("User:alice", "view", "Doc:b")]}
        assert (await client.post("/access/v1/evaluations", json=batch)).status_code == 200
        producer = _api(app).audit.producer
        assert producer is not None
        await producer.flushed()
    events = await _events(redis)
    by_type: dict[str, list[object]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e)  # type: ignore[attr-defined]
    assert len(by_type["policy.uploaded"]) == 2
    assert len(by_type["policy.activated"]) == 2  # the first upload activated, then the explicit one
    decisions = sorted(
        (e.subject, e.subject_type, e.action, e.store, e.decision, e.resource)  # type: ignore[attr-defined]
        for e in by_type["policy.decision"]
    )
    assert decisions == [
        ("alice", "User", "view", "default", "allow", "Doc:a"),
        ("alice", "User", "view", "default", "allow", "Doc:b"),
        ("bob", "User", "view", "default", "deny", "Doc:a"),
    ]


async def test_without_redis_the_policy_service_publishes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    async with running(settings_for(sqlite_url, tmp_path)) as (app, client):
        assert _api(app).audit.producer is None
        await push(client, POLICY)
        assert (await client.post("/access/v1/evaluation", json=ask("User:alice", "view", "Doc:a"))).status_code == 200


def _api(front: DecisionFront) -> PolicyApi:
    """The policy API behind the decision front (its inner app is the Starlette app)."""
    api = cast(Starlette, front.app).state.api
    assert isinstance(api, PolicyApi)
    return api

"""The auth service, the bus and the policy client's L2 through a real Sentinel and a real Cluster.

Each test runs on both (``ha``). On the cluster every key meshauth wrote must carry the prefix's hash
tag — a key outside it would be a multi-key command waiting to fail with CROSSSLOT — so the tests end
by listing every key in the topology and checking it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis.exceptions import CrossSlotTransactionError, RedisClusterException

from meshauth.audit.store import AuditWriter
from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.streams import AUDIT
from meshauth.client import CacheConfig, Check, PolicyClient, WarmConfig
from meshauth.db.tables import audit_log
from meshauth.redis_client import Keys, RedisConn, connect
from tests.auth.conftest import SECRET, Harness, basic, login, make_settings, start_harness
from tests.bus.helpers import until
from tests.client.served import DECISION_TOKEN, policy_server, push
from tests.ha.conftest import Ha
from tests.ha.servers import ClusterSetup


async def every_key_is_prefixed(redis: RedisConn, prefix: str) -> list[bytes]:
    keys = [k async for k in redis.scan_iter(match="*", count=1000)]
    assert keys, "nothing was written"
    assert [k for k in keys if not k.startswith(prefix.encode())] == []
    return keys


async def test_revocation_and_sessions_reach_every_replica(
    ha: Ha, ha_redis: RedisConn, sqlite_url: str, tmp_path: Path
) -> None:
    """Two auth replicas on one Sentinel/Cluster URL: a token revoked on one is refused by the other
    (the revocation key, MULTI, and the invalidation stream read with a blocking XREAD); a session
    made on one passes the other's gate and logging out ends it on both. No prefix is set: a Cluster
    URL alone gets the hash-tagged ``{meshauth}:``, so every multi-key command here stays in one slot."""
    settings = make_settings(sqlite_url, ha.url, tmp_path)
    assert settings.redis_prefix == ha.prefix
    async for one in start_harness(settings):
        async for two in start_harness(settings):
            await one.add_client()
            await one.add_user()
            token = (await one.token())["access_token"]
            assert (await two.gate(token)).status_code == 200
            r = await one.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
            assert r.status_code == 200
            refused = functools.partial(_status, two, token, 401)
            await until(refused, what="the other replica refuses the revoked token")
            sid = await login(one)
            cookie = {"cookie": f"meshauth_session={sid}"}
            assert (await two.http.get("/ext_authz/app", headers=cookie)).status_code == 200
            assert (await two.http.delete("/v1/sessions/current", headers=cookie)).status_code == 204
            assert (await one.http.get("/ext_authz/app", headers=cookie)).status_code == 401
    keys = await every_key_is_prefixed(ha_redis, ha.prefix)
    assert any(b"revoked:" in k for k in keys)


async def _status(h: Harness, token: str, expected: int) -> bool:
    return (await h.gate(token)).status_code == expected


async def test_bus_carries_gate_decisions_to_the_audit_log(
    ha: Ha, ha_redis: RedisConn, sqlite_url: str, tmp_path: Path
) -> None:
    """publish (the writer's Lua XADD over partitions) → consumer (XREADGROUP over every partition,
    leases by Lua, MULTI acks) → audit_log: every decision stored once."""
    settings = make_settings(sqlite_url, ha.url, tmp_path, redis_prefix=ha.prefix)
    fast = ConsumerConfig(prefix=ha.prefix, block=0.05, min_idle=0.5, lease_ttl=1.0, retry_delay=0.01)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token())["access_token"]
        writer = AuditWriter(h.app.service.engine)
        consumer = Consumer(ha.url, AUDIT, "audit", writer, fast)
        consumer.start()
        try:
            statuses = await asyncio.gather(*(h.gate(token) for _ in range(60)))
            assert [s.status_code for s in statuses] == [200] * 60

            async def stored(h: Harness = h) -> bool:
                async with h.app.service.engine.connect() as conn:
                    q = sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.type == "gate.decision")
                    return int((await conn.execute(q)).scalar_one()) == 60

            await until(stored, within=30, what="60 gate decisions in audit_log")
            assert h.app.service.bus is not None and h.app.service.bus.dropped == 0
        finally:
            await consumer.stop()
            await writer.close()
    keys = await every_key_is_prefixed(ha_redis, ha.prefix)
    assert any(b"bus:audit:" in k for k in keys)


@pytest.fixture
def policy(ha: Ha, tmp_path: Path) -> Iterator[str]:
    """A policy service that announces its state on the same Sentinel/Cluster URL."""
    with policy_server(tmp_path / "pdp", MESHAUTH_REDIS_URL=ha.url, MESHAUTH_REDIS_PREFIX=ha.prefix) as (url, _):
        push(url, '@id("view-all") permit(principal, action == Action::"view", resource);')
        yield url


async def test_client_l2_is_shared_through_the_topology(ha: Ha, ha_redis: RedisConn, policy: str) -> None:
    """A batch one client fetched (L2 written in one pipeline) is read back by another client with one
    MGET of the whole batch; the hot set (ZINCRBY, pipelined) lives under the prefix too."""
    cache = CacheConfig(l2_prefix=f"{ha.prefix}decision:")
    warming = WarmConfig(state_prefix=ha.prefix, sample_every=1, flush_every=0.05)
    checks = [Check({"type": "User", "id": f"u{n}"}, "view", {"type": "Doc", "id": "d"}) for n in range(20)]
    kw = {"token": DECISION_TOKEN, "redis": ha_redis, "timeout": 5.0, "cache": cache, "warming": warming}
    async with PolicyClient([policy], **kw) as first:  # type: ignore[arg-type]
        got = await first.check_many(checks)
        assert [d.source for d in got] == ["service"] * 20
        await until(lambda: _has_hot_set(ha_redis, ha.prefix), what="the hot set pushed")
    # Without warming, so the hits below are the batch's own MGET rather than warming's L1 fill.
    async with PolicyClient([policy], **{**kw, "warming": None}) as second:  # type: ignore[arg-type]
        assert first.state is not None
        second.advance(first.state)
        again = await second.check_many(checks)
    assert [(d.source, d.decision) for d in again] == [("l2", True)] * 20
    await every_key_is_prefixed(ha_redis, ha.prefix)


async def _has_hot_set(redis: RedisConn, prefix: str) -> bool:
    return bool([k async for k in redis.scan_iter(match=f"{prefix}decision:hot:*")])


async def test_without_the_hash_tag_the_cluster_refuses_meshauth_commands(cluster: ClusterSetup) -> None:
    """Why a cluster needs the tagged prefix: a session write (MULTI over the session and its user's
    set) and a revocation snapshot read (MGET) under the untagged prefix span slots and are refused."""
    redis = connect(cluster.url)
    try:
        with pytest.raises(CrossSlotTransactionError):
            await _session_write(redis, Keys("meshauth:"))
        with pytest.raises(RedisClusterException, match="same key slot"):
            await redis.mget([Keys("meshauth:").revoked(f"jti-{n}") for n in range(8)])
        await _session_write(redis, Keys("{meshauth}:"))  # one slot: done
        assert await redis.mget([Keys("{meshauth}:").revoked(f"jti-{n}") for n in range(8)]) == [None] * 8
    finally:
        await redis.aclose()


async def _session_write(redis: RedisConn, keys: Keys) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.session("a" * 64), b"x")
        pipe.sadd(keys.user_sessions("alice"), "a" * 64)
        await pipe.execute()

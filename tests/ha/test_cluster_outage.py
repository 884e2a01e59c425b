"""Every node of a Redis Cluster killed under the auth service, then started again: fail closed (503,
never a 500 — redis-py's cluster errors are not all RedisErrors, ``redis_client.MeshRedisCluster``),
and the service recovers by itself once the cluster is back (its invalidation reader survived)."""

from __future__ import annotations

import functools
from pathlib import Path

from meshauth.redis_client import connect
from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness
from tests.bus.helpers import until
from tests.ha.servers import cluster_setup, wait_cluster_ok


async def _revoked_and_refused(h: Harness, token: str) -> bool:
    r = await h.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
    return r.status_code == 200 and (await h.gate(token)).status_code == 401


async def _ready(h: Harness) -> bool:
    return (await h.http.get("/readyz")).status_code == 200


async def test_cluster_down_fails_closed_and_recovers(sqlite_url: str, tmp_path: Path) -> None:
    with cluster_setup(tmp_path / "cluster") as cluster:
        settings = make_settings(sqlite_url, cluster.url, tmp_path / "var", redis_prefix="{meshauth}:")
        async for h in start_harness(settings):
            await h.add_client()
            await h.add_user()
            token = (await h.token())["access_token"]
            assert (await h.gate(token)).status_code == 200

            for node in cluster.topology.nodes:
                cluster.topology.kill(node)
            for _ in range(3):  # the first calls fail on open connections, the next ones on connecting
                r = await h.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
                assert r.status_code == 503, r.text
                login = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
                assert login.status_code == 503, login.text
                assert (await h.http.get("/readyz")).status_code == 503

            for node in cluster.topology.nodes:
                cluster.topology.restart(node)
            wait_cluster_ok(cluster)
            await until(functools.partial(_revoked_and_refused, h, token), within=20, what="service back")
            # Ready again once the invalidation reader has reconnected too (its backoff may still be
            # running when revoke already works: the replica applies its own revocations at once).
            await until(functools.partial(_ready, h), within=10, what="ready again")
        redis = connect(cluster.url)
        try:
            assert [k async for k in redis.scan_iter(match="{meshauth}:revoked:*")]
        finally:
            await redis.aclose()

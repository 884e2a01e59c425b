"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.auth.conftest import Harness, make_settings, start_harness


async def test_healthz(auth_sqlite: Harness) -> None:
    """Alive means the process answers."""
    assert (await auth_sqlite.http.get("/healthz")).json() == {"status": "ok"}


async def test_readyz_when_ready(auth: Harness) -> None:
    """Ready when the database and Redis both answer."""
    r = await auth.http.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "redis": "ok", "revocations": "ok"}


async def test_readyz_without_redis(sqlite_url: str, valkey_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Not ready (503) when Redis is gone, and it says which dependency failed."""
    server = valkey_server_factory()
    async for h in start_harness(make_settings(sqlite_url, f"redis://127.0.0.1:{server.port}", tmp_path)):
        server.stop()
        r = await h.http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] == "ok"
        assert r.json()["checks"]["redis"].startswith("unavailable")


async def test_metrics_count_gate_decisions(auth_sqlite: Harness, redis: Redis) -> None:
    """Prometheus text includes gate decisions and JWT cache counts."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token())["access_token"]
    await h.gate(token)
    await h.gate(token)
    text = (await h.http.get("/metrics")).text
    assert 'meshauth_gate_decisions_total{credential="bearer",outcome="allow",transport="http"}' in text
    assert 'meshauth_jwt_cache_total{result="hit"}' in text


async def test_unknown_route_is_404_json_free_of_internals(auth_sqlite: Harness) -> None:
    """Unknown paths are a 404, methods not allowed a 405, both in the error shape (as the policy
    service answers them): they were Starlette's plain-text "Not Found" / "Method Not Allowed"."""
    r = await auth_sqlite.http.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "error_description": "Not Found"}
    for method, path in (("GET", "/oauth2/token"), ("PUT", "/oauth2/revoke"), ("POST", "/.well-known/jwks.json")):
        r = await auth_sqlite.http.request(method, path)
        assert r.status_code == 405, (method, path)
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "method_not_allowed", "error_description": "Method Not Allowed"}
        assert r.headers["allow"]
    # A trailing slash is another path, answered so — not a 307 to a path the client did not ask for
    # (a redirected POST or DELETE is re-sent by some clients, dropped by others).
    r = await auth_sqlite.http.post("/oauth2/token/", data={"grant_type": "client_credentials"})
    assert (r.status_code, r.json()["error"]) == (404, "not_found")


async def test_readyz_reports_revocations_failing_while_redis_is_gone(
    sqlite_url: str, valkey_server_factory: Callable[[], Any], tmp_path: Path
) -> None:
    """The revocation stream is a dependency of its own: with Redis gone it is not reported ok."""
    server = valkey_server_factory()
    async for h in start_harness(make_settings(sqlite_url, f"redis://127.0.0.1:{server.port}", tmp_path)):
        assert (await h.http.get("/readyz")).json()["checks"]["revocations"] == "ok"
        server.stop()
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            r = await h.http.get("/readyz")
            if r.json()["checks"]["revocations"] != "ok":
                break
            assert asyncio.get_running_loop().time() < deadline, r.json()
            await asyncio.sleep(0.1)
        assert r.status_code == 503
        assert r.json()["checks"]["revocations"].startswith("unavailable")

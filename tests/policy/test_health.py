"""The policy service's /healthz (liveness: asks nothing) and /readyz (readiness: the database must
answer; Redis is reported, not required) — same answer shape as the auth service's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from meshauth.readiness import READY_CHECK_TIMEOUT
from tests.bus.conftest import CuttableProxy
from tests.policy.conftest import running, settings_for


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word (a frozen database)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ready_when_the_database_answers(db_url: str, tmp_path: Path) -> None:
    async with running(settings_for(db_url, tmp_path)) as (_app, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready", "checks": {"database": "ok"}})


async def test_a_frozen_database_is_not_ready_promptly_and_liveness_does_not_care(tmp_path: Path) -> None:
    """Liveness asks nothing (a restart would not bring the database back); readiness answers 503
    within its timeout, even for many probes at once."""
    async with black_hole() as port:
        settings = settings_for(f"postgresql://meshauth@127.0.0.1:{port}/x", tmp_path)
        async with running(settings) as (_app, client):
            started = time.monotonic()
            assert (await client.get("/healthz")).status_code == 200
            assert time.monotonic() - started < 0.5
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
            assert time.monotonic() - started < READY_CHECK_TIMEOUT + 2
    assert {r.status_code for r in answers} == {503}
    assert {r.json()["status"] for r in answers} == {"not ready"}
    assert answers[0].json()["checks"]["database"] == f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"


async def test_nothing_listening_is_not_ready(tmp_path: Path) -> None:
    async with black_hole() as port:
        pass  # closed again: connections to it are refused
    async with running(settings_for(f"postgresql://meshauth@127.0.0.1:{port}/x", tmp_path)) as (_app, client):
        r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["database"].startswith("unavailable: ")


@pytest.mark.postgres
async def test_database_cut_and_back(pg_database: str, tmp_path: Path) -> None:
    """PostgreSQL reached through a proxy that is cut: not ready while cut, ready again after."""
    proxy = CuttableProxy(5432)
    await proxy.start()
    try:
        url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert url != pg_database
        async with running(settings_for(url, tmp_path)) as (_app, client):
            assert (await client.get("/readyz")).status_code == 200
            await proxy.sever()
            r = await client.get("/readyz")
            assert r.status_code == 503 and r.json()["checks"]["database"].startswith("unavailable"), r.json()
            assert (await client.get("/healthz")).status_code == 200
            proxy.restore()
            r = await client.get("/readyz")
            assert (r.status_code, r.json()["checks"]) == (200, {"database": "ok"})
    finally:
        await proxy.stop()


async def test_redis_is_reported_but_not_required(
    sqlite_url: str, valkey_server_factory: Callable[[], Any], tmp_path: Path
) -> None:
    server = valkey_server_factory()
    settings = settings_for(sqlite_url, tmp_path, redis_url=f"redis://127.0.0.1:{server.port}")
    async with running(settings) as (_app, client):
        r = await client.get("/readyz")
        assert (r.status_code, r.json()["checks"]) == (200, {"database": "ok", "redis": "ok"})
        server.stop()
        r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["checks"]["redis"].startswith("unavailable: ")


async def test_hostile_requests_to_the_probes(sqlite_url: str, tmp_path: Path) -> None:
    """Other methods are 405; a body, odd headers or a non-UTF-8 path change nothing and crash nothing."""
    async with running(settings_for(sqlite_url, tmp_path)) as (_app, client):
        for path in ("/healthz", "/readyz"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                assert (await client.request(method, path, content=b"x" * 1000)).status_code == 405
            r = await client.request("GET", path, content=b"\xff" * 100_000, headers={b"content-type": b"\xff"})
            assert r.status_code in (200, 413)
            assert (await client.get(path + "/")).status_code == 404
        assert (await client.get("/readyz%ff")).status_code == 404
        assert (await client.get("/readyz")).status_code == 200

"""``Stack.wait_ready``: ``meshauth up`` says it is up once every service is *ready* (``/readyz``: its
database answers), not merely alive (``/healthz``) — against a real policy service on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from meshauth.config_load import load_settings
from meshauth.local.health import NotHealthy
from meshauth.local.stack import Stack
from tests.freezable import freezable

TOKEN = "test-admin-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        status: int = resp.status
        return status


@pytest.mark.postgres
async def test_wait_ready_waits_for_readiness_not_liveness(pg_database: str, tmp_path: Path) -> None:
    """A policy service that is alive but whose database is frozen is not "up"; once the database
    answers again it is."""
    async with freezable(pg_database) as (proxy, url):
        port = _free_port()
        env = {
            **os.environ,
            "MESHAUTH_VAR_DIR": str(tmp_path),
            "MESHAUTH_ADMIN_TOKEN": TOKEN,
            "MESHAUTH_POLICY_PORT": str(port),
            "MESHAUTH_DATABASE_URL": url,
        }
        stack = Stack(load_settings(database_url=url, var_dir=tmp_path, admin_token=TOKEN), env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            stack.spawn("policy", "serve", "policy", "--no-migrate")
            await asyncio.to_thread(stack.wait_ready, "policy", base)
            proxy.freeze()
            assert await asyncio.to_thread(_status, base + "/healthz") == 200
            with pytest.raises(NotHealthy, match="/readyz"):
                await asyncio.to_thread(stack.wait_ready, "policy", base, timeout=4.0)
            proxy.thaw()
            await asyncio.to_thread(stack.wait_ready, "policy", base, timeout=10.0)
        finally:
            proxy.thaw()
            await asyncio.to_thread(stack.stop)

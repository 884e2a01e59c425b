"""Policy service fixtures: the app over a real database (SQLite and PostgreSQL), driven in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from meshauth.config import Settings
from meshauth.config_load import load_settings
from meshauth.db import create_engine
from meshauth.local.health import wait_healthy
from meshauth.policy import stores
from meshauth.policy.app import create_app
from meshauth.policy.decision_front import DecisionFront
from meshauth.policy.entity_store import upsert_entities
from meshauth.policy.entity_upload import normalize_upload
from tests.served import STARTUP, STOP_GRACE, stop, wait_workers_started

TOKEN = "test-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def settings_for(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "admin_token": TOKEN,
        "var_dir": tmp_path,
        "policy_refresh_interval": 0.02,
    }
    values.update(overrides)
    return load_settings(**values)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[DecisionFront, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    app = create_app(settings)
    inner = app.app
    assert isinstance(inner, Starlette)
    async with inner.router.lifespan_context(inner):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as client:
            yield app, client


@pytest.fixture
async def client(db_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings_for(db_url, tmp_path)) as (_app, c):
        yield c


@pytest.fixture
def make_app(db_url: str, tmp_path: Path) -> Callable[..., Any]:
    """Start another replica (or a differently configured one) on the same database."""

    def make(**overrides: Any) -> Any:
        return running(settings_for(db_url, tmp_path, **overrides))

    return make


async def push(
    client: httpx.AsyncClient, text: str, *, store: str = "default", activate: bool | None = True
) -> dict[str, Any]:
    body: dict[str, Any] = {"policies": text}
    if activate is not None:
        body["activate"] = activate
    r = await client.post(f"/admin/stores/{store}/policies", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def load(client: httpx.AsyncClient, entities: list[dict[str, Any]], *, store: str = "default") -> None:
    r = await client.post(f"/admin/stores/{store}/entities", json=entities, headers=ADMIN)
    assert r.status_code == 200, r.text


async def seed_entities(db_url: str, items: list[dict[str, Any]], *, store: str = "s") -> None:
    """Create ``store`` and write ``items`` (Cedar JSON entities) straight to SQL."""
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await stores.ensure(conn, store)
        await upsert_entities(conn, store, normalize_upload(items))
    await engine.dispose()


def ask(subject: str, action: str, resource: str, **extra: Any) -> dict[str, Any]:
    """An AuthZEN request from ``Type::id`` shorthands."""
    st, _, sid = subject.rpartition(":")
    rt, _, rid = resource.rpartition(":")
    body: dict[str, Any] = {
        "subject": {"type": st.rstrip(":"), "id": sid},
        "action": {"name": action},
        "resource": {"type": rt.rstrip(":"), "id": rid},
    }
    body.update(extra)
    return body


async def decide(client: httpx.AsyncClient, body: dict[str, Any], *, store: str = "default") -> dict[str, Any]:
    path = "/access/v1/evaluation" if store == "default" else f"/stores/{store}/access/v1/evaluation"
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def entity(uid: str, attrs: dict[str, Any] | None = None, parents: tuple[str, ...] = ()) -> dict[str, Any]:
    def split(u: str) -> dict[str, str]:
        t, _, i = u.rpartition(":")
        return {"type": t.rstrip(":"), "id": i}

    return {"uid": split(uid), "attrs": attrs or {}, "parents": [split(p) for p in parents]}


@contextmanager
def served(args: list[str], var: Path, token: str, **env_extra: str) -> Iterator[str]:
    """Run ``python <args>`` as a real policy server on a free port over a fresh SQLite file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "MESHAUTH_VAR_DIR": str(var),
        "MESHAUTH_ADMIN_TOKEN": token,
        "MESHAUTH_POLICY_PORT": str(port),
        "MESHAUTH_DATABASE_URL": f"sqlite:///{var}/m.db",
        **env_extra,
    }
    output = var / "served.log"  # granian's lines say when each worker has started
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/healthz", proc, timeout=STARTUP)
        wait_workers_started(output, proc)
        yield url
    finally:
        # Two workers on a loaded 2-core machine have taken over 10 s to stop; past 30 s it is a hang.
        assert stop(proc), f"python {' '.join(args)} did not stop within {STOP_GRACE:.0f} s of SIGTERM"

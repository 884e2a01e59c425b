"""An auth service on a real database (SQLite and PostgreSQL) and a real Valkey, driven in-process."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from meshauth.auth.app import AuthApp
from meshauth.config import Settings

ADMIN = "test-admin-token-0123456789"
SECRET = "s3cret-client-secret"
PASSWORD = "correct horse battery staple"


def make_settings(db_url: str, redis_url: str, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "var_dir": var_dir,
        "admin_token": ADMIN,
        # Cheap hashing keeps the suite fast; production defaults are tested in test_passwords.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "cookie_secure": False,
    }
    values.update(overrides)
    return Settings(**values)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


@dataclass
class Harness:
    app: AuthApp
    http: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN}"}

    async def add_client(
        self,
        client_id: str = "svc",
        scopes: tuple[str, ...] = ("read", "write"),
        grant_types: tuple[str, ...] = ("client_credentials", "password", "refresh_token"),
    ) -> None:
        r = await self.http.post(
            "/admin/clients",
            headers=self.admin,
            json={
                "client_id": client_id,
                "client_secret": SECRET,
                "scopes": list(scopes),
                "grant_types": list(grant_types),
            },
        )
        assert r.status_code == 201, r.text

    async def add_user(self, username: str = "alice", attributes: dict[str, Any] | None = None) -> None:
        r = await self.http.post(
            "/admin/users",
            headers=self.admin,
            json={"username": username, "password": PASSWORD, "attributes": attributes or {}},
        )
        assert r.status_code == 201, r.text

    async def token(self, client_id: str = "svc", **form: str) -> dict[str, Any]:
        form.setdefault("grant_type", "client_credentials")
        r = await self.http.post("/oauth2/token", data=form, headers=basic(client_id, SECRET))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def gate(self, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return await self.http.get("/ext_authz/orders/42", headers=headers)


async def start_harness(settings: Settings, *, grpc_port: int | None = None) -> AsyncIterator[Harness]:
    app = AuthApp(settings, grpc_port=grpc_port)
    async with app.running():
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Harness(app, http)


@pytest.fixture
async def auth(db_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Harness]:
    """An auth service on both databases."""
    async for h in start_harness(make_settings(db_url, valkey_url, tmp_path)):
        yield h


@pytest.fixture
async def auth_sqlite(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Harness]:
    """An auth service on SQLite only, for behaviour that does not depend on the SQL dialect."""
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path)):
        yield h


# Helpers several test modules use (test modules import from here, never from each other).


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(h: Harness, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    s = h.app.settings
    base = {
        "iss": s.issuer,
        "sub": "mallory",
        "aud": s.audience,
        "exp": now + 300,
        "iat": now,
        "jti": f"jti-{time.monotonic_ns()}",
        "client_id": "svc",
        "scope": "read",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(h: Harness, payload: dict[str, Any], **header: Any) -> str:
    key = h.app.service.keys.signer
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode(payload, key.private_key, algorithm=key.alg, headers=headers)


async def login(h: Harness) -> str:
    r = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 201, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert r.json()["access_token"]
    return r.cookies["meshauth_session"]

"""Envoy ext_authz in authn mode, over HTTP and over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from redis.asyncio import Redis

from tests.auth.conftest import Harness, make_settings, start_harness


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_any_method_and_path_under_prefix(auth_sqlite: Harness, method: str) -> None:
    """Envoy keeps the original method and prefixes the path; every combination is checked."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    r = await h.http.request(method, "/ext_authz/api/v1/orders?id=7", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.headers["x-meshauth-subject"] == "svc"
    assert r.headers["x-meshauth-client-id"] == "svc"
    assert r.headers["x-meshauth-scope"] == "read"


async def test_missing_credential(auth_sqlite: Harness) -> None:
    """No credential: 401 with a bare Bearer challenge."""
    r = await auth_sqlite.http.get("/ext_authz/orders")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="meshauth"'
    assert "x-meshauth-subject" not in r.headers


async def test_bare_prefix(auth_sqlite: Harness) -> None:
    """The prefix alone (original path '/') is also a check."""
    r = await auth_sqlite.http.get("/ext_authz")
    assert r.status_code == 401


async def test_warm_and_cold_agree(auth_sqlite: Harness) -> None:
    """The second check (JWT cache hit) answers exactly like the first (full verification)."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token())["access_token"]
    misses = h.app.service.verifier.cache_misses
    first = await h.gate(token)
    second = await h.gate(token)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-meshauth-subject"] == second.headers["x-meshauth-subject"]
    assert h.app.service.verifier.cache_hits >= 1
    assert h.app.service.verifier.cache_misses == misses + 1


async def test_cache_can_be_switched_off(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """With jwt_cache_enabled=false every check verifies fully and still allows."""
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path, jwt_cache_enabled=False)):
        await h.add_client()
        token = (await h.token())["access_token"]
        for _ in range(3):
            assert (await h.gate(token)).status_code == 200
        assert h.app.service.verifier.cache_hits == 0


@pytest.fixture
async def grpc_auth(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> AsyncIterator[tuple[Harness, str]]:
    async for h in start_harness(make_settings(sqlite_url, valkey_url, tmp_path), grpc_port=0):
        yield h, f"127.0.0.1:{h.app.grpc_bound}"


def check_request(headers: dict[str, str]) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/orders/1", headers=headers)
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


async def test_grpc_allows_valid_token(grpc_auth: tuple[Harness, str]) -> None:
    """Authorization/Check answers OkHttpResponse with the identity headers."""
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        resp = await stub.Check(check_request({"authorization": f"Bearer {token}"}))
    assert resp.status.code == code_pb2.OK
    assert resp.HasField("ok_response")
    headers = {o.header.key: o.header.value for o in resp.ok_response.headers}
    assert headers == {"x-meshauth-subject": "svc", "x-meshauth-client-id": "svc", "x-meshauth-scope": "read"}


async def test_grpc_denies_missing_and_invalid(grpc_auth: tuple[Harness, str]) -> None:
    """Missing or invalid credentials get DeniedHttpResponse 401 with www-authenticate."""
    _h, target = grpc_auth
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for headers in ({}, {"authorization": "Bearer not.a.token"}, {"authorization": "Bearer " + "x" * 20_000}):
            resp = await stub.Check(check_request(headers))
            assert resp.status.code == code_pb2.UNAUTHENTICATED
            assert resp.HasField("denied_response")
            assert resp.denied_response.status.code == 401
            names = [o.header.key for o in resp.denied_response.headers]
            assert "www-authenticate" in names


async def test_grpc_empty_request(grpc_auth: tuple[Harness, str]) -> None:
    """An empty CheckRequest is a deny, not an error."""
    _h, target = grpc_auth
    async with grpc.aio.insecure_channel(target) as channel:
        resp = await external_auth_pb2_grpc.AuthorizationStub(channel).Check(external_auth_pb2.CheckRequest())
    assert resp.denied_response.status.code == 401

"""Authz mode: a request refused after authentication is audited with who was refused (over HTTP and
gRPC), not as an anonymous deny — the denials are what an investigation asks about."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from redis.asyncio import Redis

from meshauth.bus.streams import AUDIT, StreamNames
from tests.auth.conftest import Harness, login
from tests.auth.test_authz import authz, grpc_check, policy_url, reason  # noqa: F401 - fixtures
from tests.bus.helpers import read_all


async def _gate_events(h: Harness, redis: Redis) -> list[Any]:
    bus = h.app.service.bus
    assert bus is not None
    await bus.flushed()
    events = [event for _, _, event in await read_all(redis, StreamNames("meshauth:", AUDIT, 4).all())]
    return [e for e in events if e.type == "gate.decision"]


async def test_denials_after_authentication_name_the_subject(authz: Harness, redis: Redis) -> None:  # noqa: F811
    h = authz
    token = (await h.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    for method, path, why in (
        ("DELETE", "/ext_authz/documents/d1", "policy_denied"),
        ("GET", "/ext_authz/documents/secret", "policy_denied"),
        ("POST", "/ext_authz/documents/d1", "method_not_routed"),
        ("GET", "/ext_authz/documents/%2e%2e", "path_not_canonical"),
        ("GET", "/ext_authz/orders/1", "no_route"),
    ):
        r = await h.http.request(method, path, headers=auth)
        assert (r.status_code, reason(r)) == (403, why)
        assert "x-meshauth-subject" not in r.headers  # audited, never sent
    await login(h)
    r = await h.http.delete("/ext_authz/documents/d1")
    assert (r.status_code, reason(r)) == (403, "policy_denied")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{h.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        no = await stub.Check(grpc_check("DELETE", "/documents/d1", auth))
        assert no.denied_response.status.code == 403
    r = await h.http.get("/ext_authz/documents/d1", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401
    seen = {
        (e.action, e.status, e.reason, e.subject, e.client_id, e.subject_type) for e in await _gate_events(h, redis)
    }
    assert seen == {
        ("http", 403, "policy_denied", "svc", "svc", "client"),
        ("http", 403, "method_not_routed", "svc", "svc", "client"),
        ("http", 403, "path_not_canonical", "svc", "svc", "client"),
        ("http", 403, "no_route", "svc", "svc", "client"),
        ("http", 403, "policy_denied", "alice", "meshauth-session", "user"),
        ("grpc", 403, "policy_denied", "svc", "svc", "client"),
        ("http", 401, "token is not a JWS compact serialization", "", "", "unknown"),
    }

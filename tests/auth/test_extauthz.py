"""Envoy ext_authz in authn mode, over HTTP and over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from redis.asyncio import Redis

from meshauth.auth.gate import identity_spellings
from tests.auth.conftest import Harness, claims, login, make_settings, sign, start_harness


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


async def test_two_authorization_headers_are_refused(auth_sqlite: Harness) -> None:
    """Two Authorization lines: the gate would check one and the upstream might read the other."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token())["access_token"]
    for pair in ((f"Bearer {token}", "Bearer forged"), ("Bearer forged", f"Bearer {token}"), (f"Bearer {token}",) * 2):
        r = await h.http.get("/ext_authz/orders", headers=[("authorization", v) for v in pair])
        assert r.status_code == 401
        assert 'error="invalid_request"' in r.headers["www-authenticate"]
        assert "x-meshauth-subject" not in r.headers
    assert (await h.gate(token)).status_code == 200  # one line still passes


async def test_cookie_lines_are_one_cookie_string(auth_sqlite: Harness) -> None:
    """HTTP/2 clients split Cookie into several lines (RFC 9113 §8.2.3): the session is found in any."""
    h = auth_sqlite
    await h.add_user()
    sid = await login(h)
    r = await h.http.get("/ext_authz/app", headers=[("cookie", "theme=dark"), ("cookie", f"meshauth_session={sid}")])
    assert r.status_code == 200
    assert r.headers["x-meshauth-subject"] == "alice"


def raw_check_request(lines: list[tuple[str, bytes]]) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy sends it with ``encode_raw_headers``: only ``header_map``, raw values."""
    header_map = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v) for k, v in lines])
    http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/orders/1", header_map=header_map)
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


async def test_grpc_reads_raw_header_map(grpc_auth: tuple[Harness, str]) -> None:
    """With encode_raw_headers Envoy sends only header_map: credentials are read from it, one line
    each — two Authorization lines are refused, Cookie lines are joined."""
    h, target = grpc_auth
    await h.add_client()
    await h.add_user()
    token = (await h.token(scope="read"))["access_token"]
    sid = await login(h)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        ok = await stub.Check(
            raw_check_request([(":path", b"/orders/1"), ("authorization", f"Bearer {token}".encode())])
        )
        assert ok.status.code == code_pb2.OK
        assert {o.header.key: o.header.value for o in ok.ok_response.headers}["x-meshauth-subject"] == "svc"

        two = [("authorization", f"Bearer {token}".encode()), ("authorization", b"Bearer forged")]
        denied = await stub.Check(raw_check_request(two))
        assert denied.status.code == code_pb2.UNAUTHENTICATED
        assert denied.denied_response.status.code == 401
        challenge = {o.header.key: o.header.value for o in denied.denied_response.headers}["www-authenticate"]
        assert 'error="invalid_request"' in challenge

        cookies = [("cookie", b"theme=dark"), ("cookie", f"meshauth_session={sid}".encode())]
        session = await stub.Check(raw_check_request(cookies))
        assert session.status.code == code_pb2.OK
        assert {o.header.key: o.header.value for o in session.ok_response.headers}["x-meshauth-subject"] == "alice"


async def test_grpc_joined_authorization_lines_are_refused(grpc_auth: tuple[Harness, str]) -> None:
    """Without encode_raw_headers Envoy joins repeated lines with ',' into the headers map: such a
    value is no token, whichever order the lines came in."""
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token())["access_token"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for joined in (f"Bearer {token},Bearer forged", f"Bearer forged,Bearer {token}", f"Bearer {token},"):
            resp = await stub.Check(check_request({"authorization": joined}))
            assert resp.status.code == code_pb2.UNAUTHENTICATED
            assert resp.denied_response.status.code == 401


UNSAFE_CLAIMS = [
    ("sub", "alice\r\nx-meshauth-scope: admin"),
    ("sub", "alice\n"),
    ("sub", "名前"),
    ("sub", "ålice"),
    ("sub", " alice"),
    ("sub", ""),
    ("client_id", "svc\r\nx: y"),
    ("client_id", "svç"),
    ("scope", "read\r\nx-meshauth-subject: root"),
    ("scope", "read\x00"),
    ("scope", "rêad"),
]


@pytest.mark.parametrize(("claim", "value"), UNSAFE_CLAIMS)
async def test_http_gate_refuses_identity_unsafe_in_headers(auth_sqlite: Harness, claim: str, value: str) -> None:
    """A token whose identity is not a safe header value (visible ASCII) is refused with 401, never a 500."""
    h = auth_sqlite
    r = await h.gate(sign(h, claims(h, **{claim: value})))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert not any(name.startswith("x-meshauth-") for name in r.headers)


@pytest.mark.parametrize(("claim", "value"), UNSAFE_CLAIMS)
async def test_grpc_gate_refuses_identity_unsafe_in_headers(
    grpc_auth: tuple[Harness, str], claim: str, value: str
) -> None:
    """Over gRPC the same token is denied: no header value with CR/LF or non-ASCII is ever returned."""
    h, target = grpc_auth
    token = sign(h, claims(h, **{claim: value}))
    async with grpc.aio.insecure_channel(target) as channel:
        resp = await external_auth_pb2_grpc.AuthorizationStub(channel).Check(
            check_request({"authorization": f"Bearer {token}"})
        )
    assert resp.status.code == code_pb2.UNAUTHENTICATED
    assert resp.denied_response.status.code == 401
    assert not resp.HasField("ok_response")
    for option in resp.denied_response.headers:
        assert all(" " <= c <= "~" for c in option.header.value)


async def test_identity_with_spaces_in_scope_passes(auth_sqlite: Harness) -> None:
    """A space-separated scope is a safe header value: the rule refuses only what is unsafe."""
    h = auth_sqlite
    r = await h.gate(sign(h, claims(h, scope="read write")))
    assert r.status_code == 200
    assert r.headers["x-meshauth-scope"] == "read write"


async def test_two_session_cookies_are_refused(auth_sqlite: Harness) -> None:
    """Two meshauth session cookies are ambiguous, like two Authorization lines: 401 invalid_request,
    whichever order they come in, in one Cookie line or several."""
    h = auth_sqlite
    await h.add_user()
    sid = await login(h)
    forms = [
        [("cookie", f"meshauth_session={sid}; meshauth_session=forged")],
        [("cookie", f"meshauth_session=forged; meshauth_session={sid}")],
        [("cookie", f"meshauth_session={sid}; meshauth_session={sid}")],
        [("cookie", f"meshauth_session={sid}"), ("cookie", "theme=dark; meshauth_session=forged")],
    ]
    for headers in forms:
        r = await h.http.get("/ext_authz/app", headers=headers)
        assert r.status_code == 401, headers
        assert 'error="invalid_request"' in r.headers["www-authenticate"]
        assert "x-meshauth-subject" not in r.headers
    assert (await h.http.get("/ext_authz/app", headers={"cookie": f"meshauth_session={sid}"})).status_code == 200


async def test_grpc_two_session_cookies_are_refused(grpc_auth: tuple[Harness, str]) -> None:
    """The gRPC gate applies the same rule to Cookie lines from header_map and to the joined map."""
    h, target = grpc_auth
    await h.add_user()
    sid = await login(h)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        lines = [("cookie", f"meshauth_session={sid}".encode()), ("cookie", b"meshauth_session=forged")]
        for request in (
            raw_check_request(lines),
            check_request({"cookie": f"meshauth_session=forged; meshauth_session={sid}"}),
        ):
            resp = await stub.Check(request)
            assert resp.status.code == code_pb2.UNAUTHENTICATED
            challenge = {o.header.key: o.header.value for o in resp.denied_response.headers}["www-authenticate"]
            assert 'error="invalid_request"' in challenge


async def test_bearer_decides_when_cookie_is_present_too(auth_sqlite: Harness) -> None:
    """Authorization and a session cookie together: the bearer token alone decides; a bad token is not
    rescued by a good cookie, and a good token is not spoiled by a bad cookie."""
    h = auth_sqlite
    await h.add_client()
    await h.add_user()
    sid = await login(h)
    token = (await h.token())["access_token"]
    r = await h.http.get(
        "/ext_authz/app", headers={"authorization": "Bearer forged", "cookie": f"meshauth_session={sid}"}
    )
    assert r.status_code == 401
    r = await h.http.get(
        "/ext_authz/app", headers={"authorization": f"Bearer {token}", "cookie": "meshauth_session=forged"}
    )
    assert r.status_code == 200
    assert r.headers["x-meshauth-subject"] == "svc"


async def test_gate_fails_closed_before_revocations_load(
    sqlite_url: str, valkey_server_factory: Callable[[], Any], tmp_path: Path
) -> None:
    """A replica that could not load the revocation list refuses bearer tokens with 503 and is not ready."""
    server = valkey_server_factory()
    url = f"redis://127.0.0.1:{server.port}"
    server.stop()
    async for h in start_harness(make_settings(sqlite_url, url, tmp_path)):
        token = h.app.service.issuer.issue(subject="svc", client_id="svc", scope="").token
        r = await h.gate(token)
        assert r.status_code == 503
        assert (await h.http.get("/readyz")).json()["checks"]["revocations"] != "ok"


async def test_identity_header_impostors_are_removed_on_allow(auth_sqlite: Harness) -> None:
    """``x_meshauth_subject: admin`` from the caller: Envoy overwrites ``x-meshauth-subject`` on an allow,
    not this, and CGI-style upstreams (WSGI, PHP, Rack) read both as ``HTTP_X_MESHAUTH_SUBJECT``. The
    allow lists every such spelling in ``x-envoy-auth-headers-to-remove``; a refusal lists nothing."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    spoof = {"x_meshauth_subject": "admin", "x-meshauth_scope": "admin", "x_other": "kept"}
    r = await h.http.get("/ext_authz/orders", headers={"authorization": f"Bearer {token}", **spoof})
    assert r.status_code == 200
    assert r.headers["x-meshauth-subject"] == "svc"
    removed = [n.strip() for n in r.headers["x-envoy-auth-headers-to-remove"].split(",")]
    assert sorted(removed) == ["x-meshauth_scope", "x_meshauth_subject"]
    r = await h.http.get("/ext_authz/orders", headers={"authorization": f"Bearer {token}"})
    assert "x-envoy-auth-headers-to-remove" not in r.headers  # the usual request: nothing to remove
    r = await h.http.get("/ext_authz/orders", headers=spoof)
    assert r.status_code == 401 and "x-envoy-auth-headers-to-remove" not in r.headers


async def test_grpc_identity_header_impostors_are_removed_on_allow(grpc_auth: tuple[Harness, str]) -> None:
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        spoof = {"X_MESHAUTH_CLIENT_ID": "admin", "x_meshauth-client_id": "admin"}
        resp = await stub.Check(check_request({"authorization": f"Bearer {token}", **spoof}))
        assert resp.status.code == code_pb2.OK
        assert sorted(resp.ok_response.headers_to_remove) == ["x_meshauth-client_id", "x_meshauth_client_id"]
        resp = await stub.Check(check_request({"authorization": f"Bearer {token}"}))
        assert list(resp.ok_response.headers_to_remove) == []


def test_the_http_provider_forwards_every_impostor_spelling_to_the_check() -> None:
    """Over HTTP Envoy sends the check only the headers the provider lists: all 13 spellings must be
    there for the gate to see (and have removed) any of them."""
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy/istio/mesh-config.yaml").read_text())
    [http] = [p for p in doc["spec"]["meshConfig"]["extensionProviders"] if "envoyExtAuthzHttp" in p]
    listed = set(http["envoyExtAuthzHttp"]["includeRequestHeadersInCheck"])
    assert set(identity_spellings()) <= listed

"""POST /v1/authorize: the credential's subject asks the policy service; hostile bodies are 400s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, Harness, login, make_settings, start_harness
from tests.client.served import DECISION_TOKEN, policy_server, push
from tests.served import free_port

POLICIES = """
@id("alice-reads") permit(principal == User::"alice", action == Action::"read", resource);
@id("svc-ctx") permit(principal == Client::"svc", action == Action::"audit", resource)
  when { context.client_id == "svc" && context.scope.contains("read") && context has flag && context.flag == true };
@id("session-named-user") permit(principal == User::"meshauth-session", action == Action::"list", resource);
@id("session-client") permit(principal == Client::"meshauth-session", action == Action::"impersonate", resource);
"""


@pytest.fixture(scope="module")
def policy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICIES)
        yield url


@pytest.fixture
async def api(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path, policy_url: str
) -> AsyncIterator[Harness]:
    # A check's budget with room for a loaded machine (as tests/auth/test_authz.py): these tests are about
    # answers; 60 checks of 60 kB asked at once took past the default 0.1 s in a full suite run (503s).
    settings = make_settings(
        sqlite_url,
        valkey_url,
        tmp_path,
        policy_urls=(policy_url,),
        policy_decision_token=DECISION_TOKEN,
        policy_check_deadline=5.0,
    )
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        yield h


def ask(action: object = "read", rid: str = "d1", **extra: Any) -> dict[str, Any]:
    return {"action": action, "resource": {"type": "Document", "id": rid}, **extra}


async def bearer(h: Harness, scope: str = "read") -> dict[str, str]:
    return {"authorization": f"Bearer {(await h.token(scope=scope))['access_token']}"}


async def test_session_user_decisions(api: Harness) -> None:
    """A session cookie asks as User::"alice": read yes (with the policy and revision), delete no."""
    h = api
    await login(h)
    r = await h.http.post("/v1/authorize", json=ask())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] is True and body["reasons"] == ["alice-reads"]
    assert isinstance(body["revision"], int) and body["revision"] >= 1
    assert "entities_version" in body
    r = await h.http.post("/v1/authorize", json=ask("delete"))
    assert r.status_code == 200 and r.json()["decision"] is False


async def test_client_token_context_gets_scope_and_client_id(api: Harness) -> None:
    """A client-credentials token is Client::"svc"; the caller's context is kept, scope and client_id added."""
    h = api
    auth = await bearer(h)
    r = await h.http.post("/v1/authorize", json=ask("audit", context={"flag": True}), headers=auth)
    assert r.json()["decision"] is True
    r = await h.http.post("/v1/authorize", json=ask("audit", context={"flag": False}), headers=auth)
    assert r.json()["decision"] is False
    # A caller cannot forge the credential's part of the context.
    forged = ask("audit", context={"flag": True, "scope": ["read"], "client_id": "svc"})
    r = await h.http.post("/v1/authorize", json=forged, headers=await bearer(h, "write"))
    assert r.json()["decision"] is False


async def test_user_named_like_the_session_client_is_still_a_user(api: Harness) -> None:
    """A user may be named "meshauth-session" (the client id reserved for session tokens, refused to
    clients only). The access token its login hands out has sub == client_id == "meshauth-session",
    and asked as Client::"meshauth-session" (allowed "impersonate", denied its own "list"), while its
    session cookie and the client library's identity headers (client.asgi) say User. Now User on both."""
    h = api
    await h.add_user("meshauth-session")
    r = await h.http.post("/v1/sessions", json={"username": "meshauth-session", "password": PASSWORD})
    assert r.status_code == 201, r.text
    auth = {"authorization": f"Bearer {r.json()['access_token']}"}
    for headers in (auth, {}):  # the token, then the cookie the client kept
        r = await h.http.post("/v1/authorize", json=ask("list"), headers=headers)
        assert r.status_code == 200 and r.json()["decision"] is True, (headers, r.text)
        r = await h.http.post("/v1/authorize", json=ask("impersonate"), headers=headers)
        assert r.status_code == 200 and r.json()["decision"] is False, (headers, r.text)


async def test_no_credential_is_401(api: Harness) -> None:
    r = await api.http.post("/v1/authorize", json=ask())
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await api.http.post("/v1/authorize", json=ask(), headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"resource": {"type": "Document", "id": "d1"}}, "action"),
        (ask(action=""), "action"),
        (ask(action=7), "action"),
        (ask(action=["read"]), "action"),
        (ask(action="re\x00ad"), "action"),
        ({"action": "read"}, "resource"),
        ({"action": "read", "resource": "Document:d1"}, "resource"),
        ({"action": "read", "resource": {"type": "Document"}}, "resource.id"),
        ({"action": "read", "resource": {"type": 1, "id": "d1"}}, "resource.type"),
        ({"action": "read", "resource": {"type": "Document", "id": None}}, "resource.id"),
        ({"action": "read", "resource": {"type": "Document", "id": "d1", "x": 1}}, "resource: unknown field 'x'"),
        (ask(context=[1]), "context"),
        (ask(context="x"), "context"),
        (ask(context={"k": "v\x00"}), "context"),
        (ask(context={"k\x00": 1}), "context"),
        (ask(subject={"type": "User", "id": "root"}), "unknown field 'subject'"),
        (ask(action="a" * 2000), "action"),
        (ask(context={"n": 10**30}), "context"),  # was a 500: the client's cache key cannot encode it
        (ask(context={"n": [2**63]}), "context"),  # past Cedar's 64-bit Long
        (ask(context={"n": -(2**63) - 1}), "context"),
        # Cedar has no floats: the policy service could not build the request and the answer was a
        # 200 {"decision": false} that hid the caller's mistake.
        (ask(context={"price": 9.99}), "context"),
        (ask(context={"n": [{"x": 1.0}]}), "context"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(api: Harness, body: dict[str, Any], field: str) -> None:
    r = await api.http.post("/v1/authorize", json=body, headers=await bearer(api))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request" and field in r.json()["error_description"]


async def test_hostile_bodies(api: Harness) -> None:
    """Non-UTF-8, not JSON, not an object, deep nesting, huge: 400/413, and the worker keeps serving."""
    h = api
    auth = {**await bearer(h), "content-type": "application/json"}
    deep = ask(context={"a": json.loads("[" * 40 + "]" * 40)})
    cases = [
        (b'{"action": "r\xff", "resource": {"type": "D", "id": "1"}}', 400),
        (b"not json", 400),
        (b"[1, 2]", 400),
        (json.dumps(deep).encode(), 400),
        (b"[" * 100_000 + b"]" * 100_000, 413),
        (json.dumps(ask(context={"pad": "x" * 70_000})).encode(), 413),
    ]
    for raw, status in cases:
        r = await h.http.post("/v1/authorize", content=raw, headers=auth)
        assert r.status_code == status, (raw[:40], r.text)
    r = await h.http.post("/v1/authorize", content=b"{}", headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415
    r = await h.http.post("/v1/authorize", json=ask(), headers=await bearer(h))
    assert r.status_code == 200


async def test_policy_rejects_question_is_400(api: Harness) -> None:
    """An entity type the policy service refuses is the caller's mistake: 400, not a decision."""
    r = await api.http.post(
        "/v1/authorize", json=ask(rid="d1") | {"resource": {"type": "Not A Type", "id": "x"}}, headers=await bearer(api)
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_large_contexts_from_one_caller_never_deny_another(api: Harness) -> None:
    """One client sends sixty distinct checks with 60 kB contexts (each within the body limit) while alice asks
    five: together they are past the policy service's 1 MiB request limit, and a micro-batch holding
    them was answered 413 as a whole — alice's reads came back 400 invalid_request. Now the large
    checks are asked apart: alice is allowed, and each large check gets its own decision."""
    h = api
    await login(h)
    auth = await bearer(h)
    blob = {"flag": True, "blob": "x" * 60_000}
    replies = await asyncio.gather(
        *(h.http.post("/v1/authorize", json=ask("audit", rid=f"x{i}", context=blob), headers=auth) for i in range(60)),
        *(h.http.post("/v1/authorize", json=ask(rid=f"d{i}")) for i in range(5)),
    )
    assert [r.status_code for r in replies] == [200] * 65, [r.text[:200] for r in replies if r.status_code != 200]
    assert all(r.json()["decision"] is True for r in replies)


async def test_policy_down_is_503(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, valkey_url, tmp_path, policy_urls=(f"http://127.0.0.1:{free_port()}",))
    async for h in start_harness(settings):
        await h.add_client()
        r = await h.http.post("/v1/authorize", json=ask(), headers=await bearer(h))
        assert r.status_code == 503
        assert r.json()["error"] == "policy_unavailable" and r.json()["error_description"]


async def test_frozen_session_store_is_503_with_retry_after(
    sqlite_url: str, valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """A session cookie that cannot be confirmed (Redis SIGSTOPped) is a 503 within the session budget,
    never a decision; it said "temporarily_unavailable" without the ``retry-after`` every other 503
    of this endpoint (and the service's) carries."""
    server = valkey_server_factory()
    settings = make_settings(
        sqlite_url,
        server.connection_url,
        tmp_path,
        policy_urls=(f"http://127.0.0.1:{free_port()}",),
        session_cache_ttl=0,
        session_check_budget=0.05,
    )
    async for h in start_harness(settings):
        await h.add_user()
        await login(h)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            r = await h.http.post("/v1/authorize", json=ask())
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable" and r.headers["retry-after"] == "1"

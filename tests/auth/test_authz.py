"""Authz mode: the gate authenticates, then the route table and a real policy service decide.

A real policy server (granian subprocess) and a real Valkey; the auth service in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from redis.asyncio import Redis

from meshauth.auth.authz import GATE_BREAKER
from meshauth.client import BreakerConfig, CircuitBreaker
from meshauth.config import Settings
from tests.auth.conftest import Harness, login, make_settings, start_harness
from tests.client.served import DECISION_TOKEN, policy_server, push
from tests.served import free_port

POLICIES = """
@id("alice-reads") permit(principal == User::"alice", action == Action::"read", resource);
@id("svc-reads") permit(principal == Client::"svc", action == Action::"read", resource)
  when { context.scope.contains("read") && context.client_id == "svc" };
@id("no-secret") forbid(principal, action, resource == Document::"secret");
"""

ROUTES = """
routes:
  - method: [GET, HEAD]
    path: /documents/{id}
    action: read
    resource: {type: Document, id: "{id}"}
  - method: DELETE
    path: /documents/{id}
    action: delete
    resource: {type: Document, id: "{id}"}
"""


@pytest.fixture(scope="module")
def policy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICIES)
        yield url


def authz_settings(
    sqlite_url: str, valkey_url: str, tmp_path: Path, policy_url: str, routes: str = ROUTES, **extra: object
) -> Settings:
    path = tmp_path / "routes.yaml"
    path.write_text(routes)
    # A check's budget with room for a loaded machine (the default 0.1 s answered 503 policy_unavailable,
    # failing closed, at load 20): these tests are about decisions; the deadline's own test sets its own.
    extra.setdefault("policy_check_deadline", 5.0)
    return make_settings(
        sqlite_url,
        valkey_url,
        tmp_path,
        routes_file=path,
        policy_urls=(policy_url,),
        policy_decision_token=DECISION_TOKEN,
        **extra,
    )


@pytest.fixture
async def authz(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path, policy_url: str
) -> AsyncIterator[Harness]:
    async for h in start_harness(authz_settings(sqlite_url, valkey_url, tmp_path, policy_url), grpc_port=0):
        await h.add_client()
        await h.add_user()
        yield h


async def l1_hits(h: Harness) -> float:
    """The gate's policy client's L1 hits so far, as its metrics say."""
    text = (await h.http.get("/metrics")).text
    line = 'meshauth_client_cache_total{level="l1",result="hit"} '
    return sum(float(x[len(line) :]) for x in text.splitlines() if x.startswith(line))


def reason(r: object) -> str | None:
    return r.headers.get("x-meshauth-reason")  # type: ignore[attr-defined, no-any-return]


async def test_session_user_allowed_and_denied_by_policy(authz: Harness) -> None:
    """alice may read (200 with the identity headers) but not delete (403 policy_denied)."""
    h = authz
    await login(h)
    r = await h.http.get("/ext_authz/documents/d1")
    assert r.status_code == 200 and r.headers["x-meshauth-subject"] == "alice"
    assert reason(r) is None
    r = await h.http.delete("/ext_authz/documents/d1")
    assert (r.status_code, reason(r)) == (403, "policy_denied")
    r = await h.http.get("/ext_authz/documents/secret")
    assert (r.status_code, reason(r)) == (403, "policy_denied")


async def test_client_credentials_token_is_a_client_with_scope_in_context(authz: Harness) -> None:
    """A client-credentials token asks as Client::"svc", its scope and client_id in the context."""
    h = authz
    read = (await h.token(scope="read"))["access_token"]
    write = (await h.token(scope="write"))["access_token"]
    r = await h.http.get("/ext_authz/documents/d1", headers={"authorization": f"Bearer {read}"})
    assert r.status_code == 200 and r.headers["x-meshauth-client-id"] == "svc"
    r = await h.http.get("/ext_authz/documents/d1", headers={"authorization": f"Bearer {write}"})
    assert (r.status_code, reason(r)) == (403, "policy_denied")


async def test_authentication_comes_first(authz: Harness) -> None:
    """No credential is still 401 (never a policy question); a revoked token too."""
    r = await authz.http.get("/ext_authz/documents/d1")
    assert r.status_code == 401 and "www-authenticate" in r.headers


async def test_route_table_denials(authz: Harness) -> None:
    """Unrouted path (default deny), unrouted method, and a non-canonical spelling: 403 with the reason."""
    h = authz
    token = (await h.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    for method, path, why in (
        ("GET", "/ext_authz/orders/42", "no_route"),
        ("POST", "/ext_authz/documents/d1", "method_not_routed"),
        ("GET", "/ext_authz/documents/..%2Fsecret", "path_not_canonical"),
        ("GET", "/ext_authz/documents//d1", "path_not_canonical"),
        ("GET", "/ext_authz/Documents/d1", "path_not_canonical"),
        ("GET", "/ext_authz/documents/%FF", "path_not_canonical"),
        ("GET", "/ext_authz/" + "a/" * 200, "path_too_long"),
    ):
        r = await h.http.request(method, path, headers=auth)
        assert (r.status_code, reason(r)) == (403, why), (method, path)
    r = await h.http.get("/ext_authz/documents/d%31?x=..%2f", headers=auth)
    assert r.status_code == 200  # decoded once: d1; the query string takes no part


async def test_default_authenticated(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path, policy_url: str
) -> None:
    """``default: authenticated``: an unmatched path passes with the identity headers, no policy call."""
    settings = authz_settings(sqlite_url, valkey_url, tmp_path, policy_url, routes="default: authenticated\n" + ROUTES)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token(scope="write"))["access_token"]
        r = await h.gate(token)
        assert r.status_code == 200 and r.headers["x-meshauth-subject"] == "svc"


async def test_policy_unavailable_is_503_within_the_deadline(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Nothing listens at the policy URL: 503 policy_unavailable, never an allow, promptly."""
    dead = f"http://127.0.0.1:{free_port()}"
    settings = authz_settings(sqlite_url, valkey_url, tmp_path, dead, policy_check_deadline=0.2)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token(scope="read"))["access_token"]
        started = time.monotonic()
        r = await h.http.get("/ext_authz/documents/d1", headers={"authorization": f"Bearer {token}"})
        assert (r.status_code, reason(r)) == (503, "policy_unavailable")
        assert time.monotonic() - started < 2.0  # the deadline is 0.2 s; generous for a loaded machine


async def test_authn_mode_creates_no_policy_client(auth_sqlite: Harness) -> None:
    """Without routes_file the gate is in authn mode: no authorizer, no policy client, any path passes."""
    h = auth_sqlite
    assert h.app.authorizer is None
    await h.add_client()
    token = (await h.token())["access_token"]
    r = await h.http.delete("/ext_authz/documents/secret", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "x-meshauth-reason" not in r.headers
    assert h.app.authorize._client is None


def grpc_check(method: str, path: str, headers: dict[str, str]) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(method=method, path=path, headers=headers)
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


async def test_grpc_authz(authz: Harness) -> None:
    """gRPC Check: allow OK with identity headers; deny 403 PERMISSION_DENIED with x-meshauth-reason."""
    h = authz
    token = (await h.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{h.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        ok = await stub.Check(grpc_check("GET", "/documents/d1?download=1", auth))
        assert ok.status.code == code_pb2.OK and ok.HasField("ok_response")
        no = await stub.Check(grpc_check("DELETE", "/documents/d1", auth))
        assert no.status.code == code_pb2.PERMISSION_DENIED
        assert no.denied_response.status.code == 403
        assert {o.header.key: o.header.value for o in no.denied_response.headers} == {
            "x-meshauth-reason": "policy_denied"
        }
        odd = await stub.Check(grpc_check("GET", "/documents/%2e%2e/x", auth))
        assert odd.denied_response.status.code == 403


async def test_invalid_route_file_refuses_to_build(sqlite_url: str, valkey_url: str, tmp_path: Path) -> None:
    """A bad route table is a configuration error naming the line (services never start with one)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - method: GET\n    path: /x\n    action: read\n")
    with pytest.raises(ValueError, match=r"bad.yaml:2: a route needs 'resource'"):
        make_settings(sqlite_url, valkey_url, tmp_path, routes_file=bad)


@pytest.mark.parametrize("l2", [True, False])
async def test_l2_on_the_service_redis_can_be_switched_off(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path, policy_url: str, l2: bool
) -> None:
    """The gate's decisions are shared through the service's Redis unless policy_l2_enabled is off."""
    settings = authz_settings(sqlite_url, valkey_url, tmp_path, policy_url, policy_l2_enabled=l2)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token(scope="read"))["access_token"]
        r = await h.http.get("/ext_authz/documents/l2-probe", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
        await h.app.authorizer.client.aclose()  # type: ignore[union-attr]  # waits for the background L2 write
        keys = [k async for k in redis.scan_iter(match=b"meshauth:decision:*")]
        assert bool(keys) is l2


async def test_cache_lifetimes_come_from_the_settings(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path, policy_url: str
) -> None:
    """MESHAUTH_POLICY_CACHE_TTL reaches the gate's cache: an allow lives that long in L2 (and L1)."""
    settings = authz_settings(sqlite_url, valkey_url, tmp_path, policy_url, policy_cache_ttl=120.0)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token(scope="read"))["access_token"]
        r = await h.http.get("/ext_authz/documents/ttl-probe", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
        await h.app.authorizer.client.aclose()  # type: ignore[union-attr]  # waits for the background L2 write
        ttls = [await redis.pttl(k) async for k in redis.scan_iter(match=b"meshauth:decision:*")]
        assert ttls and all(60_000 < ttl <= 120_000 for ttl in ttls), ttls


def test_cache_lifetimes_are_bounded(sqlite_url: str, valkey_url: str, tmp_path: Path) -> None:
    for bad in ({"policy_cache_ttl": 0}, {"policy_cache_deny_ttl": -1}, {"policy_cache_l1_size": 0}):
        with pytest.raises(ValueError, match="greater than"):
            make_settings(sqlite_url, valkey_url, tmp_path, **bad)


async def test_warm_answers_stay_with_their_identity_path_and_context(authz: Harness) -> None:
    """Hot decisions are answered from L1 through the gate's prepared questions: interleaved over
    several rounds (the first asks the policy service, the rest are L1 hits), each answer is the one
    for its own identity, scope and path — spellings of one resource agree, hostile spellings are
    refused before any question, two Authorization lines are never resolved."""
    h = authz
    session = await login(h)
    read = {"authorization": f"Bearer {(await h.token(scope='read'))['access_token']}"}
    write = {"authorization": f"Bearer {(await h.token(scope='write'))['access_token']}"}
    alice = {"cookie": f"meshauth_session={session}"}
    hits_before = await l1_hits(h)
    cases = [
        (alice, "/documents/d1", 200, None),
        (read, "/documents/d1", 200, None),
        (write, "/documents/d1", 403, "policy_denied"),  # same subject and path, another context
        (alice, "/documents/d%31", 200, None),  # the same resource, spelled otherwise
        (read, "/documents/secre%74", 403, "policy_denied"),  # "secret" percent-encoded: still secret
        (alice, "/documents/secret", 403, "policy_denied"),
        (read, "/documents/d1?id=secret", 200, None),  # the query string takes no part
        (alice, "/documents/%2e%2e", 403, "path_not_canonical"),
        (read, "/documents/..", 403, "path_not_canonical"),
        (alice, "/documents//d1", 403, "path_not_canonical"),
        (read, "/documents/d%FF", 403, "path_not_canonical"),  # not UTF-8
        (alice, "/documents/" + "d" * 5000, 403, "path_too_long"),
    ]
    for _ in range(3):
        for headers, path, status, why in cases:
            r = await h.http.get("/ext_authz" + path, headers=headers)
            assert (r.status_code, reason(r)) == (status, why), (headers, path)
            if status == 200:
                expected = "alice" if headers is alice else "svc"
                assert r.headers["x-meshauth-subject"] == expected, (headers, path)
        two = [("authorization", read["authorization"]), ("authorization", write["authorization"])]
        r = await h.http.get("/ext_authz/documents/d1", headers=two)
        assert r.status_code == 401 and "x-meshauth-subject" not in r.headers
    # The rounds after the first were answered from L1: the 6 policy questions twice more, at least.
    assert await l1_hits(h) - hits_before >= 12


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _busy_then_stopped(config: BreakerConfig) -> float | None:
    """10 s of health at 3,000 checks/s (calls of 5 checks), then the policy service stops: every
    call fails at its 100 ms deadline. Seconds from the stop until the breaker opens (None: not in 5 s)."""
    clock = _Clock()
    breaker = CircuitBreaker(config, clock=clock)
    step = 5 / 3000
    for _ in range(int(10 / step)):
        ticket = breaker.allow()
        assert ticket is not None
        breaker.record(ticket, True, 5)
        clock.now += step
    stopped = clock.now
    clock.now += 0.1  # the first calls after the stop fail at their deadline
    while clock.now - stopped < 5:
        ticket = breaker.allow()
        if ticket is None:
            return clock.now - stopped
        breaker.record(ticket, False, 5)
        clock.now += step
    return None


def test_gate_breaker_opens_within_a_second_after_busy_health() -> None:
    """The gate's breaker (1 s window, counting checks) opens within a second of a stop that follows
    a long busy healthy spell; the client default's 10 s window would take seconds (what it fixed)."""
    opened = _busy_then_stopped(GATE_BREAKER)
    assert opened is not None and opened < 1.0
    slow = _busy_then_stopped(BreakerConfig(window=10.0, min_calls=20, count="checks"))
    assert slow is None or slow > 2.0


def test_gate_breaker_stays_closed_through_a_blip() -> None:
    """One failed call of 5 checks among a second's healthy traffic does not open it."""
    clock = _Clock()
    breaker = CircuitBreaker(GATE_BREAKER, clock=clock)
    for n in range(600):
        ticket = breaker.allow()
        assert ticket is not None
        breaker.record(ticket, n != 300, 5)
        clock.now += 1 / 600
    assert breaker.state == "closed"
